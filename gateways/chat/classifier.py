"""The local ML filter: alt-profanity-check's classifier, which ships its own model.

Its scikit-learn pipeline costs about 5-10 ms a call whatever the batch size,
so messages are scored in batches in a worker thread: the first message
waits at most ``batch_within_s`` for others to join its batch, and the event
loop never blocks on the model.  The model loads in the background when the
gateway starts; messages sent before it is ready wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

log = logging.getLogger("glasscast.chat")

MAX_BATCH = 128
Predict = Callable[[Sequence[str]], Sequence[float]]


def load_model() -> Predict:
    """alt-profanity-check's ``predict_prob`` (imports scikit-learn and unpickles the model: seconds)."""
    from profanity_check import predict_prob

    return lambda texts: [float(p) for p in predict_prob(list(texts))]


class Classifier:
    """Profanity probabilities for chat messages, scored in batches off the event loop."""

    def __init__(self, load: Callable[[], Predict] = load_model, batch_within_s: float = 0.002) -> None:
        self._load = load
        self.batch_within_s = batch_within_s
        self._queue: asyncio.Queue[tuple[str, asyncio.Future[float]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="chat-classifier")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def score(self, text: str) -> float:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        await self._queue.put((text, future))
        return await future

    async def _run(self) -> None:
        predict = await asyncio.to_thread(self._load)
        log.info("chat classifier loaded")
        while True:
            batch = [await self._queue.get()]
            deadline = asyncio.get_running_loop().time() + self.batch_within_s
            while len(batch) < MAX_BATCH:
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), timeout))
                except TimeoutError:
                    break
            try:
                scores = await asyncio.to_thread(predict, [t for t, _ in batch])
            except Exception as exc:  # a broken model must not take chat down: fail these messages loudly
                log.exception("chat classifier failed")
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(RuntimeError(f"classifier failed: {exc}"))
                continue
            self.batches += 1
            for (_, fut), score in zip(batch, scores):
                if not fut.done():
                    fut.set_result(score)

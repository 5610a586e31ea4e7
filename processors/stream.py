"""A Faust stream whose ``take_events`` sleeps while there is nothing to take.

Faust's ``take_events(max_, within)`` waits for a full buffer with a timeout
of ``within`` in a loop, so an agent batching with it wakes every ``within``
(every 0.1 s for the chat archiver, 0.25 s for the heartbeat counter) for as
long as the worker runs, also when no record comes.  This one is the same
generator (copied from faust-streaming 0.15, ``faust/streams.py``) with one
change: while the buffer is empty it waits for the first record without a
timeout, and only then for a full buffer for at most ``within``.  A batch is
therefore yielded at most ``within`` after its first record, as before, and an
idle agent does not wake at all.  ``build_processors`` installs it as the
app's ``Stream`` class.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any, cast

import faust
from faust.streams import _tracks_buffer_agen
from faust.types import ChannelT, EventT
from mode.utils.futures import notify
from mode.utils.times import Seconds, want_seconds


class IdleStream(faust.Stream):  # type: ignore[type-arg]
    @_tracks_buffer_agen
    async def take_events(self, max_: int, within: Seconds) -> AsyncGenerator[Sequence[EventT[Any]], None]:
        """Batches of up to ``max_`` events, each yielded at most ``within`` after its first event."""
        buffer: list[Any] = []
        events: list[EventT[Any]] = []
        buffer_full = asyncio.Event()
        buffer_started = asyncio.Event()  # the one change: set by the first record of a batch
        buffer_consumed = asyncio.Event()
        timeout = want_seconds(within) if within else None
        stream_enable_acks: bool = self.enable_acks
        buffer_consuming: asyncio.Future[None] | None = None
        channel_it = self.channel.__aiter__()

        async def add_to_buffer(value: Any) -> Any:
            try:
                nonlocal buffer_consuming
                if buffer_consuming is not None:
                    try:
                        await buffer_consuming
                    finally:
                        buffer_consuming = None
                buffer.append(value)
                event = self.current_event
                if event is None:
                    raise RuntimeError("Take buffer found current_event is None")
                events.append(event)
                buffer_started.set()
                if len(buffer) >= max_:
                    buffer_full.set()
                    buffer_consumed.clear()
                    await self.wait(buffer_consumed)  # type: ignore[arg-type]
            except asyncio.CancelledError:  # pragma: no cover
                raise
            except Exception as exc:
                self.log.exception("Error adding to take buffer: %r", exc)
                await self.crash(exc)
            return value

        self.enable_acks = False
        self.add_processor(add_to_buffer)
        self._enable_passive(cast(ChannelT[Any], channel_it))
        try:
            while not self.should_stop:
                if not buffer:  # idle: no timer, the first record wakes us
                    await self.wait_for_stopped(buffer_started)  # type: ignore[arg-type]
                    continue
                await self.wait_for_stopped(buffer_full, timeout=timeout)  # type: ignore[arg-type]
                if buffer:
                    buffer_consuming = asyncio.get_running_loop().create_future()
                    try:
                        yield list(events)
                    finally:
                        buffer.clear()
                        for event in events:
                            await self.ack(event)
                        events.clear()
                        notify(buffer_consuming)
                        buffer_full.clear()
                        buffer_started.clear()
                        buffer_consumed.set()
        finally:
            self.enable_acks = stream_enable_acks
            self._processors.remove(add_to_buffer)

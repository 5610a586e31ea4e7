"""Counting the broker's answers to many records produced together, without a callback object per record.

A fan-out or a delivery batch produces thousands of records and needs only two
things back: when (at most) so many are still unanswered, so it can bound what
it keeps queued, and whether any failed.  ``AckCounter`` is handed to
``EventProducer.produce_counted``; librdkafka calls its one bound method for
every record on the producer's poll thread, which counts and, when a coroutine
waits for the count to fall, wakes it with ``call_soon_threadsafe``: no polling,
and no closure, ``Ack`` or exception object built per acknowledged record.
"""

from __future__ import annotations

import asyncio
import threading
import time

from confluent_kafka import KafkaError, Message

from topics.doorbell import Ringer
from topics.errors import DeliveryError

ANSWER_WAIT_S = 90.0  # longer than any producer's message timeout: by then every record has an answer


class AckCounter:
    """How many records produced with this counter were answered, and how many of those failed."""

    def __init__(self) -> None:
        self.produced = 0
        self.settled = 0
        self.failed = 0
        self.error: DeliveryError | None = None
        self.ringer: Ringer | None = None  # set by the producer: a success rings its topic
        self._lock = threading.Lock()
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Event, int] | None = None

    @property
    def unanswered(self) -> int:
        return self.produced - self.settled

    def answered(self, err: KafkaError | None, msg: Message) -> None:
        """librdkafka's delivery callback (the poll thread)."""
        with self._lock:
            self.settled += 1
            if err is not None:
                self.failed += 1
                if self.error is None:
                    self.error = DeliveryError(f"{msg.topic()}: {err.str()}")
            elif self.ringer is not None:
                self.ringer.ring(msg.topic() or "")
            waiter = self._waiter
            if waiter is not None and self.produced - self.settled <= waiter[2]:
                self._waiter = None
                waiter[0].call_soon_threadsafe(waiter[1].set)

    async def settled_to(self, limit: int, what: str, wait_s: float = ANSWER_WAIT_S) -> None:
        """Wait until at most ``limit`` records are unanswered; DeliveryError after ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while True:
            with self._lock:
                if self.produced - self.settled <= limit:
                    return
                woken = asyncio.Event()
                self._waiter = (asyncio.get_running_loop(), woken, limit)
            try:
                await asyncio.wait_for(woken.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise DeliveryError(f"{self.unanswered} {what} without an answer from the log "
                                    f"after {wait_s:.0f} s") from None

    async def flushed(self, what: str, wait_s: float = ANSWER_WAIT_S) -> None:
        """Wait for every answer; DeliveryError if any record was not acknowledged."""
        await self.settled_to(0, what, wait_s)
        if self.failed:
            raise DeliveryError(f"{self.failed} {what} not acknowledged by the log: {self.error}")

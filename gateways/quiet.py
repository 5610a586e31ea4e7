"""uvicorn's server without its ten wake-ups a second.

uvicorn's main loop sleeps 0.1 s at a time to look at its exit flag and, every
tenth tick, to refresh the ``Date`` header: an idle server wakes ten times a
second for nothing.  ``QuietServer`` ticks once a second (the ``Date`` header
has one-second resolution anyway) and is woken at once by the signal that
asks it to exit, so a stop is not delayed by the longer tick.  Used by the
gateway (``gateways/drain.py``) and the embedded Schema Registry.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import FrameType

import uvicorn

TICK_S = 1.0


class QuietServer(uvicorn.Server):
    """``uvicorn.Server`` with a one-second main loop that a stop signal wakes."""

    _wake: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        counter = 0  # uvicorn's on_tick refreshes the Date header when counter % 10 == 0: every tick here
        should_exit = await self.on_tick(counter)
        while not should_exit:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_S)
            self._wake.clear()
            counter = (counter + 10) % 864000
            should_exit = await self.on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to wake
                loop.call_soon_threadsafe(wake.set)

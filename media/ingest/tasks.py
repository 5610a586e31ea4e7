"""Background tasks that never die silently.

Every loop the ingest runs beside its connections (stream health, lease renewal, the
reaper) runs under ``supervise``: an exception is logged with its traceback and the loop
starts again after a back-off that doubles up to a cap and resets once a run lasted a
while.  Only cancellation (the server stopping) ends it.  A task nobody awaits would
otherwise die on its first error (a Valkey or broker outage) and stay dead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("glasscast.ingest")

MIN_BACKOFF_S = 0.2
MAX_BACKOFF_S = 10.0
HEALTHY_RUN_S = 30.0  # a run this long resets the back-off


async def supervise(name: str, loop: Callable[[], Awaitable[None]], *, min_backoff_s: float = MIN_BACKOFF_S,
                    max_backoff_s: float = MAX_BACKOFF_S) -> None:
    """Run ``loop()`` for ever: log and restart it (with back-off) whenever it fails or returns."""
    clock = asyncio.get_running_loop().time
    delay = min_backoff_s
    while True:
        started = clock()
        try:
            await loop()
            log.error("%s returned; restarting it in %.1f s", name, delay)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; restarting it in %.1f s", name, delay)
        if clock() - started >= HEALTHY_RUN_S:
            delay = min_backoff_s
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_backoff_s)


def start_supervised(name: str, loop: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
    """``supervise(name, loop)`` as a task; should the supervisor itself ever end, that is logged too."""
    task = asyncio.create_task(supervise(name, loop), name=name)
    task.add_done_callback(_report_end)
    return task


def _report_end(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    log.error("supervisor of %s ended: %r", task.get_name(), exc)

"""Retry a store write until it succeeds: a processor never skips an event for a passing outage.

A Faust agent that raises is restarted by its supervisor *after* the event it was
handling, and Faust acknowledges that event as the agent leaves it (also when the
agent crashes or a rebalance cancels it), so an exception out of a view write would
drop the event from the view for good: its offset is committed with the next ones.
So every agent

* writes through ``until_done``: the errors that mean "not now" (Valkey restarting,
  the history store away) are logged and tried again with back-off while the agent
  holds its place in the log, and any other error stays a crash;
* ``hold``s the events it is writing (one more reference on each Faust message) and
  ``release``s them once written, so an event whose write was cut short is never
  committed and is read again after a restart.

The writes are idempotent (``views/fold.py``), so a retry or a re-read after a write
that did land changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import faust

T = TypeVar("T")

RETRY_FIRST_S, RETRY_MAX_S = 0.2, 5.0


async def until_done(attempt: Callable[[], Awaitable[T]], what: str, transient: tuple[type[BaseException], ...],
                     log: logging.Logger, first_delay_s: float = RETRY_FIRST_S,
                     max_delay_s: float = RETRY_MAX_S) -> T:
    """``attempt()`` until it returns; a ``transient`` error is logged and tried again, backing off."""
    delay, failures = first_delay_s, 0
    while True:
        try:
            result = await attempt()
        except transient as exc:
            failures += 1
            log.warning("%s failed (%s), retrying in %.1f s", what, exc, delay)
        else:
            if failures:
                log.info("%s done after %d retries", what, failures)
            return result
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay_s)


def hold(events: Sequence[faust.EventT[Any]]) -> None:
    """Keep the events' offsets uncommitted until ``release``, whoever else acknowledges them."""
    for event in events:
        event.message.incref()


def release(events: Sequence[faust.EventT[Any]]) -> None:
    """Drop the reference ``hold`` took."""
    for event in events:
        event.ack()

"""One way to wait in tests: ``eventually`` polls a condition until it holds or a deadline passes.

A test never sleeps for something it can observe: it names the condition, the
bound and what it waits for, and the failure message says which wait ran out
(with the last value seen).  The condition may return any truthy value, which
``eventually`` returns; a falsy value or one of the ``ignore``\\d exceptions
means "not yet".
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

POLL_S = 0.05  # between checks: fast enough for sub-second waits, cheap for a 60 s one


class Timeout(AssertionError):
    """The condition did not hold in time (an AssertionError, so pytest shows it as a failure)."""


def _message(what: str, timeout_s: float, last: Any) -> str:
    return f"timed out after {timeout_s} s waiting for {what} (last: {last!r})"


def eventually(condition: Callable[[], T], timeout_s: float = 30.0, what: str = "the condition",
               every_s: float = POLL_S, ignore: tuple[type[BaseException], ...] = ()) -> T:
    """Call ``condition`` until it returns something truthy, and return that; raise ``Timeout`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            last = condition()
            if last:
                return last
        except ignore as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise Timeout(_message(what, timeout_s, last))
        time.sleep(every_s)


async def eventually_async(condition: Callable[[], Awaitable[T] | T], timeout_s: float = 30.0,
                           what: str = "the condition", every_s: float = POLL_S,
                           ignore: tuple[type[BaseException], ...] = ()) -> T:
    """``eventually`` for a coroutine (or plain) condition, without blocking the event loop."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            result = condition()
            last = await result if inspect.isawaitable(result) else result
            if last:
                return last  # type: ignore[no-any-return]
        except ignore as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise Timeout(_message(what, timeout_s, last))
        await asyncio.sleep(every_s)

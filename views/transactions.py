"""WATCH/MULTI helpers for optimistic transactions on a redis-py asyncio pipeline.

redis-py types `Pipeline.multi()` and `unwatch()` in some releases and leaves them untyped in
others; calling them through an annotated callable checks the same under either.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from redis.asyncio.client import Pipeline


def multi(pipe: Pipeline) -> None:
    """Switch a watching pipeline to buffering the transaction's commands."""
    start: Callable[[], None] = pipe.multi
    start()


async def unwatch(pipe: Pipeline) -> None:
    """Drop the pipeline's WATCHes when the transaction turns out to be unnecessary."""
    stop: Callable[[], Awaitable[bool]] = pipe.unwatch
    await stop()

"""Lua scripts and plain commands in one Valkey round trip.

redis-py runs a registered script queued on a pipeline by first asking
Valkey whether it knows the script (``SCRIPT EXISTS``): a round trip more
on every pipeline, the hot chat path's included.  ``Queued`` calls are sent
as ``EVALSHA`` straight away instead; a script Valkey does not know (one
started again, which forgets scripts) answers NOSCRIPT and is run again on
its own, which loads it.  Only the calls that were refused run again, so a
script that ran is never run twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError


@dataclass(frozen=True)
class Queued:
    """One script call: the script, its keys and its arguments."""

    script: AsyncScript
    keys: Sequence[str]
    args: Sequence[str | int]

    async def run(self) -> Any:
        """Run the call on its own (redis-py loads the script if Valkey does not know it)."""
        return await self.script(keys=list(self.keys), args=list(self.args))


def queue(pipe: aioredis.client.Pipeline, call: Queued) -> None:
    """Queue ``call`` on ``pipe`` as a bare EVALSHA (no SCRIPT EXISTS first)."""
    pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)


async def settle(results: list[Any], calls: dict[int, Queued]) -> list[Any]:
    """``results`` of a pipeline run with ``raise_on_error=False``: each NOSCRIPT answer of a script call
    (``calls``, by position) replaced by the script's answer run on its own; any other error raised."""
    out = list(results)
    for i, result in enumerate(out):
        if isinstance(result, NoScriptError) and i in calls:
            out[i] = await calls[i].run()
        elif isinstance(result, Exception):
            raise result
    return out

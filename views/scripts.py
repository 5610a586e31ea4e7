"""Lua scripts and plain commands in one Valkey round trip.

redis-py runs a registered script queued on a pipeline by first asking
Valkey whether it knows the script (``SCRIPT EXISTS``): a round trip more
on every pipeline, the hot chat path's included.  ``Queued`` calls are sent
as ``EVALSHA`` straight away instead (``evalsha``); a script Valkey does not know (one
started again, which forgets scripts) answers NOSCRIPT and is run again on
its own, which loads it.  Only the calls that were refused run again, so a
script that ran is never run twice.

``round_trip`` sends a batch of commands on one pooled connection and reads
every reply, as a pipeline does, without redis-py's ``Pipeline`` object: on
the chat send path its bookkeeping cost about a fifth of each round trip's
CPU (bench/ledger.py).  It keeps what matters of the client: the pool, the
connection's timeouts, and the client's retry of a connection that broke.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

#: One command as Valkey takes it: the name, then the arguments.
Command = Sequence[str | int | bytes]


@dataclass(frozen=True)
class Queued:
    """One script call: the script, its keys and its arguments."""

    script: AsyncScript
    keys: Sequence[str]
    args: Sequence[str | int]

    async def run(self) -> Any:
        """Run the call on its own (redis-py loads the script if Valkey does not know it)."""
        return await self.script(keys=list(self.keys), args=list(self.args))


def evalsha(call: Queued) -> Command:
    """``call`` as a bare EVALSHA command, for ``round_trip``."""
    return ("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)


async def round_trip(client: aioredis.Redis, commands: Sequence[Command], calls: dict[int, Queued]) -> list[Any]:
    """Every command's raw reply, the commands sent together on one connection (for MULTI ... EXEC, the
    queued commands' replies, and ``calls`` count from the first of them).  An error reply takes its command's place and
    is raised by ``settle``, which also runs again, on its own, each script call (``calls``, by position)
    Valkey answered NOSCRIPT."""
    pool = client.connection_pool
    conn: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]  # redis-py: untyped

    async def attempt() -> list[Any]:
        packed = conn.pack_commands(commands)
        await conn.send_packed_command(packed, check_health=False)
        out: list[Any] = []
        for _ in commands:
            try:
                out.append(await conn.read_response())
            except ResponseError as exc:
                out.append(exc)
        return out

    async def broke(_: BaseException) -> None:
        await conn.disconnect()

    try:
        results = await conn.retry.call_with_retry(attempt, broke)
    finally:
        await pool.release(conn)
    if commands and commands[0][0] == "MULTI":  # the replies are EXEC's; ``calls`` count from the first queued
        executed = results[-1]
        if isinstance(executed, Exception):
            raise executed
        results = list(executed)
    return await settle(results, calls)


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

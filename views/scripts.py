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

``Coalescing`` goes one step further for a busy caller (the gateway's chat
sends): the round trips that coroutines ask for within one turn of the event
loop go out together, as one write on one connection, and each gets its own
replies back.  Valkey runs them in the order sent, each batch's commands
contiguous, so a MULTI ... EXEC stays whole and nothing of one caller lands
inside another's.  A broken connection fails (or, with the client's retry,
resends) every round trip of the batch, as it would each alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import hiredis
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
    return await finish(commands, await exchange(client, commands), calls)


async def exchange(client: aioredis.Redis, commands: Sequence[Command]) -> list[Any]:
    """Send ``commands`` on one pooled connection and read every raw reply (an error reply as its exception)."""
    pool = client.connection_pool
    conn: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]  # redis-py: untyped

    # hiredis packs a whole command in C (str as UTF-8, as redis-py's encoder does); redis-py's own packing
    # encodes argument by argument in Python, a tenth of a chat send's CPU.
    packed = [b"".join([hiredis.pack_command(tuple(command))  # type: ignore[arg-type]  # its stub: a 1-tuple
                        for command in commands])]

    async def attempt() -> list[Any]:
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
        results: list[Any] = await conn.retry.call_with_retry(attempt, broke)
    finally:
        await pool.release(conn)
    return results


async def finish(commands: Sequence[Command], results: list[Any], calls: dict[int, Queued]) -> list[Any]:
    """``round_trip``'s answer from the raw replies of ``commands``."""
    if commands and commands[0][0] == "MULTI":  # the replies are EXEC's; ``calls`` count from the first queued
        executed = results[-1]
        if isinstance(executed, Exception):
            raise executed
        results = list(executed)
    return await settle(results, calls)


class Coalescing:
    """``round_trip`` for many coroutines of one event loop: what they ask within a turn of the loop is sent
    as one batch (module docstring).  ``max_commands`` bounds a batch; more waits for the next one.

    A caller cancelled after asking gets no answer, but its commands may still run, as they may when a
    caller is cancelled after ``round_trip`` wrote them, or when the process dies there: what a send takes
    ahead of its rules (a hold, a claim) expires by itself.
    """

    def __init__(self, client: aioredis.Redis, max_commands: int = 1024) -> None:
        self.client = client
        self.max_commands = max_commands
        self._waiting: list[tuple[Sequence[Command], asyncio.Future[list[Any]]]] = []
        self._sending: set[asyncio.Task[None]] = set()
        self.batches = 0  # batches sent (tests, metrics)

    async def round_trip(self, commands: Sequence[Command], calls: dict[int, Queued]) -> list[Any]:
        """As ``round_trip(client, commands, calls)``, sent with whatever else is asked in this turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._waiting.append((commands, future))
        if len(self._waiting) == 1:
            loop.call_soon(self._flush)  # after every coroutine that runs in this turn has asked
        return await finish(commands, await future, calls)

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        batch: list[tuple[Sequence[Command], asyncio.Future[list[Any]]]] = []
        size = 0
        for asked in waiting:
            if batch and size + len(asked[0]) > self.max_commands:
                self._start(batch)
                batch, size = [], 0
            batch.append(asked)
            size += len(asked[0])
        if batch:
            self._start(batch)

    def _start(self, batch: list[tuple[Sequence[Command], asyncio.Future[list[Any]]]]) -> None:
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[Sequence[Command], asyncio.Future[list[Any]]]]) -> None:
        self.batches += 1
        try:
            results = await exchange(self.client, [c for commands, _ in batch for c in commands])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        at = 0
        for commands, future in batch:
            if not future.done():  # its caller may have been cancelled meanwhile
                future.set_result(results[at:at + len(commands)])
            at += len(commands)

    async def close(self) -> None:
        """Wait for the batches in flight (their callers' answers)."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)


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

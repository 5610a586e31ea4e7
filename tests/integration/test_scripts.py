"""Script calls sent with other commands in one round trip (views/scripts.py), against a real Valkey.

Valkey forgets its scripts when it starts again (``SCRIPT FLUSH`` here): a
call it answers NOSCRIPT runs again on its own, once, and every other
command of the round trip keeps its single effect.  The round trip
is ``round_trip`` (one pooled connection, no Pipeline object), with and
without MULTI, and its connection goes back to the pool whole, or broken and
closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from infra.embedded.valkey import ValkeyProcess
from views import scripts

pytestmark = pytest.mark.integration

COUNT = "return redis.call('incr', KEYS[1])"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[aioredis.Redis]:
    v = ValkeyProcess(tmp_path / "valkey", persist=False)
    v.start()
    c = aioredis.Redis.from_url(v.url)
    try:
        yield c
    finally:
        await c.aclose()
        v.stop()


@pytest.mark.parametrize("transaction", [False, True])
async def test_a_forgotten_script_runs_once_and_the_other_commands_once(
        client: aioredis.Redis, transaction: bool) -> None:
    count = client.register_script(COUNT)
    for round_ in (1, 2, 3):
        if round_ == 2:
            await client.script_flush()  # as after a restart
        a, b = scripts.Queued(count, ["a"], []), scripts.Queued(count, ["b"], [])
        commands: list[scripts.Command] = [scripts.evalsha(a), ("INCR", "plain"), scripts.evalsha(b)]
        if transaction:
            commands = [("MULTI",), *commands, ("EXEC",)]
        assert await scripts.round_trip(client, commands, {0: a, 2: b}) == [round_, round_, round_]
    assert [int(await client.get(k) or 0) for k in ("a", "b", "plain")] == [3, 3, 3]
    # Raw replies: a SET ... GET answers the value it found, or None.
    assert await scripts.round_trip(client, [("SET", "n", "1", "NX", "GET"), ("SET", "n", "2", "NX", "GET")],
                                    {}) == [None, b"1"]


async def test_round_trip_raises_an_error_reply_and_keeps_the_connection_usable(client: aioredis.Redis) -> None:
    broken = client.register_script("return redis.call('incr', KEYS[1], 'extra')")
    call = scripts.Queued(broken, ["k"], [])
    await client.script_load(broken.script)
    with pytest.raises(ResponseError):
        await scripts.round_trip(client, [scripts.evalsha(call), ("INCR", "after")], {0: call})
    assert await client.get("after") == b"1"  # the command after the error ran, its reply was read
    with pytest.raises(ResponseError):  # a command Valkey refuses to queue aborts the transaction
        await scripts.round_trip(client, [("MULTI",), ("INCR", "t"), ("NOSUCHCOMMAND",), ("EXEC",)], {})
    assert await client.get("t") is None
    for _ in range(3):  # every connection went back to the pool in step: the next replies are their own
        assert await scripts.round_trip(client, [("PING",), ("ECHO", "x")], {}) == [b"PONG", b"x"]


async def test_a_round_trip_cut_short_does_not_leave_its_reply_for_the_next(client: aioredis.Redis) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await scripts.round_trip(client, [("BLPOP", "nothing", "1")], {})
    await client.rpush("nothing", "late")  # had the cut connection stayed in the pool, its BLPOP would take it
    for _ in range(3):
        assert await scripts.round_trip(client, [("ECHO", "mine")], {}) == [b"mine"]
    assert await client.lrange("nothing", 0, -1) == [b"late"]

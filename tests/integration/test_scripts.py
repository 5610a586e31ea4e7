"""Script calls sent with other commands in one round trip (views/scripts.py), against a real Valkey.

Valkey forgets its scripts when it starts again (``SCRIPT FLUSH`` here): a
call it answers NOSCRIPT runs again on its own, once, and every other
command of the round trip keeps its single effect.  The round trip
is ``round_trip`` (one pooled connection, no Pipeline object), with and
without MULTI, and its connection goes back to the pool whole, or broken and
closed.  ``Coalescing`` sends the round trips asked within one turn of the
event loop as one batch, each caller getting its own replies, errors and
cancellation.
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


async def test_round_trips_asked_in_one_turn_go_as_one_batch_and_each_gets_its_own_replies(
        client: aioredis.Redis) -> None:
    trips = scripts.Coalescing(client)
    count = client.register_script(COUNT)
    await client.script_flush()  # the first call of the script is answered NOSCRIPT and runs again on its own

    async def one(i: int) -> list[object]:
        call = scripts.Queued(count, [f"s{i}"], [])
        if i % 3 == 0:  # a transaction among the others stays whole
            return await trips.round_trip([("MULTI",), ("INCRBY", f"k{i}", i), scripts.evalsha(call), ("EXEC",)],
                                          {1: call})
        return await trips.round_trip([("INCRBY", f"k{i}", i), scripts.evalsha(call), ("ECHO", f"e{i}")],
                                      {1: call})

    answers = await asyncio.gather(*(one(i) for i in range(60)))
    assert trips.batches == 1
    for i, answer in enumerate(answers):
        assert answer == ([i, 1] if i % 3 == 0 else [i, 1, f"e{i}".encode()])
    assert [int(await client.get(f"s{i}") or 0) for i in range(60)] == [1] * 60  # each script ran once


async def test_a_batch_keeps_one_callers_error_and_cancellation_from_the_others(client: aioredis.Redis) -> None:
    trips = scripts.Coalescing(client, max_commands=4)

    async def cancelled() -> None:
        task = asyncio.ensure_future(trips.round_trip([("INCR", "gone")], {}))
        await asyncio.sleep(0)
        task.cancel()

    async def refused() -> list[object]:
        return await trips.round_trip([("INCR", "x"), ("NOSUCHCOMMAND",)], {})

    results = await asyncio.gather(
        trips.round_trip([("ECHO", "a"), ("ECHO", "b")], {}), refused(), cancelled(),
        trips.round_trip([("ECHO", "c"), ("ECHO", "d"), ("ECHO", "e")], {}), return_exceptions=True)
    assert results[0] == [b"a", b"b"]
    assert isinstance(results[1], ResponseError)
    assert results[3] == [b"c", b"d", b"e"]
    assert trips.batches == 3  # at most 4 commands a batch: [a b x ?], [c d e], then [gone], asked a turn later
    await trips.close()
    assert await client.get("x") == b"1"  # the command before the refused one ran
    assert await client.get("gone") == b"1"  # sent before its caller gave up: it ran, and its reply was read
    for _ in range(3):  # the connections went back to the pool in step
        assert await trips.round_trip([("ECHO", "mine")], {}) == [b"mine"]

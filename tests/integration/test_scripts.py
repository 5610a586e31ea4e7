"""Script calls sent with other commands in one round trip (views/scripts.py), against a real Valkey.

Valkey forgets its scripts when it starts again (``SCRIPT FLUSH`` here): a
call it answers NOSCRIPT runs again on its own, once, and every other
command of the round trip keeps its single effect.
"""

from __future__ import annotations

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
        async with client.pipeline(transaction=transaction) as p:
            scripts.queue(p, a)
            p.incr("plain")
            scripts.queue(p, b)
            out = await scripts.settle(await p.execute(raise_on_error=False), {0: a, 2: b})
        assert out == [round_, round_, round_]
    assert [int(await client.get(k) or 0) for k in ("a", "b", "plain")] == [3, 3, 3]


async def test_an_error_that_is_not_noscript_is_raised(client: aioredis.Redis) -> None:
    broken = client.register_script("return redis.call('incr', KEYS[1], 'extra')")
    call = scripts.Queued(broken, ["k"], [])
    await client.script_load(broken.script)
    async with client.pipeline(transaction=False) as p:
        scripts.queue(p, call)
        results = await p.execute(raise_on_error=False)
    with pytest.raises(ResponseError):
        await scripts.settle(results, {0: call})

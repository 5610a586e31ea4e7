"""The ledger's fold in Valkey (views/ledger_store.py) equals the pure fold (views/ledger.py), whether the log is
applied one event at a time or in batches of one round trip (the ledger worker's ``apply_all``), redeliveries
included, against a real Valkey."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.embedded.valkey import ValkeyProcess
from tests.property.test_ledger_fold import USER, run, step
from views.ledger import LedgerEvent
from views.ledger_store import LedgerStore

pytestmark = pytest.mark.integration


async def _folded(url: str, log: list[LedgerEvent], batch: int) -> tuple[int, int, int]:
    client = aioredis.Redis.from_url(url)
    try:
        store = LedgerStore(client, f"lf{uuid.uuid4().hex[:8]}:")
        if batch == 1:
            for e in log:
                await store.apply(e)
        else:
            for i in range(0, len(log), batch):
                await store.apply_all(log[i:i + batch])
        b = await store.balance(USER, 0)
        return b.bought, b.spent, b.reversed
    finally:
        await client.aclose()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(step, max_size=60), st.integers(2, 16))
def test_the_valkey_fold_equals_the_pure_fold_one_by_one_and_in_batches(valkey: ValkeyProcess,
                                                                        steps: list[tuple[object, ...]],
                                                                        batch: int) -> None:
    w = run(steps)
    expected = (w.account.bought, w.account.spent, w.account.reversed)
    assert asyncio.run(_folded(valkey.url, w.log, 1)) == expected
    assert asyncio.run(_folded(valkey.url, w.log, batch)) == expected

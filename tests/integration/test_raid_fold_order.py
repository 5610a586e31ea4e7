"""A raid's start and end fold to the same view in either order (views/raids.py ``RaidStore.apply``).

The raid worker reads ``raids`` while ``rebuild-views`` may have just dropped
the views, and a catch-up reads two topics in no order between them: the
end of a raid can be folded before its start.  Against the session's Valkey.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
import redis.asyncio as aioredis

from infra.embedded.valkey import ValkeyProcess
from schemas.record import Record
from schemas.records.raid import RaidCancelled, RaidCompleted, RaidStarted
from views.raids import STALE_MS, RaidStore, event_id

pytestmark = pytest.mark.integration


def _raid(start_ms: int, source: str, target: str, requester: str) -> tuple[
        RaidStarted, RaidCancelled, RaidCompleted]:
    raid_id = str(uuid.uuid4())
    started = RaidStarted(event_id=event_id(raid_id, "started"), occurred_at=start_ms, raid_id=raid_id,
                          from_channel_id=source, to_channel_id=target, requested_by=requester,
                          deadline_at=start_ms + 90_000)
    cancelled = RaidCancelled(event_id=event_id(raid_id, "cancelled"), occurred_at=start_ms + 2_000,
                              raid_id=raid_id, from_channel_id=source, to_channel_id=target,
                              reason="BY_BROADCASTER")
    completed = RaidCompleted(event_id=event_id(raid_id, "completed"), occurred_at=start_ms + 5_000,
                              raid_id=raid_id, from_channel_id=source, to_channel_id=target, viewers=7, early=True)
    return started, cancelled, completed


async def _fold(store: RaidStore, raid_id: str, records: list[Record], now_ms: int) -> dict[str, object]:
    for record in records:
        await store.apply(record, now_ms)
    raw = await store.r.get(store.k_raid(raid_id))
    assert raw is not None
    return dict(json.loads(raw))


@pytest.mark.parametrize("end", ["cancelled", "completed"])
@pytest.mark.parametrize("age", ["live", "history"])
async def test_start_and_end_fold_the_same_in_either_order(valkey: ValkeyProcess, end: str, age: str) -> None:
    client = aioredis.Redis.from_url(valkey.url)
    try:
        now = int(time.time() * 1000)
        start_ms = now if age == "live" else now - STALE_MS - 120_000  # history: read again long after
        source, target, requester = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
        views = []
        for order in ("start first", "end first"):
            store = RaidStore(client, f"rf{uuid.uuid4().hex[:8]}:")
            started, cancelled, completed = _raid(start_ms, source, target, requester)
            ended = cancelled if end == "cancelled" else completed
            records: list[Record] = [started, ended] if order == "start first" else [ended, started]
            view = await _fold(store, started.raid_id, records, now)
            assert view.pop("raid_id") == started.raid_id
            assert view["requested_by"] == requester, (order, view)
            assert not await client.exists(store.k_active(source))
            views.append(view)
        assert views[0] == views[1], views
    finally:
        await client.aclose()

"""The live-stream lease (media/ingest/live.py) against the session's Valkey, with times passed in:
one owner at a time, takeover of a lapsed lease within the grace window, next_seq that only moves
forward, a stream ended exactly once by racing reapers, and again if its ender dies."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from infra.settings import Settings
from media.ingest.live import LiveRegistry, LiveStream

pytestmark = pytest.mark.integration

LEASE_MS, GRACE_MS = 3000, 10_000
T0 = 1_790_000_000_000


@pytest.fixture
async def live(settings_factory: Callable[..., Settings]) -> AsyncIterator[LiveRegistry]:
    s = settings_factory()
    client = aioredis.Redis.from_url(s.valkey.url)
    try:
        yield LiveRegistry(client, s.valkey.key_prefix, LEASE_MS / 1000, GRACE_MS / 1000)
    finally:
        await client.aclose()


def _fresh(channel_id: str, now: int = T0) -> LiveStream:
    return LiveStream(str(uuid.uuid4()), channel_id, now)


async def _live(registry: LiveRegistry, owner: str, now: int = T0) -> LiveStream:
    """A stream held by ``owner`` that announced StreamStarted and 5 GOPs."""
    channel_id = str(uuid.uuid4())
    claim = await registry.acquire(channel_id, owner, _fresh(channel_id, now), now)
    assert claim.kind == "new" and claim.stream is not None and claim.stream.owner == owner
    stream = LiveStream(claim.stream.stream_id, channel_id, now, next_seq=5, timeline_end_ms=10_000, announced=True)
    assert await registry.renew(stream, owner, now)
    return stream


async def test_one_owner_at_a_time(live: LiveRegistry) -> None:
    registry = live
    stream = await _live(registry, "a")
    other = await registry.acquire(stream.channel_id, "b", _fresh(stream.channel_id), T0 + 1000)
    assert other.kind == "busy" and other.stream is not None and other.stream.owner == "a"
    assert not await registry.renew(stream, "b", T0 + 1000)  # only the holder renews
    assert await registry.renew(stream, "a", T0 + 2000)
    held = await registry.get(stream.channel_id)
    assert held is not None and held.lease_until_ms == T0 + 2000 + LEASE_MS


async def test_a_lapsed_lease_is_taken_over_with_its_sequence(live: LiveRegistry) -> None:
    registry = live
    stream = await _live(registry, "dead")
    lapsed_at = T0 + LEASE_MS
    claim = await registry.acquire(stream.channel_id, "next", _fresh(stream.channel_id), lapsed_at + 4000)
    assert claim.kind == "resume" and claim.stream is not None
    taken = claim.stream
    assert (taken.stream_id, taken.next_seq, taken.timeline_end_ms) == (stream.stream_id, 5, 10_000)
    assert taken.parked_at_ms == lapsed_at and taken.owner == "next"
    # The dead owner's writes, should any arrive late, change nothing.
    assert not await registry.renew(stream, "dead", lapsed_at + 4001)
    assert not await registry.park(stream, "dead", lapsed_at + 4001)
    # next_seq and the timeline only move forward, whatever order the writes land in.
    assert await registry.renew(taken, "next", lapsed_at + 4100)
    assert await registry.renew(LiveStream(**{**taken.__dict__, "next_seq": 3}), "next", lapsed_at + 4200)
    held = await registry.get(stream.channel_id)
    assert held is not None and held.next_seq == 5 and held.timeline_end_ms == 10_000


async def test_after_the_grace_window_the_stream_is_ended_once(live: LiveRegistry) -> None:
    registry = live
    stream = await _live(registry, "dead")
    within = T0 + LEASE_MS + GRACE_MS
    assert stream.stream_id not in {s.stream_id for s in await registry.endable(within)}
    late = within + 1
    assert stream.stream_id in {s.stream_id for s in await registry.endable(late)}
    claim = await registry.acquire(stream.channel_id, "late", _fresh(stream.channel_id), late)
    assert claim.kind == "stale"  # a late publisher must see it ended first
    first = await registry.claim_end(stream, "reaper-1", late, "RECONNECT_TIMEOUT")
    second = await registry.claim_end(stream, "reaper-2", late, "RECONNECT_TIMEOUT")
    assert first is not None and first.ending == "RECONNECT_TIMEOUT" and second is None
    # reaper-1 dies before deleting the record: once its lease lapses, another reaper ends it again.
    assert await registry.claim_end(stream, "reaper-2", late + LEASE_MS + 1, "RECONNECT_TIMEOUT") is not None
    assert await registry.release(stream, "reaper-2")
    assert await registry.get(stream.channel_id) is None
    again = await registry.acquire(stream.channel_id, "late", _fresh(stream.channel_id), late + LEASE_MS + 2)
    assert again.kind == "new"


async def test_parked_streams_resume_and_unannounced_ones_are_dropped(live: LiveRegistry) -> None:
    registry = live
    stream = await _live(registry, "a")
    assert await registry.park(LiveStream(**{**stream.__dict__, "next_seq": 7}), "a", T0 + 100)
    claim = await registry.acquire(stream.channel_id, "b", _fresh(stream.channel_id), T0 + 100 + GRACE_MS)
    assert claim.kind == "resume" and claim.stream is not None and claim.stream.next_seq == 7
    # A publisher that never got to StreamStarted leaves nothing to end.
    channel_id = str(uuid.uuid4())
    assert (await registry.acquire(channel_id, "c", _fresh(channel_id), T0)).kind == "new"
    fresh = _fresh(channel_id, T0 + LEASE_MS + 1)
    assert (await registry.acquire(channel_id, "d", fresh, T0 + LEASE_MS + 1)).kind == "new"
    held = await registry.get(channel_id)
    assert held is not None and held.stream_id == fresh.stream_id
    dead = LiveStream(held.stream_id, channel_id, T0)
    assert await registry.claim_end(dead, "reaper", T0 + 2 * LEASE_MS + 10, "RECONNECT_TIMEOUT") is None
    assert await registry.get(channel_id) is None  # dropped, no StreamEnded needed

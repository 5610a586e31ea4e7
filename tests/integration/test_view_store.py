"""The Valkey view store applies folds idempotently: redelivered events change nothing."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from infra.embedded.valkey import ValkeyProcess
from schemas.record import Record
from schemas.records.channel import ChannelCreated, StreamKeyRotated
from schemas.records.user import UserRegistered
from views.fold import Applied
from views.store import ViewStore

pytestmark = pytest.mark.integration


async def test_redelivery_is_a_no_op(valkey: ValkeyProcess) -> None:
    client = aioredis.Redis.from_url(valkey.url)
    store = ViewStore(client, f"vs{uuid.uuid4().hex[:6]}:")
    channel_id = str(uuid.uuid4())
    history: list[Applied[Record]] = [
        Applied(0, UserRegistered(occurred_at=1000, user_id="u1", username="Alice_1", email=None,
                                  password_hash="$argon2id$x")),
        Applied(0, ChannelCreated(
            occurred_at=1000, channel_id=channel_id, owner_user_id="u1", name="Speedy",
            title="t", category=None, tags=(), stream_key_hash="a" * 64)),
        Applied(1, StreamKeyRotated(
            occurred_at=2000, channel_id=channel_id, rotated_by_user_id="u1", stream_key_hash="b" * 64)),
    ]
    try:
        assert [await store.apply(e) for e in history] == [True, True, True]
        once = await store.dump()
        # A consumer that crashed before committing sees everything again.
        assert [await store.apply(e) for e in history] == [False, False, False]
        assert await store.dump() == once
        assert (await store.get_user_by_name("alice_1")).id == "u1"  # type: ignore[union-attr]
        assert (await store.get_channel_by_name("SPEEDY")).id == channel_id  # type: ignore[union-attr]
        assert await store.get_channel_by_key_hash("a" * 64) is None
        assert (await store.get_channel_by_key_hash("b" * 64)).id == channel_id  # type: ignore[union-attr]
        assert [c.id for c in await store.channels_of("u1")] == [channel_id]
        assert await store.claimed("channel", "speedy") == channel_id
    finally:
        await client.aclose()

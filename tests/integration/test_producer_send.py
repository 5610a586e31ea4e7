"""``EventProducer.send`` (topics/producer.py): every awaiting coroutine gets its own acknowledgement, and a
``timeout_s`` that passes raises ``TimeoutError``.

Delivery reports reach the event loop in batches (one wake-up for every report that arrived before the loop
ran the batch), so many sends in flight at once must still each settle with their own record's offset.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from infra.embedded.process import free_port
from infra.settings import Settings
from schemas.records.channel import ChannelCreated
from topics.admin import ensure_topics
from topics.runtime import make_producer

pytestmark = pytest.mark.integration


def created(channel_id: str) -> ChannelCreated:
    return ChannelCreated(occurred_at=1_700_000_000_000, channel_id=channel_id, owner_user_id=str(uuid.uuid4()),
                          name=f"c{channel_id[:8]}", title="t", category=None, tags=(), stream_key_hash="0" * 64)


def test_many_sends_in_flight_each_get_their_own_acknowledgement(
        settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory()
    ensure_topics(settings.kafka)
    producer = make_producer(settings)
    key = str(uuid.uuid4())  # one key: one partition, so the offsets must be distinct and consecutive

    async def main() -> list[int]:
        acks = await asyncio.gather(*(producer.send(created(str(uuid.uuid4())), key, timeout_s=30)
                                      for _ in range(500)))
        return [a.offset for a in acks]

    try:
        offsets = asyncio.run(main())
    finally:
        producer.close()
        producer.serde.close()
    assert len(set(offsets)) == 500
    assert max(offsets) - min(offsets) == 499


def test_a_send_nobody_acknowledges_raises_timeout_error_at_its_timeout(
        settings_factory: Callable[..., Settings]) -> None:
    nobody = f"127.0.0.1:{free_port()}"  # no broker listens here
    producer = make_producer(settings_factory(kafka={"bootstrap_servers": nobody}))

    async def main() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await producer.send(created(str(uuid.uuid4())), "k", timeout_s=0.5)
        return loop.time() - started

    try:
        waited = asyncio.run(main())
    finally:
        producer._producer.purge()  # the record never had a broker: nothing to wait for at close
        producer.close(timeout_s=1)
        producer.serde.close()
    assert 0.5 <= waited < 5

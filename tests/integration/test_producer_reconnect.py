"""A producer outlives a broker restart (topics/producer.py): the next record after it is acknowledged.

The embedded broker keeps producer ids in memory, so after a restart the
idempotent librdkafka client retries against it until every record times out.
The producer replaces its client when every broker is down; a private broker
(never the session's) is stopped and started again on the same port here.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.embedded.tansu import TansuBroker
from infra.settings import Settings
from schemas.records.channel import ChannelCreated
from tests.waiting import eventually
from topics.admin import ensure_topics
from topics.errors import DeliveryError
from topics.runtime import make_producer

pytestmark = pytest.mark.integration


def created(channel_id: str) -> ChannelCreated:
    return ChannelCreated(occurred_at=1_700_000_000_000, channel_id=channel_id, owner_user_id=str(uuid.uuid4()),
                          name=f"c{channel_id[:8]}", title="t", category=None, tags=(), stream_key_hash="0" * 64)


def test_records_are_acknowledged_again_after_the_broker_restarts(
        tmp_path: Path, settings_factory: Callable[..., Settings]) -> None:
    broker = TansuBroker(tmp_path / "broker.log")
    broker.start()
    port = broker.port
    settings = settings_factory(kafka={"bootstrap_servers": broker.bootstrap_servers})
    ensure_topics(settings.kafka)
    producer = make_producer(settings, **{"message.timeout.ms": 60_000})
    again: TansuBroker | None = None
    try:
        first = str(uuid.uuid4())
        assert producer.send_sync(created(first), first, timeout_s=30).topic == "channels"
        broker.stop()
        again = TansuBroker(tmp_path / "broker-again.log", port=port)
        again.start()
        ensure_topics(settings.kafka)

        def acknowledged() -> bool:
            key = str(uuid.uuid4())
            try:  # a record sent while the old client is being replaced may fail: the next one must not
                return producer.send_sync(created(key), key, timeout_s=5).offset >= 0
            except DeliveryError:
                return False

        # Well inside message.timeout.ms: without the replacement every record here would time out.
        eventually(acknowledged, 30, "a record acknowledged by the restarted broker", every_s=0.5)
        assert producer.rebuilds >= 1
    finally:
        with contextlib.suppress(DeliveryError):  # a record of the first broker may be left undelivered
            producer.close(timeout_s=5)
        producer.serde.close()
        (again or broker).stop()

"""Contract suite for the event backbone: the same checks against every reachable Kafka and
Schema Registry.

The embedded pair (Tansu + Glasscast's registry) always runs.  A real Apache Kafka and
Confluent Schema Registry run too when ``CONTRACT_KAFKA_BOOTSTRAP`` and
``CONTRACT_REGISTRY_URL`` name them (for example the ones in infra/docker-compose.yml);
otherwise those cases are skipped with the reason printed.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from infra.embedded.tansu import TansuBroker
from infra.settings import Settings
from schemas.records.channel import ChannelCreated
from tests.waiting import eventually
from topics.admin import ensure_topics
from topics.catalogue import TopicSpec
from topics.consumer import Event, EventConsumer
from topics.errors import RegistryError
from topics.producer import EventProducer
from topics.runtime import make_serde
from topics.tools import read_topic

pytestmark = pytest.mark.integration

RECORD = ChannelCreated.RECORD


@dataclass(frozen=True)
class Backend:
    name: str
    bootstrap: str
    registry: str


def _external() -> Backend | None:
    bootstrap = os.environ.get("CONTRACT_KAFKA_BOOTSTRAP", "")
    registry = os.environ.get("CONTRACT_REGISTRY_URL", "")
    return Backend("external", bootstrap, registry) if bootstrap and registry else None


@pytest.fixture(params=["embedded", "external"])
def backend(request: pytest.FixtureRequest, broker: TansuBroker, registry: str) -> Iterator[Backend]:
    if request.param == "embedded":
        yield Backend("embedded", broker.bootstrap_servers, registry)
        return
    ext = _external()
    if ext is None:
        pytest.skip("no external Kafka/Schema Registry: set CONTRACT_KAFKA_BOOTSTRAP and CONTRACT_REGISTRY_URL")
    try:
        httpx.get(f"{ext.registry}/subjects", timeout=3).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.skip(f"external Schema Registry at {ext.registry} unreachable: {exc}")
    yield ext


def _settings(b: Backend, tmp: str) -> Settings:
    from pathlib import Path

    s = Settings(data_dir=Path(tmp)).with_section("kafka", bootstrap_servers=b.bootstrap)
    return s.with_section("registry", url=b.registry)


def _channel(i: int) -> ChannelCreated:
    return ChannelCreated(occurred_at=1_790_000_000_000 + i, channel_id=str(uuid.uuid4()),
                          owner_user_id=str(uuid.uuid4()), name=f"chan{i}", title="t", category=None,
                          tags=("a",), stream_key_hash="f" * 64)


def _name(event: Event) -> str:
    assert isinstance(event.value, ChannelCreated), event.record
    return event.value.name


def test_round_trip_in_order_per_key(backend: Backend, tmp_path: object) -> None:
    s = _settings(backend, str(tmp_path))
    topic = f"contract.{uuid.uuid4().hex[:8]}"
    spec = TopicSpec(topic, "channel_id", (RECORD,), partitions=3)
    assert ensure_topics(s.kafka, [spec]) == [topic]
    assert ensure_topics(s.kafka, [spec]) == []  # idempotent
    serde = make_serde(s)
    producer = EventProducer(s.kafka, serde)
    values = [_channel(i) for i in range(50)]
    keys = [f"k{i % 5}" for i in range(50)]
    for k, v in zip(keys, values):
        producer.produce(v, k, topic=topic)
    assert producer.flush(30) == 0
    producer.close()
    got = list(read_topic(s.kafka, serde, topic, start="beginning", exit_at_end=True))
    serde.close()
    assert len(got) == 50
    for key in set(keys):
        sent = [v.name for k, v in zip(keys, values) if k == key]
        assert [_name(e) for e in sorted(got, key=lambda e: e.offset) if e.key == key] == sent
    assert all(e.record == RECORD and e.type == "ChannelCreated" for e in got)


def test_subject_follows_topic_record_name_strategy(backend: Backend, tmp_path: object) -> None:
    s = _settings(backend, str(tmp_path))
    topic = f"contract.{uuid.uuid4().hex[:8]}"
    ensure_topics(s.kafka, [TopicSpec(topic, "channel_id", (RECORD,), partitions=1)])
    serde = make_serde(s)
    try:
        data = serde.encode(topic, _channel(1))
        assert data[0] == 0
        schema_id = int.from_bytes(data[1:5], "big")
        subject = f"{topic}-{RECORD}"
        assert subject in serde.registry.subjects()
        latest = httpx.get(f"{backend.registry}/subjects/{subject}/versions/latest").json()
        assert latest["id"] == schema_id
    finally:
        serde.close()


def test_registry_refuses_an_incompatible_schema(backend: Backend, tmp_path: object) -> None:
    s = _settings(backend, str(tmp_path))
    serde = make_serde(s)
    subject = f"contract.{uuid.uuid4().hex[:8]}-{RECORD}"
    try:
        raw = json.loads(json.dumps(serde.schema(RECORD)))
        serde.registry.register(subject, json.dumps(raw))
        raw["fields"].append({"name": "mandatory", "type": "string", "doc": "no default: not BACKWARD"})
        with pytest.raises(RegistryError, match="409"):
            serde.registry.register(subject, json.dumps(raw))
    finally:
        serde.close()


def test_consumer_group_reads_and_commits(backend: Backend, tmp_path: object) -> None:
    s = _settings(backend, str(tmp_path))
    topic = f"contract.{uuid.uuid4().hex[:8]}"
    ensure_topics(s.kafka, [TopicSpec(topic, "channel_id", (RECORD,), partitions=1)])
    serde = make_serde(s)
    producer = EventProducer(s.kafka, serde)
    ack = producer.send_sync(_channel(7), "k", topic=topic)
    producer.close()
    consumer = EventConsumer(s.kafka, serde, [topic], group_id=f"contract-{uuid.uuid4().hex[:6]}")
    try:
        event = eventually(lambda: consumer.poll(0.2), 30, "the produced ChannelCreated")
        assert event.offset == ack.offset and _name(event) == "chan7"
        consumer.commit()
    finally:
        consumer.close()
        serde.close()

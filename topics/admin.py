"""Topic administration: create the catalogue's topics at start-up, list what exists."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from infra.settings import KafkaSettings
from topics.catalogue import CATALOGUE, TopicSpec
from topics.errors import TopicsError

log = logging.getLogger("glasscast.topics.admin")


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: int
    messages: int  # sum of high minus low watermarks


def admin_client(kafka: KafkaSettings) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka.bootstrap_servers, "client.id": kafka.client_id})


def ensure_topics(kafka: KafkaSettings, specs: Iterable[TopicSpec] = CATALOGUE,
                  timeout_s: float = 30.0) -> list[str]:
    """Create every missing topic; returns the names created.  Existing topics are left alone."""
    admin = admin_client(kafka)
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    new = [NewTopic(s.name, s.partitions or kafka.default_partitions, kafka.replication_factor,
                    config=s.config()) for s in specs if s.name not in existing]
    created: list[str] = []
    if not new:
        return created
    for name, future in admin.create_topics(new, request_timeout=timeout_s).items():
        try:
            future.result(timeout_s)
            created.append(name)
        except KafkaException as exc:
            err = exc.args[0]
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # another process won the race
            raise TopicsError(f"cannot create topic {name}: {exc}") from exc
    log.info("created topics %s", ", ".join(created))
    return created


def list_topics(kafka: KafkaSettings, timeout_s: float = 10.0) -> list[TopicInfo]:
    """Every topic on the broker with its partition and message counts."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "glasscast-admin",
                         "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(timeout=timeout_s)
        infos = []
        for name in sorted(metadata.topics):
            parts = metadata.topics[name].partitions
            total = 0
            for p in parts:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout_s)
                total += max(0, high - low)
            infos.append(TopicInfo(name, len(parts), total))
        return infos
    finally:
        consumer.close()

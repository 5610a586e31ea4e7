"""Typed event consumer: decoded records with their coordinates, and a dead-letter policy.

Two modes: a consumer group (``group_id``; offsets committed, partitions
balanced) or explicit assignment (no group: served at once, used by tools and
replays).  A record that cannot be decoded is not dropped: it goes to the
``deadletter`` topic with its topic/partition/offset and the consumer moves on
(docs/ARCHITECTURE.md, "Events").
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, Message, TopicPartition

from infra.settings import KafkaSettings
from schemas.record import Record
from schemas.records.ops import DeadLetter
from topics.errors import SerializationError, TopicsError
from topics.producer import EventProducer
from topics.serde import AvroSerde

log = logging.getLogger("glasscast.topics.consumer")


class Event(NamedTuple):
    """One decoded record and where it came from (a tuple: cheap to build per record)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    value: Record  # the typed record, e.g. a ChannelCreated

    @property
    def record(self) -> str:
        """The record's full name, e.g. glasscast.channel.ChannelCreated."""
        return self.value.RECORD

    @property
    def type(self) -> str:
        """The short record name (ChannelCreated)."""
        return type(self.value).__name__


def consumer_config(kafka: KafkaSettings, group_id: str | None, **overrides: Any) -> dict[str, Any]:
    """librdkafka settings for a latency-critical consumer."""
    conf: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "client.id": kafka.client_id,
        # A group id is required even for assign(); a unique one commits nothing shared.
        "group.id": group_id or f"glasscast-assign-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": group_id is not None,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": kafka.session_timeout_ms,
        "heartbeat.interval.ms": max(500, kafka.session_timeout_ms // 3),
        # librdkafka's default 500 ms fetch wait would dominate latency.
        "fetch.wait.max.ms": kafka.fetch_wait_max_ms,
        "enable.partition.eof": True,
    }
    conf.update(overrides)
    return conf


class EventConsumer:
    """Poll decoded events from one or more topics."""

    def __init__(
        self,
        kafka: KafkaSettings,
        serde: AvroSerde,
        topics: Sequence[str],
        group_id: str | None = None,
        dead_letter: EventProducer | None = None,
        **overrides: Any,
    ) -> None:
        self.serde = serde
        self.topics = list(topics)
        self.group_id = group_id
        self.dead_letter = dead_letter
        self._consumer = Consumer(consumer_config(kafka, group_id, **overrides))
        self._eof: set[tuple[str, int]] = set()
        self._assigned: list[TopicPartition] = []
        if group_id is not None:
            self._consumer.subscribe(self.topics)

    def assign(self, start: str | int = "beginning") -> list[TopicPartition]:
        """Read every partition of the topics without a group, from 'beginning', 'end' or an offset."""
        metadata = self._consumer.list_topics(timeout=10)
        offset = {"beginning": OFFSET_BEGINNING, "end": OFFSET_END}.get(str(start), start)
        parts: list[TopicPartition] = []
        for name in self.topics:
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None:
                raise TopicsError(f"topic {name!r} does not exist")
            parts += [TopicPartition(name, p, int(offset)) for p in sorted(topic.partitions)]
        self._consumer.assign(parts)
        self._assigned = parts
        return parts

    def assign_partitions(self, parts: list[TopicPartition]) -> None:
        self._consumer.assign(parts)
        self._assigned = parts

    def seek_to_time(self, since_ms: int) -> None:
        """Start every assigned partition at the broker's first offset at or after ``since_ms``."""
        wanted = [TopicPartition(tp.topic, tp.partition, since_ms) for tp in self._assigned]
        found = self._consumer.offsets_for_times(wanted, timeout=10)
        # -1: no record that late; start at the end.
        self.assign_partitions([TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
                                for tp in found])

    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer owns now (a group member has none until it joins)."""
        return list(self._consumer.assignment())

    def caught_up(self) -> bool:
        """Whether every assigned partition has reached its end since its last record.

        Based on librdkafka's partition-EOF events, which follow the high
        watermark in fetch responses: the embedded broker's ListOffsets answer
        for "latest" can lag the real end, so watermark queries are not used.
        """
        return bool(self._assigned) and all((tp.topic, tp.partition) in self._eof for tp in self._assigned)

    def poll(self, timeout_s: float = 0.1) -> Event | None:
        """The next decoded event, or None; undecodable records are dead-lettered."""
        msg = self._consumer.poll(timeout_s)
        if msg is None:
            return None
        return self._handle(msg)

    def consume(self, max_records: int = 1000, timeout_s: float = 0.05) -> list[Event]:
        """Up to ``max_records`` decoded events in one call (throughput paths).

        librdkafka returns as soon as ``max_records`` are there or ``timeout_s``
        has passed, so keep the timeout short where latency matters.
        """
        events = []
        for msg in self._consumer.consume(max_records, timeout_s):
            event = self._handle(msg)
            if event is not None:
                events.append(event)
        return events

    def _handle(self, msg: Message) -> Event | None:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                self._eof.add((msg.topic() or "", msg.partition() or 0))
                return None
            raise TopicsError(f"consumer error: {err.str()}")
        if self._eof:
            self._eof.discard((msg.topic() or "", msg.partition() or 0))
        try:
            value = self.serde.decode(msg.value() or b"")
        except SerializationError as exc:
            self._dead_letter(msg, exc)
            return None
        raw_key = msg.key()
        return Event(msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1],  # type: ignore[arg-type]
                     raw_key.decode("utf-8", "replace") if raw_key is not None else None, value)

    def _dead_letter(self, msg: Message, exc: Exception) -> None:
        coords = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        log.warning("undecodable record %s: %s", coords, exc)
        if self.dead_letter is None:
            return
        self.dead_letter.produce(
            dead_letter_record(msg.topic() or "", msg.partition() or 0, msg.offset() or 0,
                              msg.timestamp()[1], msg.key(), msg.value(), str(exc), self.group_id or "",
                              type(exc).__name__),
            msg.topic() or "",
        )

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self.poll(0.5)
            if event is not None:
                yield event

    def commit(self) -> None:
        self._consumer.commit(asynchronous=False)

    def commit_offset(self, topic: str, partition: int, next_offset: int) -> None:
        """Commit one partition's position (the next offset to read) without waiting."""
        self._consumer.commit(offsets=[TopicPartition(topic, partition, next_offset)], asynchronous=True)

    def close(self) -> None:
        self._consumer.close()


def dead_letter_record(topic: str, partition: int, offset: int, timestamp_ms: int,
                       key: bytes | None, value: bytes | None, error: str, group: str,
                       error_type: str | None = None) -> DeadLetter:
    """The DeadLetter record for a record that could not be decoded."""
    schema_id = int.from_bytes(value[1:5], "big") if value and len(value) >= 5 and value[0] == 0 else None
    return DeadLetter(
        occurred_at=int(time.time() * 1000), source_topic=topic, partition=partition, offset=offset,
        timestamp=timestamp_ms if timestamp_ms >= 0 else None, key=key, value=value, error=error,
        error_type=error_type, consumer_group=group, schema_id=schema_id)

"""Analyst tools over the log: follow a topic as JSON lines, export a topic to an Avro file.

Both read by explicit assignment (no consumer group), so they start at once,
commit nothing and never disturb the platform's consumers.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from typing import Any, Callable, Iterator

import fastavro

from infra.settings import KafkaSettings
from topics.catalogue import BY_NAME
from topics.consumer import Event, EventConsumer
from topics.errors import TopicsError
from topics.serde import AvroSerde


def json_safe(value: Any) -> Any:
    """Decoded Avro as JSON: times as ISO 8601, uuids as strings, bytes as base64."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def event_json(event: Event) -> dict[str, Any]:
    """One event as the object ``glasscast tail --json`` prints."""
    return {"topic": event.topic, "partition": event.partition, "offset": event.offset,
            "timestamp": event.timestamp_ms, "key": event.key, "type": event.type,
            "record": event.record, "value": json_safe(event.value)}


def parse_since(text: str, now_s: float) -> int:
    """``--since``: ISO 8601 (``2026-11-21T10:00:00Z``), epoch ms, or a relative ``15m``/``2h``/``30s``/``1d``."""
    text = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[:-1].isdigit() and text[-1:] in units:
        return int((now_s - int(text[:-1]) * units[text[-1]]) * 1000)
    if text.isdigit():
        return int(text)
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TopicsError(f"--since {text!r}: expected ISO 8601, epoch milliseconds or e.g. 15m") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return int(parsed.timestamp() * 1000)


def read_topic(kafka: KafkaSettings, serde: AvroSerde, topic: str, start: str = "end",
               since_ms: int | None = None, exit_at_end: bool = False,
               should_stop: Callable[[], bool] = lambda: False) -> Iterator[Event]:
    """Events of ``topic`` from 'beginning', 'end' or ``since_ms``; stops at the end if asked."""
    consumer = EventConsumer(kafka, serde, [topic])
    try:
        consumer.assign("beginning" if since_ms is not None else start)
        if since_ms is not None:
            # The broker's time index narrows the start; records are still filtered
            # below, because some brokers answer offset 0 for every timestamp.
            consumer.seek_to_time(since_ms)
        while not should_stop():
            if exit_at_end and consumer.caught_up():
                return
            event = consumer.poll(0.2)
            if event is None:
                continue
            if since_ms is not None and event.timestamp_ms < since_ms:
                continue
            yield event
    finally:
        consumer.close()


def export_schema(topic: str, serde: AvroSerde) -> dict[str, Any]:
    """The container-file schema for an export of ``topic``: coordinates plus a union of its records."""
    spec = BY_NAME.get(topic)
    if spec is None:
        raise TopicsError(f"topic {topic!r} is not in the catalogue; export needs its Avro record types")
    return {
        "type": "record", "name": "ExportedEvent", "namespace": "glasscast.export",
        "doc": f"One event of topic {topic} with its log coordinates.",
        "fields": [
            {"name": "topic", "type": "string", "doc": "Source topic."},
            {"name": "partition", "type": "int", "doc": "Source partition."},
            {"name": "offset", "type": "long", "doc": "Offset in the partition."},
            {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"},
             "doc": "The record's Kafka timestamp."},
            {"name": "key", "type": ["null", "string"], "doc": "The record key."},
            {"name": "type", "type": "string", "doc": "The record's full name."},
            {"name": "value", "type": [serde.parsed(r) for r in spec.records], "doc": "The event."},
        ],
    }


def export_topic(kafka: KafkaSettings, serde: AvroSerde, topic: str, out_path: str) -> int:
    """Write every event of ``topic`` (up to now) to an Avro object container file; returns the count."""
    schema = fastavro.parse_schema(export_schema(topic, serde))
    count = 0

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal count
        for event in read_topic(kafka, serde, topic, start="beginning", exit_at_end=True):
            count += 1
            yield {"topic": event.topic, "partition": event.partition, "offset": event.offset,
                   "timestamp": event.timestamp_ms, "key": event.key, "type": event.record,
                   "value": (event.record, event.value)}

    with open(out_path, "wb") as out:
        fastavro.writer(out, schema, rows(), codec="deflate")
    return count


def print_events(events: Iterator[Event], as_json: bool, write: Callable[[str], None]) -> int:
    n = 0
    for event in events:
        n += 1
        if as_json:
            write(json.dumps(event_json(event), separators=(",", ":")))
        else:
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(event.timestamp_ms / 1000))
            write(f"{ts} {event.topic}[{event.partition}]@{event.offset} {event.key} {event.type} "
                  f"{json.dumps(json_safe(event.value))}")
    return n

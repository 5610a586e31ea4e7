"""Analyst tools over the log: follow a topic as JSON lines, export a topic to an Avro file.

Both read by explicit assignment (no consumer group), so they start at once,
commit nothing and never disturb the platform's consumers.  They copy records
verbatim rather than interpret them, so they work on the raw Avro value
(``Record.to_avro()``) and the schema's logical types: a ``timestamp-millis``
prints as ISO 8601 and exports as a ``timestamp-millis`` long, as before the
records were typed (docs/ARCHITECTURE.md, "Events").
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

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


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def with_logical_types(schema: Any, value: Any) -> Any:
    """A raw Avro value (logical types off) with its ``timestamp-millis`` longs as UTC datetimes.

    The same datetimes fastavro builds when it reads with logical types on, so
    ``json_safe`` prints them exactly as ``glasscast tail`` always has.  uuids
    are already their canonical text.
    """
    if isinstance(schema, list):  # a union: ["null", X] is the only kind the schemas use
        if value is None:
            return None
        branches = [b for b in schema if b != "null"]
        return with_logical_types(branches[0], value) if len(branches) == 1 else value
    if isinstance(schema, dict):
        if schema.get("logicalType") == "timestamp-millis" and isinstance(value, int):
            return _EPOCH + dt.timedelta(milliseconds=value)
        kind = schema.get("type")
        if kind == "record" and isinstance(value, dict):
            return {f["name"]: with_logical_types(f["type"], value[f["name"]]) for f in schema["fields"]}
        if kind == "array" and isinstance(value, (list, tuple)):
            return [with_logical_types(schema["items"], v) for v in value]
        if isinstance(kind, (dict, list)):
            return with_logical_types(kind, value)
    return value


def event_value(event: Event, serde: AvroSerde) -> dict[str, Any]:
    """An event's Avro value with its logical types, as the tools print and export it."""
    return with_logical_types(serde.schema(event.record), event.value.to_avro())  # type: ignore[no-any-return]


def event_json(event: Event, serde: AvroSerde) -> dict[str, Any]:
    """One event as the object ``glasscast tail --json`` prints."""
    return {"topic": event.topic, "partition": event.partition, "offset": event.offset,
            "timestamp": event.timestamp_ms, "key": event.key, "type": event.type,
            "record": event.record, "value": json_safe(event_value(event, serde))}


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
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)


def read_topic(kafka: KafkaSettings, serde: AvroSerde, topic: str | Sequence[str], start: str = "end",
               since_ms: int | None = None, exit_at_end: bool = False,
               should_stop: Callable[[], bool] = lambda: False) -> Iterator[Event]:
    """Events of ``topic`` (or of several) from 'beginning', 'end' or ``since_ms``; stops at the end if asked."""
    consumer = EventConsumer(kafka, serde, [topic] if isinstance(topic, str) else list(topic))
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
            {"name": "value", "type": [serde.schema(r) for r in spec.records], "doc": "The event."},
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
                   "value": (event.record, event.value.to_avro())}

    with open(out_path, "wb") as out:
        fastavro.writer(out, schema, rows(), codec="deflate")
    return count


def print_events(events: Iterator[Event], serde: AvroSerde, as_json: bool, write: Callable[[str], None]) -> int:
    """Write each event as a JSON line (``--json``) or a human line; returns how many."""
    n = 0
    for event in events:
        n += 1
        if as_json:
            write(json.dumps(event_json(event, serde), separators=(",", ":")))
        else:
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(event.timestamp_ms / 1000))
            write(f"{ts} {event.topic}[{event.partition}]@{event.offset} {event.key} {event.type} "
                  f"{json.dumps(json_safe(event_value(event, serde)))}")
    return n

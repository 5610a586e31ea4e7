"""Avro serdes in the Confluent wire format, one registered schema per record type.

Encoding looks up (or registers) the schema id for the subject
``<topic>-<record full name>`` (TopicRecordNameStrategy) once, then writes
magic byte + id + fastavro schemaless body.  Decoding fetches the writer schema
by id once and resolves it against our own schema of the same name, so older
records read with today's schema (Avro schema resolution).

Values cross this edge as typed records (``schemas/records/``): ``encode``
takes one and ``decode`` returns one, so nothing past ``topics/`` indexes a
dict by a field name.  fastavro reads and writes with logical types switched
off (they change no byte: the Parsing Canonical Form drops them), so a
``timestamp-millis`` is an ``int`` of milliseconds and a ``uuid`` a ``str``,
exactly as the records declare them, with no datetime or UUID built per record.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form

from schemas.record import Record
from schemas.records import RECORD_TYPES
from topics.catalogue import BY_NAME
from topics.errors import RegistryError, SerializationError, UnknownRecordError
from topics.registry_client import RegistryClient
from topics.wire import HEADER_SIZE, MAGIC_BYTE, frame_header, unframe


@dataclass(frozen=True)
class _Writer:
    header: bytes
    parsed: Any


@dataclass(frozen=True)
class _Reader:
    name: str
    writer: Any
    reader: Any  # None when the writer schema is our schema


def without_logical_types(schema: Any) -> Any:
    """A copy of a schema with every ``logicalType`` removed (same bytes, raw values)."""
    if isinstance(schema, list):
        return [without_logical_types(s) for s in schema]
    if isinstance(schema, dict):
        return {k: without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    return schema


def _full_name(schema: Mapping[str, Any]) -> str:
    name = str(schema["name"])
    return name if "." in name or not schema.get("namespace") else f"{schema['namespace']}.{name}"


class AvroSerde:
    """Encode and decode catalogue records; thread-safe, cached per schema id."""

    def __init__(self, registry: RegistryClient, schemas: Mapping[str, Mapping[str, Any]]) -> None:
        self.registry = registry
        self._raw = dict(schemas)
        self._parsed = {name: fastavro.parse_schema(without_logical_types(raw)) for name, raw in self._raw.items()}
        self._canonical = {name: to_parsing_canonical_form(p) for name, p in self._parsed.items()}
        self._writers: dict[tuple[str, str], _Writer] = {}
        self._readers: dict[int, _Reader] = {}
        self._lock = threading.Lock()

    def schema(self, record: str) -> dict[str, Any]:
        """Our schema for a record full name as written, logical types included (tools, exports)."""
        try:
            return dict(self._raw[record])
        except KeyError:
            raise UnknownRecordError(f"no schema for record {record!r}") from None

    def parsed(self, record: str) -> Any:
        """Our parsed schema for a record full name."""
        try:
            return self._parsed[record]
        except KeyError:
            raise UnknownRecordError(f"no schema for record {record!r}") from None

    def prepare(self, topic: str, record: str) -> _Writer:
        """Register (or find) the schema for ``record`` on ``topic``; cached."""
        spec = BY_NAME.get(topic)
        if spec is not None and record not in spec.records:
            raise UnknownRecordError(f"topic {topic!r} does not carry record {record!r}")
        parsed = self.parsed(record)
        subject = f"{topic}-{record}"
        schema_id = self.registry.register(subject, json.dumps(self._raw[record]))
        writer = _Writer(frame_header(schema_id), parsed)
        with self._lock:
            self._writers[(topic, record)] = writer
        return writer

    def encode(self, topic: str, event: Record) -> bytes:
        """Framed Avro bytes for a typed record on ``topic``."""
        return self.encode_value(topic, event.RECORD, event.to_avro())

    def encode_value(self, topic: str, record: str, value: Mapping[str, Any]) -> bytes:
        """Framed Avro bytes for a raw Avro ``value`` as ``record`` (tools that copy records verbatim)."""
        writer = self._writers.get((topic, record)) or self.prepare(topic, record)
        buf = io.BytesIO()
        buf.write(writer.header)
        try:
            fastavro.schemaless_writer(buf, writer.parsed, value)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SerializationError(f"{record} on {topic}: value does not fit the schema: {exc!r}") from exc
        return buf.getvalue()

    def _reader_for(self, schema_id: int) -> _Reader:
        try:
            text = self.registry.schema(schema_id)
        except RegistryError as exc:
            raise SerializationError(f"writer schema id {schema_id} cannot be fetched: {exc}") from exc
        try:
            writer = fastavro.parse_schema(without_logical_types(json.loads(text)))
        except (ValueError, fastavro.schema.SchemaParseException) as exc:
            raise SerializationError(f"writer schema id {schema_id} is not valid Avro: {exc}") from exc
        name = _full_name(json.loads(text)) if text.lstrip().startswith("{") else str(schema_id)
        ours = self._parsed.get(name)
        same = ours is not None and self._canonical[name] == to_parsing_canonical_form(writer)
        reader = _Reader(name, writer, None if same or ours is None else ours)
        with self._lock:
            self._readers[schema_id] = reader
        return reader

    def written_as(self, schema_id: int) -> tuple[str, bool]:
        """(record full name, whether written with our schema of that name, byte for byte) for a writer id."""
        reader = self._readers.get(schema_id) or self._reader_for(schema_id)
        return reader.name, reader.reader is None and reader.name in self._parsed

    def writer_schema(self, schema_id: int) -> str:
        """The writer schema's text registered under ``schema_id`` (cached by the registry client)."""
        try:
            return self.registry.schema(schema_id)
        except RegistryError as exc:
            raise SerializationError(f"writer schema id {schema_id} cannot be fetched: {exc}") from exc

    def decode(self, data: bytes) -> Record:
        """The typed record in framed Avro bytes."""
        name, value = self.decode_value(data)
        cls = RECORD_TYPES.get(name)
        if cls is None:
            raise SerializationError(f"record {name!r} has no type in schemas/records")
        try:
            return cls.from_avro(value)  # type: ignore[no-any-return]
        except (TypeError, ValueError, KeyError) as exc:
            raise SerializationError(f"{name}: value does not fit its record type: {exc!r}") from exc

    def decode_value(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """(record full name, raw Avro value) from framed Avro bytes (tools and archives)."""
        if len(data) < HEADER_SIZE or data[0] != MAGIC_BYTE:
            unframe(data)  # raises the precise error
        schema_id = int.from_bytes(data[1:HEADER_SIZE], "big")
        reader = self._readers.get(schema_id) or self._reader_for(schema_id)
        buf = io.BytesIO(data)
        buf.seek(HEADER_SIZE)
        try:
            value = fastavro.schemaless_reader(buf, reader.writer, reader.reader)
        except Exception as exc:  # fastavro raises many kinds on corrupt input
            raise SerializationError(
                f"{reader.name} (schema id {schema_id}): corrupt Avro body: {exc!r}") from exc
        if not isinstance(value, dict):
            raise SerializationError(f"schema id {schema_id} is not a record schema")
        return reader.name, value

    def records(self) -> tuple[str, ...]:
        return tuple(self._raw)

    def close(self) -> None:
        """Close the registry connection."""
        self.registry.close()

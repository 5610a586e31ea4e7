"""Avro serdes in the Confluent wire format, one registered schema per record type.

Encoding looks up (or registers) the schema id for the subject
``<topic>-<record full name>`` (TopicRecordNameStrategy) once, then writes
magic byte + id + fastavro schemaless body.  Decoding fetches the writer schema
by id once and resolves it against our own schema of the same name, so older
records read with today's schema (Avro schema resolution).
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass
from typing import Any, Mapping

import fastavro
from fastavro.schema import to_parsing_canonical_form

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


def _full_name(schema: Mapping[str, Any]) -> str:
    name = str(schema["name"])
    return name if "." in name or not schema.get("namespace") else f"{schema['namespace']}.{name}"


class AvroSerde:
    """Encode and decode catalogue records; thread-safe, cached per schema id."""

    def __init__(self, registry: RegistryClient, schemas: Mapping[str, Mapping[str, Any]]) -> None:
        self.registry = registry
        self._raw = dict(schemas)
        self._parsed = {name: fastavro.parse_schema(dict(raw)) for name, raw in self._raw.items()}
        self._canonical = {name: to_parsing_canonical_form(p) for name, p in self._parsed.items()}
        self._writers: dict[tuple[str, str], _Writer] = {}
        self._readers: dict[int, _Reader] = {}
        self._lock = threading.Lock()

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

    def encode(self, topic: str, record: str, value: Mapping[str, Any]) -> bytes:
        """Framed Avro bytes for ``value`` as ``record`` on ``topic``."""
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
            writer = fastavro.parse_schema(json.loads(text))
        except (ValueError, fastavro.schema.SchemaParseException) as exc:
            raise SerializationError(f"writer schema id {schema_id} is not valid Avro: {exc}") from exc
        name = _full_name(json.loads(text)) if text.lstrip().startswith("{") else str(schema_id)
        ours = self._parsed.get(name)
        same = ours is not None and self._canonical[name] == to_parsing_canonical_form(writer)
        reader = _Reader(name, writer, None if same or ours is None else ours)
        with self._lock:
            self._readers[schema_id] = reader
        return reader

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """(record full name, value) from framed Avro bytes."""
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

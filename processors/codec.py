"""Avro in the Confluent wire format as a Faust codec.

Decoding never raises: a record that cannot be decoded comes back as
``Undecodable`` so the agent, which knows the record's topic/partition/offset,
can dead-letter it and move on instead of Faust logging and skipping it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faust.serializers import codecs

from schemas.record import Record
from topics.errors import SerializationError
from topics.serde import AvroSerde


@dataclass(frozen=True)
class Decoded:
    value: Record


@dataclass(frozen=True)
class Undecodable:
    raw: bytes
    error: str


class AvroCodec(codecs.Codec):
    """Faust codec over Glasscast's AvroSerde (reads only; producers use topics/)."""

    def __init__(self, serde: AvroSerde) -> None:
        super().__init__()
        self.serde = serde

    def _loads(self, s: bytes) -> Decoded | Undecodable:
        try:
            value = self.serde.decode(s)
        except SerializationError as exc:
            return Undecodable(bytes(s), str(exc))
        return Decoded(value)

    def _dumps(self, obj: Any) -> bytes:
        raise SerializationError("AvroCodec decodes only; produce through topics.producer.EventProducer")


def register_codec(name: str, serde: AvroSerde) -> None:
    """Register the codec under ``name`` (one per process and serde)."""
    codecs.register(name, AvroCodec(serde))

"""The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, the Avro body.

https://docs.confluent.io/platform/current/schema-registry/fundamentals/serdes-develop/index.html#wire-format
"""

from __future__ import annotations

import struct

from topics.errors import SerializationError

MAGIC_BYTE = 0
HEADER = struct.Struct(">bI")
HEADER_SIZE = HEADER.size  # 5 bytes


def frame_header(schema_id: int) -> bytes:
    """The 5-byte prefix for a record written with ``schema_id``."""
    return HEADER.pack(MAGIC_BYTE, schema_id)


def frame(schema_id: int, body: bytes) -> bytes:
    """Magic byte + schema id + Avro body."""
    return HEADER.pack(MAGIC_BYTE, schema_id) + body


def unframe(data: bytes) -> tuple[int, memoryview]:
    """Split framed bytes into (schema id, Avro body)."""
    if len(data) < HEADER_SIZE:
        raise SerializationError(f"record of {len(data)} bytes is shorter than the 5-byte Confluent header")
    magic, schema_id = HEADER.unpack_from(data, 0)
    if magic != MAGIC_BYTE:
        raise SerializationError(f"unknown magic byte {magic} (expected {MAGIC_BYTE}): not Confluent-framed Avro")
    return schema_id, memoryview(data)[HEADER_SIZE:]  # a view: the body is not copied

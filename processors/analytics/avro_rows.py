"""Analytics rows the engine reads from the Avro itself: the loads that skip decoding in Python (pure, no I/O).

The bulk of what the sink loads is heartbeats, and decoding each in Python
(fastavro, then a typed record, then a row) is most of its cost.  For a record
type that feeds its table alone, the sink instead hands the records' Avro
bodies to ClickHouse as one object container file (Avro 1.11, "Object
Container Files"; ``topics/avro_container.py``) whose schema is the writer's
plus two trailing fields, ``src_partition`` (an int) and ``src_offset`` (a
``fixed`` of 8 bytes, little-endian: cheaper to write than a varint, and read
back with ``reinterpretAsInt64``).  Avro's binary encoding of a record is its
fields' encodings one after the other, so a body followed by those two values
IS a record of that schema: nothing is decoded or re-encoded here, the bytes
are only cut and joined.

``AvroLoad.select`` turns the fields into the table's row exactly as
``rows.py`` does (the same empty strings for nulls, floors at 0 and
clamped times); ``tests/contract/test_analytics_store.py`` loads the same
records both ways and compares the tables.  Only records written with our own
schema take this path: an older writer's record lacks fields whose defaults
only Avro schema resolution supplies, and is decoded in Python as before.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.records.stream import StreamHealth
from schemas.records.viewer import Heartbeat, ViewerCountUpdated
from topics.avro_container import encode_block, encode_header, encode_long
from topics.wire import HEADER_SIZE
from views.analytics.chdb_store import MAX_MS, MIN_MS

SRC_FIELDS = ({"name": "src_partition", "type": "int"},
              {"name": "src_offset", "type": {"type": "fixed", "name": "GlasscastSourceOffset", "size": 8}})
_OFFSET = struct.Struct("<q")


@dataclass(frozen=True)
class AvroLoad:
    """How one record type's Avro becomes its table's rows."""

    table: str
    structure: str  # the fields the engine reads (names as in the Avro), as ClickHouse types
    select: str  # the table's columns in order, source coordinates last, from those fields


def _time(field: str) -> str:
    return f"fromUnixTimestamp64Milli(least(greatest({field}, {MIN_MS}), {MAX_MS}), 'UTC')"


def _load(table: str, fields: str, columns: str) -> AvroLoad:
    structure = ", ".join(f.strip() for f in fields.split(",")) + ", src_partition Int32, src_offset FixedString(8)"
    select = ", ".join(c.strip() for c in columns.split(";")) + ", src_partition, reinterpretAsInt64(src_offset)"
    return AvroLoad(table, structure, select)


LOADS: dict[str, AvroLoad] = {
    Heartbeat.RECORD: _load(
        "heartbeats",
        "occurred_at Int64, channel_id String, stream_id Nullable(String), session_id String,"
        " user_id Nullable(String), rendition String, buffer_health_s Float64, bitrate_kbps Int32,"
        " latency_ms Nullable(Int32), dropped_frames Nullable(Int32), playback String, clip_id Nullable(String)",
        f"{_time('occurred_at')}; channel_id; ifNull(stream_id, ''); session_id; ifNull(user_id, ''); rendition;"
        " buffer_health_s; greatest(bitrate_kbps, 0); ifNull(latency_ms, -1); greatest(ifNull(dropped_frames, 0), 0);"
        " playback; ifNull(clip_id, '')"),
    ViewerCountUpdated.RECORD: _load(
        "viewer_counts",
        "occurred_at Int64, channel_id String, stream_id Nullable(String), viewers Int64",
        f"{_time('occurred_at')}; channel_id; ifNull(stream_id, ''); greatest(viewers, 0)"),
    StreamHealth.RECORD: _load(
        "stream_health",
        "occurred_at Int64, channel_id String, stream_id String, window_ms Int32, ingest_bitrate_kbps Int32,"
        " video_bitrate_kbps Int32, audio_bitrate_kbps Int32, fps Float64, dropped_frames Int64, late_frames Int64,"
        " bytes_received Int64, status String, width Nullable(Int32), height Nullable(Int32)",
        f"{_time('occurred_at')}; channel_id; stream_id; greatest(window_ms, 0); greatest(ingest_bitrate_kbps, 0);"
        " greatest(video_bitrate_kbps, 0); greatest(audio_bitrate_kbps, 0); fps; greatest(dropped_frames, 0);"
        " greatest(late_frames, 0); greatest(bytes_received, 0); status; ifNull(width, 0); ifNull(height, 0)"),
}
"""Record full name -> its load; each is the only record type feeding its table (``rows.py``)."""


def container_schema(writer_schema: str) -> str:
    """The writer's record schema with the two source fields appended."""
    schema = json.loads(writer_schema)
    return json.dumps({**schema, "fields": [*schema["fields"], *SRC_FIELDS]}, separators=(",", ":"))


def container(writer_schema: str, records: Sequence[tuple[bytes, int, int]], sync: bytes) -> bytes:
    """An object container file of ``records`` (framed bytes, partition, offset), each with its coordinates.

    ``sync`` is the file's 16-byte marker (random per file, as the specification asks).
    """
    varint: dict[int, bytes] = {}
    parts: list[bytes] = []
    append, pack = parts.append, _OFFSET.pack
    for data, partition, offset in records:
        tail = varint.get(partition)
        if tail is None:
            tail = varint[partition] = encode_long(partition)
        append(data[HEADER_SIZE:])
        append(tail)
        append(pack(offset))
    return encode_header(container_schema(writer_schema), sync) + encode_block(len(records), b"".join(parts), sync)

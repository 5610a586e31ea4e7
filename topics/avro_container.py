"""Avro object container framing, block by block, for an archive that appends and repairs.

An object container file (Avro 1.11 specification, "Object Container Files",
https://avro.apache.org/docs/1.11.1/specification/#object-container-files) is a
header (magic ``Obj\\x01``, a metadata map holding ``avro.schema`` and
``avro.codec``, a 16-byte sync marker) followed by blocks: a record count and a
byte size, both zig-zag varint longs, the serialized records, then the sync
marker again.

``topics/archive.py`` appends one block per flush and must find where the last
complete block ends after a crash, so it needs each block's byte position;
``fastavro.writer`` and ``fastavro.reader`` hide those.  This module writes
headers and blocks, walks blocks until the first torn or invalid one, and
reports a file's valid end.  Only the ``null`` codec is supported.
"""

from __future__ import annotations

import functools
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import fastavro

from topics.errors import ArchiveError

MAGIC = b"Obj\x01"
SYNC_BYTES = 16
_BLOCK_HEAD_BYTES = 20  # a block starts with two zig-zag longs, at most 10 bytes each
_HEADER_PROBE_BYTES = 64 * 1024


class Header(NamedTuple):
    """A parsed container header; ``end`` is the byte offset of the first block."""

    schema: Any
    codec: str
    sync: bytes
    end: int


class Block(NamedTuple):
    """One complete block: its record count, where its data starts, its size and where it ends."""

    records: int
    data_at: int
    size: int
    end: int


class Tail(NamedTuple):
    """How far a file is intact, and the last datum in it."""

    header: Header | None
    valid_end: int  # end of the last complete block (0 when the header is torn)
    size: int
    last_datum: dict[str, Any] | None


def encode_long(n: int) -> bytes:
    """Encode an Avro long as a zig-zag varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def decode_long(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a zig-zag varint; IndexError when the buffer ends inside it."""
    acc = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        acc |= (b & 0x7F) << shift
        if not b & 0x80:
            return (acc >> 1) ^ -(acc & 1), pos
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")


def encode_header(schema_json: str, sync: bytes) -> bytes:
    """A container header for ``schema_json``, uncompressed, ending in ``sync``."""
    meta = {"avro.schema": schema_json.encode(), "avro.codec": b"null"}
    parts = [MAGIC, encode_long(len(meta))]
    for k, v in meta.items():
        parts += [encode_long(len(k)), k.encode(), encode_long(len(v)), v]
    return b"".join(parts + [encode_long(0), sync])


def encode_block(count: int, data: bytes, sync: bytes) -> bytes:
    """One block of ``count`` serialized records."""
    return b"".join((encode_long(count), encode_long(len(data)), data, sync))


@functools.lru_cache(maxsize=16)
def _parse_schema(text: str) -> Any:
    return fastavro.parse_schema(json.loads(text))


def read_header(f: BinaryIO) -> Header | None:
    """The container header, or None when it is torn or not there."""
    f.seek(0)
    buf = f.read(_HEADER_PROBE_BYTES)
    if not buf.startswith(MAGIC):
        return None
    try:
        pos, meta = len(MAGIC), {}
        while True:
            n, pos = decode_long(buf, pos)
            if n == 0:
                break
            if n < 0:  # a negative count is followed by the block's byte size
                n = -n
                _, pos = decode_long(buf, pos)
            for _ in range(n):
                klen, pos = decode_long(buf, pos)
                k = buf[pos:pos + klen].decode()
                vlen, pos = decode_long(buf, pos + klen)
                meta[k] = buf[pos:pos + vlen]
                pos += vlen
        sync = buf[pos:pos + SYNC_BYTES]
    except (IndexError, UnicodeDecodeError):
        return None
    if len(sync) < SYNC_BYTES or pos + SYNC_BYTES > len(buf) or "avro.schema" not in meta:
        return None
    schema = _parse_schema(meta["avro.schema"].decode())
    codec = meta.get("avro.codec", b"null").decode()
    if codec != "null":
        raise ArchiveError(f"{getattr(f, 'name', '?')}: unsupported Avro codec {codec!r}")
    return Header(schema, codec, sync, pos + SYNC_BYTES)


def iter_blocks(f: BinaryIO, header: Header, size: int) -> Iterator[Block]:
    """Complete blocks in order; stops at the first torn or invalid one."""
    pos = header.end
    while pos < size:
        f.seek(pos)
        head = f.read(_BLOCK_HEAD_BYTES)
        try:
            count, used = decode_long(head, 0)
            length, used = decode_long(head, used)
        except IndexError:
            return
        end = pos + used + length + SYNC_BYTES
        if count <= 0 or length < 0 or end > size:
            return
        f.seek(pos + used + length)
        if f.read(SYNC_BYTES) != header.sync:
            return
        yield Block(count, pos + used, length, end)
        pos = end


def read_block(f: BinaryIO, header: Header, block: Block) -> Iterator[dict[str, Any]]:
    """The block's records, decoded with the writer's schema."""
    f.seek(block.data_at)
    bio = io.BytesIO(f.read(block.size))
    for _ in range(block.records):
        datum: dict[str, Any] = fastavro.schemaless_reader(bio, header.schema, None)  # type: ignore[assignment]
        yield datum


def scan_tail(path: Path) -> Tail:
    """Where the file's last complete block ends, and that block's last datum."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        header = read_header(f)
        if header is None:
            return Tail(None, 0, size, None)
        last = None
        for block in iter_blocks(f, header, size):  # read through to the last complete block
            last = block
        if last is None:
            return Tail(header, header.end, size, None)
        *_, datum = read_block(f, header, last)
        return Tail(header, last.end, size, datum)

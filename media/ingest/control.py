"""RTMP messages: type ids, protocol control, user control and commands.

The message types are RTMP 1.0 (Adobe, 2012) sections 5.4 (protocol control:
Set Chunk Size, Abort, Acknowledgement, Window Acknowledgement Size, Set Peer
Bandwidth), 6.2 and 7.1.7 (user control events), and 7.1 (audio, video,
data, shared object, command and aggregate messages).  Protocol control
messages travel on chunk stream 2 and message stream 0 (section 5.4).

Builders return ``RtmpMessage`` values for ``ChunkWriter.encode``; parsers take
a payload and raise ``ChunkError`` naming the message when it is malformed.
``media.ingest.chunk`` re-exports all of it, so callers import from there.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from media.ingest import amf0
from media.ingest.errors import ChunkError

SET_CHUNK_SIZE = 1
ABORT = 2
ACKNOWLEDGEMENT = 3
USER_CONTROL = 4
WINDOW_ACK_SIZE = 5
SET_PEER_BANDWIDTH = 6
AUDIO = 8
VIDEO = 9
DATA_AMF3 = 15
SHARED_OBJECT_AMF3 = 16
COMMAND_AMF3 = 17
DATA_AMF0 = 18
SHARED_OBJECT_AMF0 = 19
COMMAND_AMF0 = 20
AGGREGATE = 22

#: User control event types (section 7.1.7).
STREAM_BEGIN, STREAM_EOF, STREAM_DRY, SET_BUFFER_LENGTH, STREAM_IS_RECORDED = range(5)
PING_REQUEST, PING_RESPONSE = 6, 7

#: Set Peer Bandwidth limit types (section 5.4.5).
LIMIT_HARD, LIMIT_SOFT, LIMIT_DYNAMIC = 0, 1, 2

#: Section 5.4.1 allows chunk sizes up to 2**31 - 1, but no message is longer than
#: 0xFFFFFF bytes, so anything past 16 MiB only asks us to buffer for nothing.
MAX_CHUNK_SIZE = 1 << 24
#: Protocol control messages go on chunk stream 2, message stream 0 (section 5.4).
CONTROL_CSID = 2


@dataclass(frozen=True)
class RtmpMessage:
    """One RTMP message; ``timestamp`` is absolute milliseconds, modulo 2**32."""

    csid: int
    type_id: int
    timestamp: int
    stream_id: int
    payload: bytes


def _control(type_id: int, payload: bytes) -> RtmpMessage:
    return RtmpMessage(CONTROL_CSID, type_id, 0, 0, payload)


def _u32(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{what} must fit in 32 bits, not {value}")
    return struct.pack(">I", value)


def set_chunk_size(n: int) -> RtmpMessage:
    """Build Set Chunk Size (section 5.4.1)."""
    if not 1 <= n <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk size must be 1..{MAX_CHUNK_SIZE}, not {n}")
    return _control(SET_CHUNK_SIZE, struct.pack(">I", n))


def abort(csid: int) -> RtmpMessage:
    """Build Abort for a chunk stream (section 5.4.2)."""
    return _control(ABORT, _u32(csid, "chunk stream id"))


def acknowledgement(sequence: int) -> RtmpMessage:
    """Build Acknowledgement; the byte count wraps at 2**32 (section 5.4.3)."""
    return _control(ACKNOWLEDGEMENT, struct.pack(">I", sequence & 0xFFFFFFFF))


def window_ack_size(n: int) -> RtmpMessage:
    """Build Window Acknowledgement Size (section 5.4.4)."""
    return _control(WINDOW_ACK_SIZE, _u32(n, "window size"))


def set_peer_bandwidth(n: int, limit_type: int = LIMIT_DYNAMIC) -> RtmpMessage:
    """Build Set Peer Bandwidth (section 5.4.5)."""
    if limit_type not in (LIMIT_HARD, LIMIT_SOFT, LIMIT_DYNAMIC):
        raise ValueError(f"limit type must be 0, 1 or 2, not {limit_type}")
    return _control(SET_PEER_BANDWIDTH, _u32(n, "bandwidth") + bytes((limit_type,)))


def user_control(event: int, *values: int) -> RtmpMessage:
    """Build a user control message: a 16-bit event type and 32-bit fields (section 7.1.7)."""
    data = b"".join(_u32(v, "user control field") for v in values)
    return _control(USER_CONTROL, struct.pack(">H", event) + data)


def stream_begin(stream_id: int) -> RtmpMessage:
    """Build the Stream Begin event, sent once a stream is usable (section 7.1.7)."""
    return user_control(STREAM_BEGIN, stream_id)


def stream_eof(stream_id: int) -> RtmpMessage:
    """Build the Stream EOF event (section 7.1.7)."""
    return user_control(STREAM_EOF, stream_id)


def ping_response(timestamp: int) -> RtmpMessage:
    """Build the answer to a Ping Request, echoing its timestamp (section 7.1.7)."""
    return user_control(PING_RESPONSE, timestamp & 0xFFFFFFFF)


def command(csid: int, stream_id: int, *values: Any) -> RtmpMessage:
    """Build an AMF0 command message: name, transaction id, object, args (section 7.1.1)."""
    return RtmpMessage(csid, COMMAND_AMF0, 0, stream_id, amf0.encode(*values))


def data(csid: int, stream_id: int, *values: Any) -> RtmpMessage:
    """Build an AMF0 data message, e.g. ``onMetaData`` or ``|RtmpSampleAccess`` (section 7.1.2)."""
    return RtmpMessage(csid, DATA_AMF0, 0, stream_id, amf0.encode(*values))


def _fixed(payload: bytes, size: int, what: str) -> tuple[int, ...]:
    if len(payload) != size:
        raise ChunkError(f"{what} payload is {len(payload)} bytes, expected {size}")
    return struct.unpack(">I" if size == 4 else ">IB", payload)


def parse_set_chunk_size(payload: bytes) -> int:
    """Read Set Chunk Size; the top bit must be zero and the size 1..MAX_CHUNK_SIZE."""
    (n,) = _fixed(payload, 4, "Set Chunk Size")
    if n & 0x80000000:
        raise ChunkError(f"Set Chunk Size 0x{n:08x} has its reserved top bit set")
    if not 1 <= n <= MAX_CHUNK_SIZE:
        raise ChunkError(f"Set Chunk Size {n} is outside 1..{MAX_CHUNK_SIZE}")
    return n


def parse_abort(payload: bytes) -> int:
    """Read Abort: the chunk stream whose unfinished message is dropped."""
    return _fixed(payload, 4, "Abort")[0]


def parse_acknowledgement(payload: bytes) -> int:
    """Read Acknowledgement: the bytes the peer has received so far."""
    return _fixed(payload, 4, "Acknowledgement")[0]


def parse_window_ack_size(payload: bytes) -> int:
    """Read Window Acknowledgement Size."""
    return _fixed(payload, 4, "Window Acknowledgement Size")[0]


def parse_set_peer_bandwidth(payload: bytes) -> tuple[int, int]:
    """Read Set Peer Bandwidth: (window size, limit type)."""
    size, limit_type = _fixed(payload, 5, "Set Peer Bandwidth")
    return size, limit_type


def parse_user_control(payload: bytes) -> tuple[int, tuple[int, ...]]:
    """Read a user control message: (event type, its 32-bit fields)."""
    if len(payload) < 2 or (len(payload) - 2) % 4:
        raise ChunkError(f"user control payload of {len(payload)} bytes is malformed")
    (event,) = struct.unpack_from(">H", payload)
    count = (len(payload) - 2) // 4
    return event, struct.unpack_from(f">{count}I", payload, 2)

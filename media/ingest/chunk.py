"""The RTMP chunk stream: messages cut into chunks, and put back together.

RTMP 1.0 (Adobe, 2012) section 5.3: each message travels as chunks of at most
``chunk_size`` payload bytes, each led by a basic header (section 5.3.1.1: the
header format ``fmt`` and a chunk stream id of 1 to 3 bytes), a message header
of 11, 7, 3 or 0 bytes (section 5.3.1.2: fmt 0 carries everything, fmt 1 drops
the stream id, fmt 2 keeps only a timestamp delta, fmt 3 repeats the previous
header) and, when the timestamp field is 0xFFFFFF, a 4-byte extended timestamp
(section 5.3.1.3).  Chunks of different chunk streams may interleave.

``ChunkReader`` takes bytes by push and returns whole ``RtmpMessage`` values;
it applies Set Chunk Size and Abort (section 5.4.1, 5.4.2) itself, because the
next chunk cannot be read without them.  What a peer can make it hold is
bounded: each message by ``max_message_bytes``, unfinished messages together
by twice that, and chunk streams by ``MAX_CHUNK_STREAMS``.  ``ChunkWriter``
does the reverse.  Protocol control messages (section 5.4), user control
events (section 7.1.7) and AMF0 command messages (section 7.1.1) are built
(and control payloads parsed) in ``media.ingest.control``, re-exported here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from media.ingest.control import (
    ABORT,
    ACKNOWLEDGEMENT,
    AGGREGATE,
    AUDIO,
    COMMAND_AMF0,
    COMMAND_AMF3,
    CONTROL_CSID,
    DATA_AMF0,
    DATA_AMF3,
    MAX_CHUNK_SIZE,
    PING_REQUEST,
    PING_RESPONSE,
    SET_BUFFER_LENGTH,
    SET_CHUNK_SIZE,
    SET_PEER_BANDWIDTH,
    SHARED_OBJECT_AMF0,
    SHARED_OBJECT_AMF3,
    STREAM_BEGIN,
    STREAM_EOF,
    USER_CONTROL,
    VIDEO,
    WINDOW_ACK_SIZE,
    RtmpMessage,
    abort,
    acknowledgement,
    command,
    data,
    parse_abort,
    parse_acknowledgement,
    parse_set_chunk_size,
    parse_set_peer_bandwidth,
    parse_user_control,
    parse_window_ack_size,
    ping_response,
    set_chunk_size,
    set_peer_bandwidth,
    stream_begin,
    stream_eof,
    user_control,
    window_ack_size,
)
from media.ingest.errors import ChunkError

__all__ = [
    "ABORT", "ACKNOWLEDGEMENT", "AGGREGATE", "AUDIO", "COMMAND_AMF0", "COMMAND_AMF3",
    "CONTROL_CSID", "DATA_AMF0", "DATA_AMF3", "DEFAULT_CHUNK_SIZE", "MAX_CHUNK_SIZE",
    "MAX_CHUNK_STREAMS", "MAX_MESSAGE_BYTES", "PING_REQUEST", "PING_RESPONSE",
    "SET_BUFFER_LENGTH", "SET_CHUNK_SIZE", "SET_PEER_BANDWIDTH", "SHARED_OBJECT_AMF0",
    "SHARED_OBJECT_AMF3", "STREAM_BEGIN", "STREAM_EOF", "USER_CONTROL", "VIDEO",
    "WINDOW_ACK_SIZE", "ChunkReader", "ChunkWriter", "RtmpMessage", "abort",
    "acknowledgement", "command", "data", "parse_abort", "parse_acknowledgement",
    "parse_set_chunk_size", "parse_set_peer_bandwidth",
    "parse_user_control", "parse_window_ack_size", "ping_response", "set_chunk_size",
    "set_peer_bandwidth", "stream_begin", "stream_eof", "user_control", "window_ack_size",
]

#: Every chunk stream starts at 128 payload bytes per chunk (section 5.4.1).
DEFAULT_CHUNK_SIZE = 128
#: Chunk stream ids 0 and 1 select the longer basic headers; 2..65599 are usable
#: (section 5.3.1.1).
MIN_CSID, MAX_CSID = 2, 65599
#: The message length field is 24 bits (section 5.3.1.2.1).
MAX_MESSAGE_LENGTH = 0xFFFFFF
#: Default cap on one message.  A keyframe of a 4K stream at 50 Mbit/s is a few MB.
MAX_MESSAGE_BYTES = 8 << 20
#: Most chunk streams one connection may open; publishers use fewer than ten.
MAX_CHUNK_STREAMS = 256
#: A timestamp field of 0xFFFFFF means "see the extended timestamp" (section 5.3.1.3).
EXTENDED_TIMESTAMP = 0xFFFFFF
_HEADER_SIZES = (11, 7, 3, 0)


@dataclass
class _ChunkStream:
    """What a chunk stream remembers between chunks (section 5.3.1.2)."""

    timestamp: int = 0  # absolute timestamp of the last message started here
    ts_field: int = 0  # the last header's timestamp (fmt 0) or delta (fmt 1/2)
    extended: bool = False  # whether that header used the extended timestamp
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    in_progress: bool = False
    payload: bytearray = field(default_factory=bytearray)


class ChunkReader:
    """Feed bytes from the peer (after the handshake); get whole messages back."""

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = MAX_MESSAGE_BYTES
        self.set_max_message_bytes(max_message_bytes)
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.bytes_received = 0
        self._buffer = bytearray()
        self._streams: dict[int, _ChunkStream] = {}
        self._pending_bytes = 0

    def set_max_message_bytes(self, n: int) -> None:
        """Change the cap on one message (the ingest raises it once a publisher's key is accepted).

        It applies from the next chunk on.  What a peer can make the reader hold is about three
        times ``n`` at most: one chunk not yet whole, and unfinished messages of twice ``n`` together.
        """
        if not 0 < n <= MAX_MESSAGE_LENGTH:
            raise ValueError(f"max_message_bytes must be 1..{MAX_MESSAGE_LENGTH}")
        self.max_message_bytes = n

    def feed(self, data: bytes) -> list[RtmpMessage]:
        """Take bytes in any pieces; return the messages they complete, in order."""
        self.bytes_received += len(data)
        self._buffer += data
        messages: list[RtmpMessage] = []
        pos = 0
        try:
            while True:
                step = self._read_chunk(pos)
                if step is None:
                    break
                pos, message = step
                if message is not None:
                    self._apply_control(message)
                    messages.append(message)
        finally:
            del self._buffer[:pos]
        return messages

    def _read_chunk(self, pos: int) -> tuple[int, RtmpMessage | None] | None:
        """Read one chunk at ``pos`` if all of it is buffered; change nothing otherwise."""
        buf = self._buffer
        end = len(buf)
        if pos >= end:
            return None
        fmt, csid = buf[pos] >> 6, buf[pos] & 0x3F
        p = pos + 1
        if csid < 2:
            extra = csid + 1  # csid 0: one more byte, csid 1: two (little-endian)
            if p + extra > end:
                return None
            csid = 64 + buf[p] + (buf[p + 1] << 8 if extra == 2 else 0)
            p += extra
        if p + _HEADER_SIZES[fmt] > end:
            return None
        state = self._streams.get(csid)
        if state is None:
            if fmt != 0:
                raise ChunkError(f"fmt {fmt} chunk on chunk stream {csid} with no previous header")
            if len(self._streams) >= MAX_CHUNK_STREAMS:
                raise ChunkError(f"more than {MAX_CHUNK_STREAMS} chunk streams opened")
            state = _ChunkStream()
        if fmt < 3 and state.in_progress:
            raise ChunkError(
                f"fmt {fmt} chunk on chunk stream {csid} before its message was complete "
                f"({len(state.payload)} of {state.length} bytes)"
            )
        length, type_id, stream_id = state.length, state.type_id, state.stream_id
        if fmt == 3:
            ts_field, extended = state.ts_field, state.extended
            if extended:
                # Senders disagree on whether fmt 3 chunks repeat the extended
                # timestamp (section 5.3.1.3 says they do; some librtmp builds
                # do not), so take the 4 bytes only when they hold that value.
                if p + 4 > end:
                    return None
                if buf[p:p + 4] == struct.pack(">I", ts_field):
                    p += 4
        else:
            ts_field = int.from_bytes(buf[p:p + 3], "big")
            if fmt <= 1:
                length = int.from_bytes(buf[p + 3:p + 6], "big")
                type_id = buf[p + 6]
            if fmt == 0:
                stream_id = int.from_bytes(buf[p + 7:p + 11], "little")
            p += _HEADER_SIZES[fmt]
            extended = ts_field == EXTENDED_TIMESTAMP
            if extended:
                if p + 4 > end:
                    return None
                ts_field = int.from_bytes(buf[p:p + 4], "big")
                p += 4
        if length > self.max_message_bytes:
            raise ChunkError(
                f"message of {length} bytes on chunk stream {csid} is over the "
                f"{self.max_message_bytes}-byte limit"
            )
        received = len(state.payload) if state.in_progress else 0
        take = min(self.chunk_size, length - received)
        if p + take > end:
            return None
        if not state.in_progress and received + take < length:
            if self._pending_bytes + length > 2 * self.max_message_bytes:
                raise ChunkError(
                    f"unfinished messages would hold {self._pending_bytes + length} bytes, "
                    f"over twice the {self.max_message_bytes}-byte limit"
                )
            self._pending_bytes += length
        # The whole chunk is here: commit it to the chunk stream's state.
        self._streams[csid] = state
        if not state.in_progress:
            # fmt 0 carries an absolute time; fmt 1/2 a delta, and a fmt 3 chunk that
            # starts a message reuses the last delta (or a fmt 0 time, section 5.3.1.2.4).
            state.timestamp = ts_field if fmt == 0 else (state.timestamp + ts_field) & 0xFFFFFFFF
            state.payload = bytearray()
        state.ts_field, state.extended = ts_field, extended
        state.length, state.type_id, state.stream_id = length, type_id, stream_id
        state.payload += buf[p:p + take]
        p += take
        if len(state.payload) < length:
            state.in_progress = True
            return p, None
        if state.in_progress:
            self._pending_bytes -= length
        state.in_progress = False
        payload, state.payload = bytes(state.payload), bytearray()
        return p, RtmpMessage(csid, type_id, state.timestamp, stream_id, payload)

    def _apply_control(self, message: RtmpMessage) -> None:
        if message.type_id == SET_CHUNK_SIZE:
            self.chunk_size = parse_set_chunk_size(message.payload)
        elif message.type_id == ABORT:
            state = self._streams.get(parse_abort(message.payload))
            if state is not None and state.in_progress:
                self._pending_bytes -= state.length
                state.in_progress, state.payload = False, bytearray()


def _basic_header(fmt: int, csid: int) -> bytes:
    if csid < 64:
        return bytes((fmt << 6 | csid,))
    if csid < 320:
        return bytes((fmt << 6, csid - 64))
    return bytes((fmt << 6 | 1,)) + (csid - 64).to_bytes(2, "little")


class ChunkWriter:
    """Cut messages into chunks: fmt 0 for the first chunk, fmt 3 after it."""

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.set_chunk_size(chunk_size)

    def set_chunk_size(self, n: int) -> None:
        """Use chunks of ``n`` bytes from the next message on."""
        if not 1 <= n <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size must be 1..{MAX_CHUNK_SIZE}, not {n}")
        self.chunk_size = n

    def encode(self, msg: RtmpMessage) -> bytes:
        """Return the chunks of one message; a Set Chunk Size message takes effect after it."""
        if not MIN_CSID <= msg.csid <= MAX_CSID:
            raise ValueError(f"chunk stream id must be {MIN_CSID}..{MAX_CSID}, not {msg.csid}")
        if len(msg.payload) > MAX_MESSAGE_LENGTH:
            raise ValueError(f"message of {len(msg.payload)} bytes is over {MAX_MESSAGE_LENGTH}")
        timestamp = msg.timestamp & 0xFFFFFFFF
        extended = struct.pack(">I", timestamp) if timestamp >= EXTENDED_TIMESTAMP else b""
        out = bytearray(_basic_header(0, msg.csid))
        out += min(timestamp, EXTENDED_TIMESTAMP).to_bytes(3, "big")
        out += len(msg.payload).to_bytes(3, "big")
        out += struct.pack("<BI", msg.type_id, msg.stream_id) + extended
        size = self.chunk_size
        out += msg.payload[:size]
        continuation = _basic_header(3, msg.csid) + extended
        for offset in range(size, len(msg.payload), size):
            out += continuation + msg.payload[offset:offset + size]
        if msg.type_id == SET_CHUNK_SIZE:
            self.set_chunk_size(parse_set_chunk_size(msg.payload))
        return bytes(out)

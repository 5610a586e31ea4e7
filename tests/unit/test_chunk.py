from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import pytest

from media.ingest import chunk
from media.ingest.chunk import ChunkReader, ChunkWriter, RtmpMessage
from media.ingest.errors import ChunkError, ProtocolError

DATA = Path(__file__).parent.parent / "data" / "rtmp"


def read_all(data: bytes, piece: int = 0, **kwargs: int) -> list[RtmpMessage]:
    reader = ChunkReader(**kwargs)
    if not piece:
        return reader.feed(data)
    out: list[RtmpMessage] = []
    for i in range(0, len(data), piece):
        out += reader.feed(data[i:i + piece])
    return out


def header(fmt: int, csid: int, *fields: bytes) -> bytes:
    return bytes((fmt << 6 | csid,)) + b"".join(fields)


def u24(n: int) -> bytes:
    return n.to_bytes(3, "big")


# -- the ffmpeg capture ---------------------------------------------------------


def test_ffmpeg_publish_session() -> None:
    data = (DATA / "ffmpeg_publish.bin").read_bytes()
    reader = ChunkReader()
    messages = reader.feed(data)
    assert len(messages) == 160 and reader.bytes_received == len(data)
    assert reader.chunk_size == 4096  # ffmpeg's Set Chunk Size, applied by the reader
    assert Counter(m.type_id for m in messages) == {
        chunk.COMMAND_AMF0: 7, chunk.SET_CHUNK_SIZE: 1, chunk.DATA_AMF0: 1, chunk.VIDEO: 62, chunk.AUDIO: 89,
    }
    first = messages[0]
    assert (first.csid, first.type_id, first.timestamp, first.stream_id, len(first.payload)) == (3, 20, 0, 0, 140)
    video = [m for m in messages if m.type_id == chunk.VIDEO]
    assert {m.stream_id for m in video} == {1} and {m.csid for m in video} == {6}
    times = [m.timestamp for m in video]
    assert times == sorted(times) and times[-1] == 1967  # deltas accumulate to absolute ms
    assert max(len(m.payload) for m in video) == 3540  # the first keyframe
    assert read_all(data, piece=7) == messages


def test_truncated_capture_yields_the_complete_prefix() -> None:
    full = read_all((DATA / "ffmpeg_publish.bin").read_bytes())
    reader = ChunkReader()
    assert reader.feed((DATA / "ffmpeg_publish_truncated.bin").read_bytes()) == full[:11]
    # The rest arrives later and the stream carries on.
    assert reader.feed((DATA / "ffmpeg_publish.bin").read_bytes()[5000:]) == full[11:]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ffmpeg_publish_bad_chunk_size.bin", "Set Chunk Size 16777217 is outside 1..16777216"),
        ("ffmpeg_publish_orphan_fmt1.bin", "fmt 1 chunk on chunk stream 3 with no previous header"),
        ("ffmpeg_publish_oversized.bin",
         "message of 16777215 bytes on chunk stream 6 is over the 8388608-byte limit"),
    ],
)
def test_invalid_captures(name: str, message: str) -> None:
    with pytest.raises(ChunkError) as info:
        ChunkReader().feed((DATA / name).read_bytes())
    assert str(info.value) == message and isinstance(info.value, ProtocolError)


# -- headers and timestamps (RTMP 1.0 section 5.3) -------------------------------


def test_spec_example_deltas_and_type_3_reuse() -> None:
    # Section 5.3.2.1: fmt 0 at 1000, fmt 2 delta 20, then fmt 3 chunks keep adding 20.
    payload = b"a" * 32
    data = header(0, 3, u24(1000), u24(32), b"\x08", struct.pack("<I", 12345)) + payload
    data += header(2, 3, u24(20)) + payload + header(3, 3) + payload + header(3, 3) + payload
    messages = read_all(data)
    assert [m.timestamp for m in messages] == [1000, 1020, 1040, 1060]
    assert {(m.stream_id, m.type_id, m.payload) for m in messages} == {(12345, 8, payload)}


def test_type_3_after_type_0_uses_its_timestamp_as_delta() -> None:
    data = header(0, 4, u24(40), u24(1), b"\x08", bytes(4)) + b"x" + header(3, 4) + b"y"
    assert [m.timestamp for m in read_all(data)] == [40, 80]


def test_type_1_changes_length_and_type() -> None:
    data = header(0, 4, u24(0), u24(1), b"\x08", struct.pack("<I", 1)) + b"x"
    data += header(1, 4, u24(33), u24(2), b"\x09") + b"yz"
    second = read_all(data)[1]
    assert (second.timestamp, second.type_id, second.stream_id, second.payload) == (33, 9, 1, b"yz")


def test_extended_timestamp_on_every_chunk_or_only_the_first() -> None:
    ts = 0x01020304
    first = header(0, 5, u24(0xFFFFFF), u24(200), b"\x09", bytes(4)) + struct.pack(">I", ts) + b"a" * 128
    with_ext = first + header(3, 5) + struct.pack(">I", ts) + b"b" * 72
    without_ext = first + header(3, 5) + b"b" * 72  # librtmp-style senders leave it off
    for data in (with_ext, without_ext):
        for piece in (0, 1, 3):
            (message,) = read_all(data, piece=piece)
            assert message.timestamp == ts and message.payload == b"a" * 128 + b"b" * 72


def test_extended_delta_on_type_1_and_wraparound() -> None:
    data = header(0, 6, u24(100), u24(0), b"\x08", bytes(4))
    data += header(1, 6, u24(0xFFFFFF), u24(0), b"\x08") + struct.pack(">I", 0x01000000)
    data += header(0, 6, u24(0xFFFFFF), u24(0), b"\x08", bytes(4)) + struct.pack(">I", 0xFFFFFFF0)
    data += header(2, 6, u24(0x20))
    assert [m.timestamp for m in read_all(data)] == [100, 0x01000064, 0xFFFFFFF0, 0x10]  # modulo 2**32


def test_interleaved_chunk_streams() -> None:
    a, b = bytes(range(200)), bytes(range(50, 250))
    data = header(0, 4, u24(1), u24(200), b"\x09", bytes(4)) + a[:128]
    data += header(0, 5, u24(2), u24(200), b"\x08", bytes(4)) + b[:128]
    data += header(3, 5) + b[128:] + header(3, 4) + a[128:]
    messages = read_all(data)
    assert [(m.csid, m.payload) for m in messages] == [(5, b), (4, a)]


@pytest.mark.parametrize("csid", [2, 63, 64, 319, 320, 65599])
def test_basic_header_sizes(csid: int) -> None:
    message = RtmpMessage(csid, chunk.AUDIO, 7, 1, b"p" * 300)
    encoded = ChunkWriter().encode(message)
    assert encoded[0] & 0x3F == (csid if csid < 64 else 0 if csid < 320 else 1)
    assert read_all(encoded) == [message] == read_all(encoded, piece=1)


def test_empty_message() -> None:
    message = RtmpMessage(3, chunk.AUDIO, 5, 1, b"")
    assert read_all(ChunkWriter().encode(message) * 2) == [message, message]


def test_abort_drops_the_unfinished_message() -> None:
    data = header(0, 4, u24(0), u24(300), b"\x09", bytes(4)) + b"x" * 128
    data += ChunkWriter().encode(chunk.abort(4))
    data += header(0, 4, u24(9), u24(3), b"\x09", bytes(4)) + b"new"
    messages = read_all(data)
    assert [m.type_id for m in messages] == [chunk.ABORT, chunk.VIDEO]
    assert messages[1].payload == b"new"


def test_new_header_before_the_message_is_complete() -> None:
    data = header(0, 4, u24(0), u24(300), b"\x09", bytes(4)) + b"x" * 128 + header(2, 4, u24(1))
    with pytest.raises(ChunkError) as info:
        read_all(data)
    assert str(info.value) == "fmt 2 chunk on chunk stream 4 before its message was complete (128 of 300 bytes)"


def test_set_chunk_size_rules() -> None:
    writer = ChunkWriter()
    with pytest.raises(ChunkError, match="^Set Chunk Size 0x80000010 has its reserved top bit set$"):
        read_all(writer.encode(RtmpMessage(2, 1, 0, 0, struct.pack(">I", 0x80000010))))
    with pytest.raises(ChunkError, match="^Set Chunk Size 0 is outside 1..16777216$"):
        read_all(writer.encode(RtmpMessage(2, 1, 0, 0, bytes(4))))
    with pytest.raises(ChunkError, match="^Set Chunk Size payload is 3 bytes, expected 4$"):
        read_all(writer.encode(RtmpMessage(2, 1, 0, 0, bytes(3))))


def test_limits_on_streams_and_unfinished_bytes() -> None:
    writer = ChunkWriter()
    many = b"".join(writer.encode(RtmpMessage(csid, 8, 0, 1, b"")) for csid in range(2, 2 + chunk.MAX_CHUNK_STREAMS))
    assert len(read_all(many)) == chunk.MAX_CHUNK_STREAMS
    with pytest.raises(ChunkError, match="^more than 256 chunk streams opened$"):
        read_all(many + writer.encode(RtmpMessage(1000, 8, 0, 1, b"")))
    starts = b"".join(header(0, csid, u24(0), u24(1000), b"\x09", bytes(4)) + b"x" * 128 for csid in (4, 5, 6))
    with pytest.raises(ChunkError, match="^unfinished messages would hold 3000 bytes, over twice the 1000-byte limit$"):
        read_all(starts, max_message_bytes=1000)
    with pytest.raises(ValueError, match="max_message_bytes"):
        ChunkReader(max_message_bytes=0)


# -- the writer and the control messages (section 5.4, 7.1) ----------------------


def test_writer_layout_with_extended_timestamp() -> None:
    writer = ChunkWriter(chunk_size=4)
    encoded = writer.encode(RtmpMessage(3, 9, 0x1000000, 1, b"abcdef"))
    ext = struct.pack(">I", 0x1000000)
    assert encoded == (b"\x03\xff\xff\xff\x00\x00\x06\x09\x01\x00\x00\x00" + ext + b"abcd" + b"\xc3" + ext + b"ef")


def test_writer_applies_its_own_set_chunk_size() -> None:
    writer = ChunkWriter()
    writer.encode(chunk.set_chunk_size(4096))
    assert writer.chunk_size == 4096
    with pytest.raises(ValueError, match="chunk size must be 1..16777216, not 0"):
        writer.set_chunk_size(0)
    with pytest.raises(ValueError, match="chunk stream id must be 2..65599, not 1"):
        writer.encode(RtmpMessage(1, 8, 0, 0, b""))


def test_control_builders_and_parsers() -> None:
    assert chunk.set_chunk_size(4096) == RtmpMessage(2, 1, 0, 0, b"\x00\x00\x10\x00")
    assert chunk.parse_window_ack_size(chunk.window_ack_size(2_500_000).payload) == 2_500_000
    assert chunk.parse_set_peer_bandwidth(chunk.set_peer_bandwidth(5000).payload) == (5000, 2)
    assert chunk.parse_acknowledgement(chunk.acknowledgement(2**32 + 5).payload) == 5
    assert chunk.stream_begin(1) == RtmpMessage(2, 4, 0, 0, b"\x00\x00\x00\x00\x00\x01")
    assert chunk.parse_user_control(chunk.stream_eof(1).payload) == (chunk.STREAM_EOF, (1,))
    assert chunk.parse_user_control(chunk.user_control(3, 1, 3000).payload) == (3, (1, 3000))
    assert chunk.parse_user_control(chunk.ping_response(77).payload) == (chunk.PING_RESPONSE, (77,))
    cmd = chunk.command(3, 1, "onStatus", 0, None, {"code": "NetStream.Publish.Start"})
    assert (cmd.type_id, cmd.csid, cmd.stream_id) == (chunk.COMMAND_AMF0, 3, 1)
    assert chunk.data(4, 1, "onMetaData", {}).type_id == chunk.DATA_AMF0
    with pytest.raises(ChunkError, match="^user control payload of 3 bytes is malformed$"):
        chunk.parse_user_control(b"\x00\x00\x01")
    with pytest.raises(ChunkError, match="^Set Peer Bandwidth payload is 4 bytes, expected 5$"):
        chunk.parse_set_peer_bandwidth(bytes(4))
    with pytest.raises(ValueError, match="limit type"):
        chunk.set_peer_bandwidth(1, 3)

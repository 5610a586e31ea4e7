from __future__ import annotations

import hashlib
import hmac
import struct
from pathlib import Path

import pytest

from media.ingest import handshake
from media.ingest.chunk import ChunkReader
from media.ingest.errors import HandshakeError
from media.ingest.handshake import HANDSHAKE_SIZE, ServerHandshake

DATA = Path(__file__).parent.parent / "data" / "rtmp"


def fixed_random(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


def simple_c1() -> bytes:
    return struct.pack(">II", 1234, 0) + (bytes(range(256)) * 6)[:HANDSHAKE_SIZE - 8]


def test_simple_handshake() -> None:
    c1 = simple_c1()
    shake = ServerHandshake(time_ms=99, random_bytes=fixed_random)
    reply = shake.feed(b"\x03" + c1)
    assert len(reply) == 1 + 2 * HANDSHAKE_SIZE and reply[0] == 3
    s1, s2 = reply[1:1 + HANDSHAKE_SIZE], reply[1 + HANDSHAKE_SIZE:]
    assert s1[:8] == struct.pack(">II", 99, 0) and s1[8:] == fixed_random(HANDSHAKE_SIZE - 8)
    assert s2 == c1  # S2 echoes C1 (RTMP 1.0 section 5.2.4)
    assert not shake.done and not shake.digest and shake.leftover == b""
    assert shake.feed(s1 + b"\x02rest") == b""
    assert shake.done and shake.leftover == b"\x02rest"


def test_byte_at_a_time_gives_the_same_reply() -> None:
    data = b"\x03" + simple_c1() + bytes(HANDSHAKE_SIZE) + b"chunks"
    whole = ServerHandshake(random_bytes=fixed_random)
    expected = whole.feed(data)
    piecewise = ServerHandshake(random_bytes=fixed_random)
    replies = b""
    for i in range(len(data)):
        replies += piecewise.feed(data[i:i + 1])
        if piecewise.done:
            break
    assert replies == expected
    assert piecewise.leftover == b"" and whole.leftover == b"chunks"


def test_wrong_version_is_refused_at_the_first_byte() -> None:
    with pytest.raises(HandshakeError, match=r"^unsupported RTMP version 6$"):
        ServerHandshake().feed((DATA / "ffmpeg_handshake_version6.bin").read_bytes()[:1])
    with pytest.raises(HandshakeError, match=r"^unsupported RTMP version 6$"):
        ServerHandshake().feed((DATA / "ffmpeg_handshake_version6.bin").read_bytes())


def test_feed_after_done_is_a_usage_error() -> None:
    shake = ServerHandshake()
    shake.feed(b"\x03" + simple_c1() + bytes(HANDSHAKE_SIZE))
    with pytest.raises(RuntimeError, match="chunk reader"):
        shake.feed(b"x")


def test_random_source_must_give_what_was_asked() -> None:
    with pytest.raises(ValueError, match="returned 3 bytes"):
        ServerHandshake(random_bytes=lambda n: b"abc").feed(b"\x03" + simple_c1())


def _ffmpeg_validates(c1: bytes, s1: bytes, s2: bytes) -> bool:
    """What ffmpeg's rtmpproto.c checks as a player: S1's digest, then S2's signature."""
    for base in (772, 8):
        pos = sum(s1[base:base + 4]) % 728 + base + 4
        expected = hmac.new(handshake.FMS_KEY[:36], s1[:pos] + s1[pos + 32:], hashlib.sha256).digest()
        if s1[pos:pos + 32] == expected:
            break
    else:
        return False
    client_pos = sum(c1[8:12]) % 728 + 12  # where ffmpeg put its own digest
    key = hmac.new(handshake.FMS_KEY, c1[client_pos:client_pos + 32], hashlib.sha256).digest()
    return hmac.new(key, s2[:-32], hashlib.sha256).digest() == s2[-32:]


def test_ffmpeg_capture_gets_a_digest_answer() -> None:
    captured = (DATA / "ffmpeg_handshake.bin").read_bytes()
    c1 = captured[1:1 + HANDSHAKE_SIZE]
    assert c1[4:8] == bytes((9, 0, 124, 2))  # ffmpeg claims Flash Player 9.0.124.2
    assert handshake.find_client_digest(c1) is not None
    shake = ServerHandshake(time_ms=5)
    reply = shake.feed(captured[:1000]) + shake.feed(captured[1000:])
    assert shake.done and shake.digest and shake.leftover == b""
    s1, s2 = reply[1:1 + HANDSHAKE_SIZE], reply[1 + HANDSHAKE_SIZE:]
    assert s1[4:8] == handshake.SERVER_VERSION
    assert _ffmpeg_validates(c1, s1, s2)


def test_capture_then_chunk_stream() -> None:
    shake = ServerHandshake()
    shake.feed((DATA / "ffmpeg_handshake.bin").read_bytes() + (DATA / "ffmpeg_publish.bin").read_bytes()[:250])
    messages = ChunkReader().feed(shake.leftover)
    assert [m.type_id for m in messages] == [20, 1, 20, 20]  # connect, Set Chunk Size, releaseStream, FCPublish


def test_a_corrupt_digest_falls_back_to_the_simple_handshake() -> None:
    c1 = bytearray((DATA / "ffmpeg_handshake.bin").read_bytes()[1:1 + HANDSHAKE_SIZE])
    c1[100] ^= 0xFF
    assert handshake.find_client_digest(bytes(c1)) is None
    shake = ServerHandshake()
    reply = shake.feed(b"\x03" + bytes(c1))
    assert not shake.digest and reply[1 + HANDSHAKE_SIZE:] == bytes(c1)

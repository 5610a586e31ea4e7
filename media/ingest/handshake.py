"""The server side of the RTMP handshake, as a push state machine.

RTMP 1.0 section 5.2: the client sends C0 (one version byte, 3) and C1 (1536
bytes: time, four zero bytes, 1528 random bytes); the server answers S0, S1
(the same shape) and S2 (an echo of C1); the client ends with C2 (an echo of
S1), and every byte after C2 belongs to the chunk stream (section 5.3).

Flash Player 9 and later clients put a version in C1's zero field and an
HMAC-SHA256 digest inside C1 (the "digest" or "complex" handshake, never in
the published spec, but implemented alike by ffmpeg's ``rtmpproto.c``,
librtmp's ``handshake.h`` and nginx-rtmp).  Publishers do not check the
server's answer, but players such as ffmpeg's check S1 and S2 when S1 carries
a version.  So when C1's digest verifies we answer in kind; otherwise we use
the simple handshake.  The keys are public constants from those projects.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable

from media.ingest.errors import HandshakeError

__all__ = ["HANDSHAKE_SIZE", "RTMP_VERSION", "ServerHandshake"]

#: C0/S0: the protocol version the client requests (RTMP 1.0 section 5.2.2).
RTMP_VERSION = 3
#: C1/S1/C2/S2 are 1536 bytes each (RTMP 1.0 sections 5.2.3, 5.2.4).
HANDSHAKE_SIZE = 1536
DIGEST_SIZE = 32

_KEY_TAIL = bytes.fromhex("f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae")
#: The Flash Player key; its 30-byte text part signs C1.
FP_KEY = b"Genuine Adobe Flash Player 001" + _KEY_TAIL
#: The Flash Media Server key; its 36-byte text part signs S1, all of it keys S2.
FMS_KEY = b"Genuine Adobe Flash Media Server 001" + _KEY_TAIL
FP_KEY_TEXT_LEN = 30
FMS_KEY_TEXT_LEN = 36
#: Our S1 version field (as nginx-rtmp's); non-zero tells digest clients to check S1/S2.
SERVER_VERSION = bytes((0x0D, 0x0E, 0x0A, 0x0D))
#: Where a digest may sit: scheme 0 puts the offset bytes at 8, scheme 1 at 772.
DIGEST_SCHEMES = (772, 8)


def _digest_position(block: bytes, base: int) -> int:
    # Four bytes at ``base`` pick one of 728 places just after them.
    return sum(block[base:base + 4]) % 728 + base + 4


def _block_digest(block: bytes, position: int, key: bytes) -> bytes:
    message = block[:position] + block[position + DIGEST_SIZE:]
    return hmac.new(key, message, hashlib.sha256).digest()


def find_client_digest(c1: bytes) -> bytes | None:
    """Return the FP9 digest embedded in C1, or None when C1 is a simple one."""
    if c1[4:8] == b"\x00\x00\x00\x00":
        return None
    key = FP_KEY[:FP_KEY_TEXT_LEN]
    for base in DIGEST_SCHEMES:
        position = _digest_position(c1, base)
        digest = c1[position:position + DIGEST_SIZE]
        if hmac.compare_digest(digest, _block_digest(c1, position, key)):
            return digest
    return None


class ServerHandshake:
    """Feed client bytes; send back what ``feed`` returns until ``done``."""

    def __init__(self, time_ms: int = 0, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        # The clock and the randomness come in from outside so the state machine
        # stays pure; S1's time may be zero (section 5.2.3).
        self._time_ms = time_ms & 0xFFFFFFFF
        self._random_bytes = random_bytes
        self._buffer = bytearray()
        self._sent_response = False
        self._done = False
        self.digest = False
        """True when the client used (and was answered with) the digest handshake."""

    @property
    def done(self) -> bool:
        """True once C2 has arrived; the chunk stream starts with ``leftover``."""
        return self._done

    @property
    def leftover(self) -> bytes:
        """Bytes that came after C2 and already belong to the chunk stream."""
        return bytes(self._buffer) if self._done else b""

    def feed(self, data: bytes) -> bytes:
        """Take client bytes and return the bytes to send (S0+S1+S2 once, else b"")."""
        if self._done:
            raise RuntimeError("handshake is done; give further bytes to the chunk reader")
        self._buffer += data
        if not self._sent_response:
            if self._buffer and self._buffer[0] != RTMP_VERSION:
                raise HandshakeError(f"unsupported RTMP version {self._buffer[0]}")
            if len(self._buffer) < 1 + HANDSHAKE_SIZE:
                return b""
            c1 = bytes(self._buffer[1:1 + HANDSHAKE_SIZE])
            del self._buffer[:1 + HANDSHAKE_SIZE]
            self._sent_response = True
            response = bytes((RTMP_VERSION,)) + self._answer(c1)
        else:
            response = b""
        # C2 is an echo of S1 (or its digest twin); nobody relies on checking it.
        if len(self._buffer) >= HANDSHAKE_SIZE:
            del self._buffer[:HANDSHAKE_SIZE]
            self._done = True
        return response

    def _random(self, n: int) -> bytes:
        data = self._random_bytes(n)
        if len(data) != n:
            raise ValueError(f"random_bytes({n}) returned {len(data)} bytes")
        return data

    def _answer(self, c1: bytes) -> bytes:
        client_digest = find_client_digest(c1)
        if client_digest is None:
            return struct.pack(">II", self._time_ms, 0) + self._random(HANDSHAKE_SIZE - 8) + c1
        self.digest = True
        s1 = bytearray(struct.pack(">I", self._time_ms) + SERVER_VERSION)
        s1 += self._random(HANDSHAKE_SIZE - 8)
        position = _digest_position(bytes(s1), 8)
        s1[position:position + DIGEST_SIZE] = _block_digest(
            bytes(s1), position, FMS_KEY[:FMS_KEY_TEXT_LEN]
        )
        # S2 is random bytes signed by a key derived from the client's digest.
        s2 = self._random(HANDSHAKE_SIZE - DIGEST_SIZE)
        s2_key = hmac.new(FMS_KEY, client_digest, hashlib.sha256).digest()
        s2 += hmac.new(s2_key, s2, hashlib.sha256).digest()
        return bytes(s1) + s2

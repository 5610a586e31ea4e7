"""Bad input ends one connection, never the server: random and mutated RTMP byte streams,
stalled clients, too many connections; afterwards a real publisher still goes live."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.settings import Settings
from media.testpattern import ffmpeg_push
from tests.integration.ingest_support import Ingest, ingest_settings, running_ingest
from tests.waiting import eventually_async

pytestmark = pytest.mark.integration

CAPTURE = Path(__file__).resolve().parents[1] / "data" / "rtmp" / "ffmpeg_publish.bin"
CASE_TIMEOUT_S = 8.0


async def _handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    c1 = struct.pack(">II", 0, 0) + os.urandom(1528)
    writer.write(b"\x03" + c1)
    await writer.drain()
    s0s1s2 = await reader.readexactly(1 + 1536 + 1536)
    writer.write(s0s1s2[1:1537])  # C2 echoes S1
    await writer.drain()


async def _one_case(port: int, payload: bytes, handshake: bool) -> None:
    """Send ``payload`` and wait until the server closes the connection (bounded)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if handshake:
            await _handshake(reader, writer)
        writer.write(payload)
        await writer.drain()
        while await asyncio.wait_for(reader.read(65536), CASE_TIMEOUT_S):
            pass
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


def _mutations(rng: random.Random, capture: bytes, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        data = bytearray(capture[: rng.randint(1, len(capture))])
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            pos = rng.randrange(len(data)) if data else 0
            if op < 0.5 and data:
                data[pos] = rng.randrange(256)
            elif op < 0.75:
                data[pos:pos] = os.urandom(rng.randint(1, 16))
            elif data:
                del data[pos:pos + rng.randint(1, 16)]
        out.append(bytes(data))
    return out


async def _go_live_works(ingest: Ingest, tmp_path: Path) -> None:
    channel_id, key = await ingest.channel()
    proc = ffmpeg_push(ingest.url, key, 3, size="320x240", log=tmp_path / "ffmpeg.log")
    await eventually_async(lambda: proc.poll() is not None, 60, "the publisher to exit", every_s=0.1)
    assert proc.returncode == 0, (tmp_path / "ffmpeg.log").read_text()
    found = await ingest.wait_events("stream.lifecycle", channel_id, lambda f: any(e.type == "StreamEnded" for e in f))
    assert found[0].type == "StreamStarted" and found[-1].type == "StreamEnded"


async def test_fuzzed_byte_streams_never_crash_or_hang(settings_factory: Callable[..., Settings],
                                                       tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="glasscast.ingest")
    # Twenty connections at a time from one address: over the per-client cap, which is not what is tested here.
    s = ingest_settings(settings_factory(), handshake_timeout_s=2.0, idle_timeout_s=2.0, max_connections=64,
                        max_pending_per_client=64)
    rng = random.Random(20261121)
    raw_cases = [os.urandom(rng.choice([1, 7, 100, 1537, 3073, 5000])) for _ in range(40)]
    # Plausible starts: the right version byte with garbage after it.
    raw_cases += [b"\x03" + os.urandom(rng.randint(0, 4000)) for _ in range(40)]
    capture = CAPTURE.read_bytes()
    mutated = _mutations(rng, capture, 120)
    async with running_ingest(s) as ingest:
        port = ingest.server.port
        for batch_start in range(0, len(raw_cases), 20):
            await asyncio.gather(*[_one_case(port, c, False) for c in raw_cases[batch_start:batch_start + 20]])
        for batch_start in range(0, len(mutated), 20):
            await asyncio.gather(*[_one_case(port, c, True) for c in mutated[batch_start:batch_start + 20]])
        # Every connection ended; the server is whole and still takes a real publisher.
        assert ingest.server.connections == 0
        await _go_live_works(ingest, tmp_path)
    # Each bad stream was one connection closed with a reason, never a crash of the session.
    closes = [r.getMessage() for r in caplog.records if "closed (" in r.getMessage()]
    assert len(closes) >= len(raw_cases) + len(mutated)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records
                                                                           if r.levelno >= logging.ERROR]
    reasons = {c.split("closed (", 1)[1].split(":")[0] for c in closes}
    assert "protocol error" in reasons


async def test_stalled_and_excess_connections(settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    s = ingest_settings(settings_factory(), handshake_timeout_s=1.0, idle_timeout_s=1.0, max_connections=5,
                        max_pending_per_client=8)
    async with running_ingest(s) as ingest:
        port = ingest.server.port
        loop = asyncio.get_running_loop()
        # A client that sends half a handshake and stalls is dropped after the handshake timeout.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x03" + b"\x00" * 100)
        await writer.drain()
        start = loop.time()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert loop.time() - start < 4
        writer.close()
        # Over the connection limit: the extra connections are closed at once.
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        await eventually_async(lambda: ingest.server.connections == 5, 5, "the server to count 5 connections")
        extra_reader, extra_writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(extra_reader.read(), 2) == b""
        extra_writer.close()
        for _, w in held:
            w.close()
        await eventually_async(lambda: ingest.server.connections == 0, 10, "every connection to end")
        assert ingest.server.connections == 0
        await _go_live_works(ingest, tmp_path)

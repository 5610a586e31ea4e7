"""RTMP ingest admission (issue 13, point 4), attacked over raw sockets against a real ingest.

Each attack held the old ingest: sockets that dribble bytes kept their slots for ever (any byte
reset the idle timer), one address could take every slot, a connection could make the ingest
buffer megabytes before showing a stream key, 64 idle sockets locked every publisher out, and a
publisher on a rotated key stayed live.  Flood sockets come from other loopback addresses
(127.0.0.0/8 is all ours on Linux) so that they count as other clients than the publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.settings import Settings
from media.ingest import amf0
from media.testpattern import ffmpeg_push
from schemas.records.stream import StreamEnded
from tests.conftest import Platform
from tests.integration.ingest_support import ingest_settings, running_ingest
from tests.waiting import Timeout, eventually_async
from topics.consumer import Event

pytestmark = pytest.mark.integration

HANDSHAKE_S = 5.0  # a live server answers a handshake at once; this only bounds a broken one
HOLD_BOUND_S = 15.0  # longest a test waits for the server to drop a holder (the deadline is 2 s)

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _connect(port: int, source: str = "127.0.0.1") -> Conn:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _handshake(conn: Conn) -> None:
    """C0+C1, read S0+S1+S2, send C2 (RTMP 1.0 section 5.2); IncompleteReadError if the server hung up."""
    reader, writer = conn
    writer.write(b"\x03" + struct.pack(">II", 0, 0) + os.urandom(1528))
    await writer.drain()
    s0s1s2 = await asyncio.wait_for(reader.readexactly(1 + 2 * 1536), HANDSHAKE_S)
    writer.write(s0s1s2[1:1537])
    await writer.drain()


async def _closed_by_server(conn: Conn, within_s: float) -> bool:
    """True if the server closes ``conn`` within ``within_s`` (whatever it sends first is read and dropped)."""
    reader, _ = conn
    loop = asyncio.get_running_loop()
    until = loop.time() + within_s
    try:
        while (left := until - loop.time()) > 0:
            if not await asyncio.wait_for(reader.read(65536), left):
                return True
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    return False


def _open(conn: Conn) -> bool:
    """Neither side has closed ``conn`` as far as this side has seen."""
    reader, writer = conn
    return not (writer.is_closing() or reader.at_eof())


def _chunk(csid: int, type_id: int, payload: bytes, declared: int | None = None) -> bytes:
    """One fmt-0 chunk (RTMP 1.0 section 5.3.1): header for ``declared`` bytes, then ``payload``."""
    length = len(payload) if declared is None else declared
    return (bytes((csid,)) + (0).to_bytes(3, "big") + length.to_bytes(3, "big")
            + struct.pack("<BI", type_id, 0) + payload)


def _command(name: str, transaction: float, command_object: Any = None) -> bytes:
    return _chunk(3, 20, amf0.encode(name, transaction, command_object))


@contextlib.asynccontextmanager
async def _sockets(conns: list[Conn]) -> AsyncIterator[list[Conn]]:
    try:
        yield conns
    finally:
        for _, writer in conns:
            writer.close()


async def _wait_exit(proc: Any, timeout_s: float) -> int:
    with contextlib.suppress(Timeout):
        await eventually_async(lambda: proc.poll() is not None, timeout_s, "the publisher to exit", every_s=0.1)
    if proc.poll() is None:
        proc.kill()
    return int(proc.wait())


def _end_reasons(events: list[Event]) -> list[str]:
    return [e.value.reason for e in events if isinstance(e.value, StreamEnded)]


def _ended(events: list[Event]) -> bool:
    return bool(_end_reasons(events))


async def test_holders_that_trickle_bytes_are_closed_at_the_publish_deadline(
        settings_factory: Callable[..., Settings], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="glasscast.ingest")
    s = ingest_settings(settings_factory(), publish_deadline_s=2.0, idle_timeout_s=60.0, handshake_timeout_s=60.0)
    async with running_ingest(s) as ingest:
        port = ingest.server.port
        halfway = await _connect(port)  # never finishes the handshake
        halfway[1].write(b"\x03")
        acker, dribbler = await _connect(port), await _connect(port)
        await _handshake(acker)
        await _handshake(dribbler)
        connect = _command("connect", 1.0, {"app": "live"})
        async with _sockets([halfway, acker, dribbler]) as holders:
            loop = asyncio.get_running_loop()
            until, step = loop.time() + HOLD_BOUND_S, 0
            # Each keeps sending well inside every idle timeout: an acknowledgement message, one more
            # byte of a connect command that never completes, one more byte of C1.
            trickles: list[Callable[[int], bytes]] = [
                lambda i: b"\x00", lambda i: _chunk(2, 3, struct.pack(">I", 4 * i)),
                lambda i: connect[i % len(connect):i % len(connect) + 1]]
            while loop.time() < until and any(_open(conn) for conn in holders):
                for conn, trickle in zip(holders, trickles):
                    if not _open(conn):
                        continue
                    try:
                        conn[1].write(trickle(step))
                        await conn[1].drain()
                        closed = await _closed_by_server(conn, 0.05)
                    except ConnectionError:
                        closed = True
                    if closed:
                        conn[1].close()
                step += 1
                await asyncio.sleep(0.2)
            still_open = [i for i, conn in enumerate(holders) if _open(conn)]
            assert still_open == [], f"holders {still_open} kept their slot past the publish deadline"
        await eventually_async(lambda: ingest.server.connections == 0, 10, "every slot to be free again")
    closes = [r.getMessage() for r in caplog.records if "closed (publish deadline" in r.getMessage()]
    assert len(closes) == 3, [r.getMessage() for r in caplog.records]


async def test_a_client_over_its_cap_is_refused(settings_factory: Callable[..., Settings]) -> None:
    s = ingest_settings(settings_factory(), max_pending_per_client=4, publish_deadline_s=60.0,
                        idle_timeout_s=60.0)
    async with running_ingest(s) as ingest:
        port = ingest.server.port
        async with _sockets([await _connect(port, "127.0.0.2") for _ in range(4)]) as held:
            for conn in held:
                await _handshake(conn)
            extra = await _connect(port, "127.0.0.2")
            async with _sockets([extra]):
                extra[1].write(b"\x03" + bytes(1536))
                assert await _closed_by_server(extra, 5), "a fifth pending connection from one address was kept"
            assert ingest.server.refused == 1
            # Another address is another client; and a slot freed is a slot again.
            other = await _connect(port, "127.0.0.3")
            async with _sockets([other]):
                await _handshake(other)
                held[0][1].close()
                await eventually_async(lambda: ingest.server.admission.pending_of("127.0.0.2") == 3, 10,
                                       "the closed connection to leave its slot")
                again = await _connect(port, "127.0.0.2")
                async with _sockets([again]):
                    await _handshake(again)
            assert [await _closed_by_server(conn, 0.05) for conn in held[1:]] == [False] * 3


async def test_buffering_before_publish_is_bounded(settings_factory: Callable[..., Settings],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="glasscast.ingest")
    s = ingest_settings(settings_factory(), publish_deadline_s=60.0, idle_timeout_s=60.0)
    async with running_ingest(s) as ingest:
        port = ingest.server.port
        # A 4 MiB audio message (under the 8 MiB a live stream may send) before any publish: the
        # chunk size first goes to 16 MiB so one chunk could carry all of it.
        big = await _connect(port)
        async with _sockets([big]):
            await _handshake(big)
            big[1].write(_chunk(2, 1, struct.pack(">I", 1 << 24)))
            big[1].write(_chunk(4, 8, os.urandom(32 * 1024), declared=4 << 20))
            await big[1].drain()
            assert await _closed_by_server(big, 5), "a 4 MiB message was buffered before publish"
        # Many small commands, each drawing an answer, while never reading those answers.
        chatty = await _connect(port)
        async with _sockets([chatty]):
            await _handshake(chatty)
            chatty[1].write(_command("connect", 1.0, {"app": "live"}) + b"".join(_command("createStream", float(i + 2))
                                                                for i in range(200)))
            with contextlib.suppress(ConnectionError):
                await chatty[1].drain()
            assert await _closed_by_server(chatty, 5), "200 commands were answered before publish"
        await eventually_async(lambda: ingest.server.connections == 0, 10, "every slot to be free again")
    reasons = [r.getMessage() for r in caplog.records if "closed (protocol error" in r.getMessage()]
    assert any("over the 16384-byte limit" in m for m in reasons), reasons
    assert any("messages before publish" in m for m in reasons), reasons


async def test_a_publisher_gets_in_during_a_flood_of_idle_sockets(settings_factory: Callable[..., Settings],
                                                                  tmp_path: Path) -> None:
    # The deadline is long here, so the flood holds every slot for the whole test: only making room works.
    s = ingest_settings(settings_factory(), max_connections=64, max_pending_per_client=4,
                        publish_deadline_s=120.0, idle_timeout_s=120.0, handshake_timeout_s=120.0)
    async with running_ingest(s) as ingest:
        port = ingest.server.port
        flood = [await _connect(port, f"127.0.1.{1 + i // 4}") for i in range(64)]
        async with _sockets(flood):
            await asyncio.gather(*(_handshake(conn) for conn in flood))
            assert ingest.server.connections == 64
            channel_id, key = await ingest.channel()
            log = tmp_path / "ffmpeg.log"
            proc = ffmpeg_push(ingest.url, key, 4, size="1280x720", log=log)
            assert await _wait_exit(proc, 60) == 0, log.read_text()
            lifecycle = await ingest.wait_events("stream.lifecycle", channel_id, _ended)
            assert lifecycle[0].type == "StreamStarted" and _end_reasons(lifecycle) == ["PUBLISHER_STOPPED"]
            # One idle socket made room; the rest still hold theirs.
            assert ingest.server.evicted == 1
            open_now = [c for c in flood if not await _closed_by_server(c, 0.01)]
            assert len(open_now) == 63


async def _signup(client: httpx.AsyncClient) -> str:
    username, password = f"rot_{uuid.uuid4().hex[:10]}", "correct horse battery"
    r = await client.post("/v1/users", json={"username": username, "password": password})
    assert r.status_code == 201, r.text
    r = await client.post("/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


async def _is_live(client: httpx.AsyncClient, channel_id: str) -> bool:
    return bool((await client.get(f"/v1/channels/{channel_id}")).json()["live_stream_id"])


async def test_rotating_the_key_ends_the_live_publisher(platform: Platform, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="glasscast")
    async with httpx.AsyncClient(base_url=platform.url) as client, \
            running_ingest(ingest_settings(platform.settings)) as ingest:
        token = await _signup(client)
        auth = {"Authorization": f"Bearer {token}"}
        r = await client.post("/v1/channels", headers=auth, json={"name": f"rot_{uuid.uuid4().hex[:10]}"})
        assert r.status_code == 201, r.text
        channel_id, old_key = r.json()["id"], r.json()["stream_key"]
        log = tmp_path / "ffmpeg.log"
        proc = ffmpeg_push(ingest.url, old_key, 60, size="320x240", log=log)
        try:
            await eventually_async(lambda: _is_live(client, channel_id), 30, "the channel to go live", every_s=0.2)
            r = await client.post(f"/v1/channels/{channel_id}/stream-key/regenerate", headers=auth)
            assert r.status_code == 200, r.text
            new_key = r.json()["stream_key"]
            # The publisher on the old key is dropped long before its 60 s are up.
            await eventually_async(lambda: proc.poll() is not None, 20, "the old-key publisher to be dropped",
                                   every_s=0.2)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        lifecycle = await ingest.wait_events("stream.lifecycle", channel_id, _ended)
        assert _end_reasons(lifecycle) == ["KEY_ROTATED"], [e.type for e in lifecycle]
        # The old key is refused from now on; the new one goes live.
        refused = ffmpeg_push(ingest.url, old_key, 3, size="320x240", log=tmp_path / "ffmpeg-old.log")
        assert await _wait_exit(refused, 30) != 0
        renewed = ffmpeg_push(ingest.url, new_key, 3, size="320x240", log=tmp_path / "ffmpeg-new.log")
        assert await _wait_exit(renewed, 60) == 0, (tmp_path / "ffmpeg-new.log").read_text()
        lifecycle = await ingest.wait_events("stream.lifecycle", channel_id, lambda f: len(_end_reasons(f)) == 2)
        assert _end_reasons(lifecycle) == ["KEY_ROTATED", "PUBLISHER_STOPPED"]
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "stream key rotated" in messages
    assert old_key not in messages and new_key not in messages


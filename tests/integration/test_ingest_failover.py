"""Streams outlive their ingest process, and an ingest outlives Valkey (issue 11, points 2 and 3).

The ingest runs as a child (``glasscast run ingest``), the real ffmpeg CLI publishes, and the
ingest is killed with SIGKILL mid-stream:
- a new ingest process takes the stream's lapsed lease over when the encoder comes back within
  the grace window: same stream_id, StreamReconnected, GOP seqs that go on without reuse;
- when nobody comes back, the reaper of an ingest process ends the stream (RECONNECT_TIMEOUT)
  within the grace window plus a few seconds, and nothing is left in Valkey: no ghost.
And with Valkey killed under a live stream, GOPs keep flowing, a new publisher is refused at
once (not hung), and the lease is renewed again when Valkey returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import RedisError

from infra.embedded.valkey import ValkeyProcess
from infra.settings import Settings
from media.ingest.live import LiveRegistry
from media.testpattern import ffmpeg_push
from tests.integration.ingest_support import IngestWorld, ingest_process, ingest_settings, ingest_world, running_ingest
from tests.waiting import Timeout, eventually_async
from topics.consumer import Event

pytestmark = pytest.mark.integration


def _types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


def _ended(events: list[Event]) -> bool:
    return "StreamEnded" in _types(events)


async def _wait_exit(proc: Any, timeout_s: float = 60) -> int:
    """The process's exit code; killed (and its code returned) if it is still running after ``timeout_s``."""
    with contextlib.suppress(Timeout):
        await eventually_async(lambda: proc.poll() is not None, timeout_s, "a child to exit", every_s=0.1)
    if proc.poll() is None:
        proc.kill()
    return int(proc.wait())


def _kill9(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


def _registry(world: IngestWorld, client: Any) -> LiveRegistry:
    s = world.settings
    return LiveRegistry(client, s.valkey.key_prefix, s.ingest.lease_s, s.ingest.reconnect_grace_s)


async def _started(world: IngestWorld, channel_id: str, gops: int) -> tuple[str, list[Any]]:
    """(stream id, its GOPs) once the stream started and announced at least ``gops`` GOPs."""
    found = await world.wait_events("stream.lifecycle", channel_id, lambda f: len(f) >= 1, timeout_s=60)
    assert found[0].type == "StreamStarted", _types(found)
    stream_id = str(found[0].value.stream_id)
    announced = await world.wait_events("media.gops", stream_id, lambda f: len(f) >= gops, timeout_s=60)
    return stream_id, [e.value for e in announced]


async def test_a_killed_ingest_hands_its_stream_to_the_next_one(settings_factory: Callable[..., Settings],
                                                                tmp_path: Path) -> None:
    # Grace long enough for a child ingest to start on a loaded machine; the lease short.
    s = ingest_settings(settings_factory(), reconnect_grace_s=30.0, lease_s=2.0)
    async with ingest_world(s) as world:
        channel_id, key = await world.channel()
        with ingest_process(s, tmp_path / "ingest1.log") as first:
            encoder = ffmpeg_push(world.url, key, 120, size="320x240", log=tmp_path / "ffmpeg1.log")
            try:
                stream_id, before = await _started(world, channel_id, 3)
                _kill9(first)  # mid-stream: nothing parks the stream, nothing ends it
            finally:
                assert await _wait_exit(encoder, 30) != 0  # the encoder lost its ingest
        announced_before = await asyncio.to_thread(world.events, "media.gops", stream_id)
        last_before = max(e.value.seq for e in announced_before)
        # The ingest comes back (as a supervisor restarts it) and so does the encoder.
        with ingest_process(s, tmp_path / "ingest2.log"):
            again = ffmpeg_push(world.url, key, 6, size="320x240", log=tmp_path / "ffmpeg2.log")
            assert await _wait_exit(again) == 0, (tmp_path / "ffmpeg2.log").read_text()
            lifecycle = await world.wait_events("stream.lifecycle", channel_id, _ended, timeout_s=60)
        types = _types(lifecycle)
        assert types.count("StreamStarted") == 1 and types.count("StreamReconnected") == 1, types
        assert types[-1] == "StreamEnded" and lifecycle[-1].value.reason == "PUBLISHER_STOPPED", types
        assert {str(e.value.stream_id) for e in lifecycle} == {stream_id}  # the same stream, continued
        reconnected = next(e.value for e in lifecycle if e.type == "StreamReconnected")
        assert reconnected.reconnect_count == 1 and reconnected.gap_ms > 0
        assert reconnected.next_gop_seq > last_before  # the next seq: nothing announced is announced again
        gops = [e.value for e in await world.wait_events(
            "media.gops", stream_id, lambda f: any(e.value.seq > reconnected.next_gop_seq for e in f))]
        seqs = [g.seq for g in gops]
        assert seqs == sorted(set(seqs)), seqs  # no seq twice, in order
        assert seqs[: len(before)] == [g.seq for g in before]
        assert reconnected.next_gop_seq - last_before <= 2, seqs  # at most the GOP in flight is skipped
        resumed = next(g for g in gops if g.seq == reconnected.next_gop_seq)
        assert resumed.discontinuity and sum(g.discontinuity for g in gops) == 1
        assert all(b.pts >= a.pts + a.duration for a, b in zip(gops, gops[1:]))  # the timeline goes on
        assert lifecycle[-1].value.last_gop_seq == gops[-1].seq
        # Nothing is left behind in Valkey.
        async with ingest_world(s) as check:
            assert await _registry(check, check.views.r).get(channel_id) is None


async def test_a_stream_nobody_resumes_after_an_ingest_crash_ends(settings_factory: Callable[..., Settings],
                                                                 tmp_path: Path) -> None:
    grace_s, lease_s = 3.0, 1.5
    s = ingest_settings(settings_factory(), reconnect_grace_s=grace_s, lease_s=lease_s)
    async with ingest_world(s) as world:
        channel_id, key = await world.channel()
        with ingest_process(s, tmp_path / "ingest1.log") as first:
            encoder = ffmpeg_push(world.url, key, 120, size="320x240", log=tmp_path / "ffmpeg1.log")
            try:
                stream_id, _ = await _started(world, channel_id, 2)
                _kill9(first)
                killed_at = time.monotonic()
            finally:
                await _wait_exit(encoder, 30)
        # Another ingest process runs (the encoder never comes back): its reaper ends the stream.
        async with running_ingest(ingest_settings(s)) as other:
            lifecycle = await other.wait_events("stream.lifecycle", channel_id, _ended,
                                                timeout_s=lease_s + grace_s + 15)
            ended_within_s = time.monotonic() - killed_at
            registry = _registry(other, other.views.r)
            assert await registry.get(channel_id) is None  # no ghost left in Valkey
        types = _types(lifecycle)
        assert types[0] == "StreamStarted" and types[-1] == "StreamEnded" and types.count("StreamEnded") == 1, types
        ended = lifecycle[-1].value
        assert str(ended.stream_id) == stream_id and ended.reason == "RECONNECT_TIMEOUT"
        gops = [e.value for e in await asyncio.to_thread(world.events, "media.gops", stream_id)]
        assert ended.last_gop_seq is not None and ended.last_gop_seq >= max(g.seq for g in gops)
        # A bound that detects a hang, not a timing assertion: the lease plus the grace window plus
        # the reaper's round and this test's polling.
        assert ended_within_s < lease_s + grace_s + 15, ended_within_s


async def test_live_video_outlives_valkey(settings_factory: Callable[..., Settings], tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="glasscast.ingest")
    valkey = ValkeyProcess(tmp_path / "valkey", persist=True)
    valkey.start()
    try:
        base = settings_factory()
        s = ingest_settings(base.with_section("valkey", url=valkey.url), reconnect_grace_s=10.0, lease_s=2.0)
        async with running_ingest(s) as ingest:
            channel_id, key = await ingest.channel()
            other_channel, other_key = await ingest.channel()
            encoder = ffmpeg_push(ingest.url, key, 36, size="320x240", log=tmp_path / "ffmpeg.log")
            stream_id, before = await _started(ingest, channel_id, 2)
            assert valkey.process.pid is not None
            os.kill(valkey.process.pid, signal.SIGKILL)  # Valkey dies under a live stream
            valkey.stop()  # reaps it
            await eventually_async(lambda: ingest.server.ctx.valkey_failures > 0, 30, "a failed Valkey call")

            # GOPs keep coming: the ingest cuts and announces from what it already knows.
            down = await ingest.wait_events("media.gops", stream_id, lambda f: len(f) >= len(before) + 4,
                                            timeout_s=40)
            # A new publisher, which needs the channel view, is refused at once, not hung.
            refused = ffmpeg_push(ingest.url, other_key, 10, size="320x240", log=tmp_path / "ffmpeg-refused.log")
            assert await _wait_exit(refused, 20) != 0
            assert any("Valkey unavailable" in r.getMessage() for r in caplog.records)

            # Valkey comes back (same port, its append-only file): the lease is renewed again.
            valkey = ValkeyProcess(tmp_path / "valkey", port=valkey.port, persist=True)
            valkey.start()
            registry = ingest.server.ctx.live

            async def renewed() -> bool:
                held = await registry.get(channel_id)
                return held is not None and held.lease_until_ms > ingest.server.ctx.now_ms() \
                    and held.next_seq > max(e.value.seq for e in down)

            await eventually_async(renewed, 30, "the lease renewed after Valkey returned",
                                   ignore=(RedisError, OSError))
            assert await _wait_exit(encoder) == 0, (tmp_path / "ffmpeg.log").read_text()
            lifecycle = await ingest.wait_events("stream.lifecycle", channel_id, _ended, timeout_s=30)
        types = _types(lifecycle)
        assert types.count("StreamStarted") == 1 and types[-1] == "StreamEnded", types
        assert lifecycle[-1].value.reason == "PUBLISHER_STOPPED"
        gops = [e.value for e in await asyncio.to_thread(ingest.events, "media.gops", stream_id)]
        assert [g.seq for g in gops] == list(range(len(gops)))  # nothing lost, nothing skipped
        assert await asyncio.to_thread(ingest.events, "stream.lifecycle", other_channel) == []
    finally:
        valkey.stop()

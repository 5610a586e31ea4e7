"""The RTMP ingest with the real ffmpeg CLI as publisher: lifecycle events, GOPs that decode on
their own, stream-key refusal, reconnects inside the grace window, simultaneous publishers."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest

from infra.settings import Settings
from media.testpattern import ffmpeg_push
from tests.integration.ingest_support import Ingest, ingest_settings, running_ingest
from tests.waiting import Timeout, eventually_async
from topics.consumer import Event

pytestmark = pytest.mark.integration


def _types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


async def _wait_exit(proc: Any, timeout_s: float = 60) -> int:
    """The publisher's exit code; killed (and its code returned) if it is still running after ``timeout_s``."""
    with contextlib.suppress(Timeout):
        await eventually_async(lambda: proc.poll() is not None, timeout_s, "the publisher to exit", every_s=0.1)
    if proc.poll() is None:
        proc.kill()
    return int(proc.wait())


def _decode_gop(ingest: Ingest, ref: str) -> tuple[int, bool, int]:
    """(video frames, first frame is a keyframe, audio frames) of one GOP blob, decoded alone."""
    with av.open(io.BytesIO(ingest.blobs.get(ref)), format="flv") as container:
        video = audio = 0
        first_key = None
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                first_key = frame.key_frame if first_key is None else first_key
                video += 1
            else:
                audio += 1
    return video, bool(first_key), audio


def _ended(events: list[Event]) -> bool:
    return "StreamEnded" in _types(events)


async def test_twenty_second_push(settings_factory: Callable[..., Settings], tmp_path: Path,
                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="glasscast")
    s = ingest_settings(settings_factory(), health_interval_s=2.0)
    async with running_ingest(s) as ingest:
        channel_id, key = await ingest.channel()
        proc = ffmpeg_push(ingest.url, key, 20, size="1280x720", log=tmp_path / "ffmpeg.log")
        assert await _wait_exit(proc) == 0, (tmp_path / "ffmpeg.log").read_text()
        lifecycle = await ingest.wait_events("stream.lifecycle", channel_id, _ended)

        types = _types(lifecycle)
        assert types[0] == "StreamStarted" and types[-1] == "StreamEnded", types
        started, ended = lifecycle[0].value, lifecycle[-1].value
        stream_id = str(started.stream_id)
        assert (started.width, started.height, started.video_codec) == (1280, 720, "avc1.64001f")
        assert started.audio_codec == "mp4a.40.2" and started.audio_sample_rate_hz == 48000
        assert ended.reason == "PUBLISHER_STOPPED"
        health = [e.value for e in lifecycle if e.type == "StreamHealth"]
        assert len(health) >= 5
        steady = health[1:-1] or health
        assert all((h.width, h.height) == (1280, 720) for h in steady)
        assert all(abs(h.fps - 30) <= 3 for h in steady), [h.fps for h in steady]
        assert all(h.keyframe_interval_ms in (None, 2000) for h in steady)
        assert all(h.video_bitrate_kbps > 0 and h.audio_bitrate_kbps > 0 for h in steady)

        gops = [e.value for e in await ingest.wait_events(
            "media.gops", stream_id, lambda found: len(found) >= 10)]
        assert [g.seq for g in gops] == list(range(len(gops)))
        assert 10 <= len(gops) <= 11
        for before, after in zip(gops, gops[1:]):
            assert after.pts == before.pts + before.duration  # continuous timeline
        assert all(g.duration == 2000 for g in gops[:-1])
        assert ended.last_gop_seq == gops[-1].seq
        for gop in gops:
            video, keyframe_first, audio = _decode_gop(ingest, gop.blob_ref)
            assert keyframe_first and audio > 0
            assert video == gop.duration * 30 // 1000, gop
            assert gop.byte_size == len(ingest.blobs.get(gop.blob_ref))
        # The stream key appears in no log line and no event.
        assert any("publishing channel" in r.getMessage() for r in caplog.records)
        assert not any(key in r.getMessage() for r in caplog.records)
        assert key not in repr([e.value for e in lifecycle]) + repr(gops)


async def test_wrong_key_is_refused(settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    s = ingest_settings(settings_factory())
    async with running_ingest(s) as ingest:
        channel_id, _ = await ingest.channel()
        proc = ffmpeg_push(ingest.url, "live_not_a_real_key", 5, log=tmp_path / "ffmpeg.log")
        assert await _wait_exit(proc, 30) != 0
        assert await asyncio.to_thread(ingest.events, "stream.lifecycle", channel_id) == []


async def test_reconnect_within_grace_keeps_the_stream(settings_factory: Callable[..., Settings],
                                                       tmp_path: Path) -> None:
    s = ingest_settings(settings_factory(), reconnect_grace_s=10.0)
    async with running_ingest(s) as ingest:
        channel_id, key = await ingest.channel()
        first = ffmpeg_push(ingest.url, key, 30, size="320x240", log=tmp_path / "ffmpeg1.log")
        found = await ingest.wait_events("stream.lifecycle", channel_id, lambda f: len(f) >= 1)
        stream_id = str(found[0].value.stream_id)
        await ingest.wait_events("media.gops", stream_id, lambda f: len(f) >= 2)
        first.send_signal(signal.SIGKILL)  # the encoder vanishes: no FCUnpublish
        await _wait_exit(first)
        await asyncio.sleep(1.0)  # stay away a while: the reconnect's gap_ms is checked below
        second = ffmpeg_push(ingest.url, key, 5, size="320x240", log=tmp_path / "ffmpeg2.log")
        assert await _wait_exit(second) == 0, (tmp_path / "ffmpeg2.log").read_text()
        lifecycle = await ingest.wait_events("stream.lifecycle", channel_id, _ended)
        types = _types(lifecycle)
        assert types.count("StreamStarted") == 1 and types.count("StreamReconnected") == 1, types
        assert types[-1] == "StreamEnded"
        assert {str(e.value.stream_id) for e in lifecycle} == {stream_id}
        reconnected = next(e.value for e in lifecycle if e.type == "StreamReconnected")
        assert reconnected.reconnect_count == 1 and reconnected.gap_ms >= 1000
        gops = [e.value for e in await ingest.wait_events("media.gops", stream_id, lambda f: True)]
        assert [g.seq for g in gops] == list(range(len(gops)))
        assert reconnected.next_gop_seq in {g.seq for g in gops}
        resumed = next(g for g in gops if g.seq == reconnected.next_gop_seq)
        assert resumed.discontinuity and sum(g.discontinuity for g in gops) == 1
        assert all(b.pts >= a.pts + a.duration for a, b in zip(gops, gops[1:]))


async def test_drop_without_return_ends_after_the_grace_window(settings_factory: Callable[..., Settings],
                                                               tmp_path: Path) -> None:
    s = ingest_settings(settings_factory(), reconnect_grace_s=2.0)
    async with running_ingest(s) as ingest:
        channel_id, key = await ingest.channel()
        proc = ffmpeg_push(ingest.url, key, 30, size="320x240", log=tmp_path / "ffmpeg.log")
        await ingest.wait_events("stream.lifecycle", channel_id, lambda f: len(f) >= 1)
        proc.send_signal(signal.SIGKILL)
        await _wait_exit(proc)
        lifecycle = await ingest.wait_events("stream.lifecycle", channel_id, _ended)
        assert lifecycle[-1].value.reason == "RECONNECT_TIMEOUT"


async def test_four_simultaneous_publishers(settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    s = ingest_settings(settings_factory())
    async with running_ingest(s) as ingest:
        channels = [await ingest.channel() for _ in range(4)]
        procs = [ffmpeg_push(ingest.url, key, 8, size="320x240", log=tmp_path / f"ffmpeg{i}.log")
                 for i, (_, key) in enumerate(channels)]
        assert [await _wait_exit(p) for p in procs] == [0, 0, 0, 0]
        streams = set()
        for channel_id, _ in channels:
            lifecycle = await ingest.wait_events("stream.lifecycle", channel_id, _ended)
            assert _types(lifecycle)[0] == "StreamStarted" and _types(lifecycle)[-1] == "StreamEnded"
            stream_id = str(lifecycle[0].value.stream_id)
            streams.add(stream_id)
            gops = [e.value for e in await ingest.wait_events("media.gops", stream_id, lambda f: len(f) >= 4)]
            assert [g.seq for g in gops] == list(range(len(gops))) and len(gops) >= 4
            video, keyframe_first, _ = _decode_gop(ingest, gops[1].blob_ref)
            assert keyframe_first and video == 60
        assert len(streams) == 4


async def test_second_publisher_is_refused_while_live(settings_factory: Callable[..., Settings],
                                                      tmp_path: Path) -> None:
    s = ingest_settings(settings_factory())
    async with running_ingest(s) as ingest:
        channel_id, key = await ingest.channel()
        first = ffmpeg_push(ingest.url, key, 8, size="320x240", log=tmp_path / "ffmpeg1.log")
        await ingest.wait_events("stream.lifecycle", channel_id, lambda f: len(f) >= 1)
        second = ffmpeg_push(ingest.url, key, 3, size="320x240", log=tmp_path / "ffmpeg2.log")
        assert await _wait_exit(second, 30) != 0
        assert await _wait_exit(first) == 0
        lifecycle = await ingest.wait_events("stream.lifecycle", channel_id, _ended)
        assert _types(lifecycle).count("StreamStarted") == 1


async def test_go_live_test_pattern(settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    import subprocess
    import sys

    s = ingest_settings(settings_factory())
    async with running_ingest(s) as ingest:
        channel_id, key = await ingest.channel()
        with open(tmp_path / "go-live.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "infra.cli", "--data-dir", str(tmp_path / "none"),
                                     "go-live", "--key", key, "--url", ingest.url, "--seconds", "5",
                                     "--size", "320x240"], stdout=log, stderr=subprocess.STDOUT)
        assert await _wait_exit(proc) == 0, (tmp_path / "go-live.log").read_text()
        lifecycle = await ingest.wait_events("stream.lifecycle", channel_id, _ended)
        started = lifecycle[0].value
        assert lifecycle[0].type == "StreamStarted" and (started.width, started.height) == (320, 240)
        assert started.encoder and "Lavf" in started.encoder
        gops = [e.value for e in await ingest.wait_events(
            "media.gops", str(started.stream_id), lambda f: len(f) >= 3)]
        assert [g.seq for g in gops] == [0, 1, 2] and gops[0].duration == 2000
        video, keyframe_first, audio = _decode_gop(ingest, gops[0].blob_ref)
        assert (video, keyframe_first) == (60, True) and audio > 0


async def test_stream_parked_by_a_stopped_ingest_is_ended_by_another(settings_factory: Callable[..., Settings],
                                                                     tmp_path: Path) -> None:
    s = ingest_settings(settings_factory(), reconnect_grace_s=2.0, health_interval_s=0.5)
    async with running_ingest(s) as ingest:
        channel_id, key = await ingest.channel()
        proc = ffmpeg_push(ingest.url, key, 30, size="320x240", log=tmp_path / "ffmpeg.log")
        await ingest.wait_events("stream.lifecycle", channel_id, lambda f: len(f) >= 1)
    # The ingest stopped under a live publisher: the stream is parked, not ended.
    proc.kill()
    await _wait_exit(proc)
    async with running_ingest(ingest_settings(s)) as other:
        lifecycle = await other.wait_events("stream.lifecycle", channel_id, _ended)
        assert _types(lifecycle)[-1] == "StreamEnded" and lifecycle[-1].value.reason == "RECONNECT_TIMEOUT"
        assert _types(lifecycle).count("StreamEnded") == 1

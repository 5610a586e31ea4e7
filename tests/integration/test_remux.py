"""Clip MP4s end to end (media/vod/remux.py): segments the platform's own packager made, remuxed and decoded.

The source comes from the ffmpeg CLI (testsrc2 + a sine, H.264 with two
B-frames and AAC, 2 s GOPs), cut into GOP FLVs as the ingest cuts them and
packaged by ``transcode_gop`` into the "source" and "audio" renditions: the
``init.mp4`` and ``.m4s`` files the origin stores.  A clip decoded with PyAV
must start on the frame shown at the requested time, last ``duration_ms`` to
within one frame, and be the same pictures (a stream copy decodes
bit-identically).
"""

from __future__ import annotations

import io
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import pytest

from media.ingest.gop import gop_to_flv
from media.transcode import AUDIO, SOURCE, transcode_gop
from media.vod.remux import Track, remux_clip
from tests.integration.test_transcode_job import make_source, split

FPS = 30
FRAME_S = 1 / FPS


@pytest.fixture(scope="module")
def tracks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Track, Track]:
    gops = split(make_source(tmp_path_factory.mktemp("src") / "360p30.flv", "640x360", FPS, 13, 60))
    renditions: dict[str, list[tuple[bytes, bytes]]] = {"source": [], "audio": []}
    for seq, gop in enumerate(gops):
        for out in transcode_gop(gop_to_flv(gop), [SOURCE, AUDIO], seq, gop.start_ms, gop.duration_ms):
            renditions[out.rendition].append((out.init, out.segment))
    assert len(renditions["source"]) == 6  # 12 s of complete 2 s GOPs
    video, audio = ([seg for _, seg in renditions[name]] for name in ("source", "audio"))
    return (Track(renditions["source"][0][0], video), Track(renditions["audio"][0][0], audio))


def _frames(data: bytes) -> list[av.VideoFrame]:
    with av.open(io.BytesIO(data), mode="r", format="mp4") as container:
        return list(container.decode(video=0))


def _source_frames(track: Track) -> list[av.VideoFrame]:
    return sorted(_frames(track.init + b"".join(track.segments)), key=lambda f: f.pts or 0)


def _audio_span_s(data: bytes) -> tuple[float, float]:
    with av.open(io.BytesIO(data), mode="r", format="mp4") as container:
        frames = list(container.decode(audio=0))
    first, last = frames[0], frames[-1]
    assert first.time is not None and last.time is not None
    return first.time, last.time + last.samples / last.sample_rate


def _top_level_boxes(data: bytes) -> list[bytes]:
    kinds, at = [], 0
    while at + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, at)
        kinds.append(kind)
        at += size
    return kinds


@pytest.mark.parametrize(("skip_ms", "duration_ms"), [(0, 5000), (3700, 5000), (1234, 3210), (0, 11900)])
def test_the_clip_starts_on_the_requested_frame_and_lasts_its_duration(
        tracks: tuple[Track, Track], skip_ms: int, duration_ms: int) -> None:
    video, audio = tracks
    mp4 = remux_clip(video, audio, skip_ms, duration_ms)
    boxes = _top_level_boxes(mp4)
    assert boxes.index(b"moov") < boxes.index(b"mdat")  # faststart
    clip = _frames(mp4)
    assert clip[0].time == 0.0
    last = clip[-1].time
    assert last is not None
    # Every frame shown in [0, duration): none of the lead-in, none past the end.
    assert duration_ms / 1000 - FRAME_S <= last < duration_ms / 1000
    assert abs(len(clip) - duration_ms / 1000 * FPS) <= 1
    # The first picture is the source's frame on screen at the requested time, bit for bit (a copy).
    source = _source_frames(video)
    origin = source[0].time
    assert origin is not None
    wanted = [f for f in source if f.time is not None and f.time <= origin + skip_ms / 1000 + 1e-9][-1]
    assert wanted.time is not None and origin + skip_ms / 1000 - wanted.time < FRAME_S
    assert bytes(clip[0].planes[0]) == bytes(wanted.planes[0])
    assert bytes(clip[-1].planes[0]) == bytes(source[source.index(wanted) + len(clip) - 1].planes[0])
    # Audio is cut at AAC frame boundaries (1024 samples at 48 kHz: 21.3 ms).
    start_s, end_s = _audio_span_s(mp4)
    assert 0 <= start_s < 0.022 and abs(end_s - duration_ms / 1000) < 0.022


def test_the_video_tracks_own_audio_is_used_without_an_audio_track(tracks: tuple[Track, Track]) -> None:
    video, _ = tracks
    mp4 = remux_clip(video, None, 500, 2000)
    start_s, end_s = _audio_span_s(mp4)
    assert start_s < 0.022 and abs(end_s - 2.0) < 0.022
    with av.open(io.BytesIO(mp4), mode="r", format="mp4") as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        assert container.streams.video[0].codec_context.name == "h264"


def test_the_copy_is_not_re_encoded(tracks: tuple[Track, Track]) -> None:
    video, audio = tracks
    mp4 = remux_clip(video, audio, 0, 12000)
    with av.open(io.BytesIO(mp4), mode="r", format="mp4") as container:
        clip_bytes = sum(int(p.size) for p in container.demux(container.streams.video[0]) if p.size)
    with av.open(io.BytesIO(video.init + b"".join(video.segments)), mode="r", format="mp4") as container:
        source_bytes = sum(int(p.size) for p in container.demux(container.streams.video[0]) if p.size)
    assert clip_bytes == source_bytes


@pytest.mark.parametrize(("skip_ms", "duration_ms", "message"), [
    (9000, 5000, "past their end at 12000 ms"),
    (12000, 1, "past their end"),
    (-1, 5000, "skip_ms >= 0"),
    (0, 0, "duration_ms > 0"),
])
def test_a_window_beyond_the_segments_is_refused(tracks: tuple[Track, Track], skip_ms: int, duration_ms: int,
                                                 message: str) -> None:
    video, audio = tracks
    with pytest.raises(ValueError, match=message):
        remux_clip(video, audio, skip_ms, duration_ms)


def test_segments_that_are_not_mp4_are_a_value_error(tracks: tuple[Track, Track]) -> None:
    video, _ = tracks
    with pytest.raises(ValueError):
        remux_clip(Track(b"not an init segment", [b"nor a segment"]), None, 0, 1000)
    with pytest.raises(ValueError, match="no segments"):
        remux_clip(Track(video.init, []), None, 0, 1000)


def test_the_edit_list_hides_the_lead_in(tracks: tuple[Track, Track]) -> None:
    """Mid-GOP, the copy starts at the keyframe before: more packets than frames shown."""
    video, _ = tracks
    mp4 = remux_clip(video, None, 1500, 2000)
    with av.open(io.BytesIO(mp4), mode="r", format="mp4") as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
        assert stream.time_base == Fraction(1, 90000)
    assert packets[0].is_keyframe
    assert len(packets) > len(_frames(mp4)) >= 59
    assert _frames(mp4)[0].time == 0.0


def test_a_stream_without_audio_makes_a_video_only_clip(tmp_path: Path) -> None:
    source = tmp_path / "silent.flv"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size=320x180:rate={FPS}", "-t", "5", "-c:v", "libx264", "-preset", "veryfast",
                    "-pix_fmt", "yuv420p", "-x264-params", "keyint=60:min-keyint=60:scenecut=0:bframes=2",
                    "-f", "flv", str(source)], check=True)
    gops = split(source.read_bytes())
    outputs = [transcode_gop(gop_to_flv(g), [SOURCE], seq, g.start_ms, g.duration_ms)[0]
               for seq, g in enumerate(gops)]
    mp4 = remux_clip(Track(outputs[0].init, [o.segment for o in outputs]), None, 1000, 2500)
    with av.open(io.BytesIO(mp4), mode="r", format="mp4") as container:
        assert [s.type for s in container.streams] == ["video"]
    clip = _frames(mp4)
    assert clip[0].time == 0.0 and len(clip) == 75

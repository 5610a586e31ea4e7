"""The transcode job end to end: real GOP FLVs in, fMP4 segments out, checked by ffprobe and PyAV.

Sources come from the ffmpeg CLI (testsrc2 + a sine, H.264 with B-frames + AAC
into FLV), cut into GOPs by ``GopSplitter`` and written back with ``gop_to_flv``,
exactly the blobs the ingest stores.  What matters (docs/ARCHITECTURE.md, "Tests"): each
segment starts on an IDR, renditions align on the source timeline, consecutive
segments continue, init segments are stored once, passthrough is a remux.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
import struct
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import av
import pytest
import redis.asyncio as aioredis

from infra.settings import Settings
from media.blob import FileBlobStore
from media.ingest import flv
from media.ingest.gop import Gop, GopSplitter, MediaTag, gop_to_flv
from media.package.playlist import SegmentEntry, render_media
from media.transcode import RenditionOutput, X264Settings, plan_ladder, transcode_gop
from media.transcode.encoders import h264_level, open_x264
from media.transcode.worker import TranscodeWorker, segment_key
from schemas.records.media import GopAvailable, SegmentReady
from topics.admin import ensure_topics
from topics.runtime import make_serde
from topics.tools import read_topic

GOP_MS = 2000

#: These tests drive the worker's whole-GOP path (GopAvailable in): remuxes and scaled rungs from each GOP,
#: as a worker runs when no ingest packages parts (GLASSCAST_TRANSCODE_REMUX, _LIVE_PARTS).
WHOLE_GOPS = {"remux": True, "live_parts": False}



def make_source(path: Path, size: str, fps: int, seconds: int, gop_frames: int) -> bytes:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "veryfast", "-b:v", "2M", "-pix_fmt", "yuv420p",
         "-x264-params", f"keyint={gop_frames}:min-keyint={gop_frames}:scenecut=0:bframes=2",
         "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-f", "flv", str(path)], check=True)
    return path.read_bytes()


def split(data: bytes) -> list[Gop]:
    splitter, gops = GopSplitter(), []
    for tag_type, ts, body in flv.iter_file_tags(data):
        if tag_type in (flv.TAG_AUDIO, flv.TAG_VIDEO):
            gops += splitter.push(MediaTag.from_payload("video" if tag_type == flv.TAG_VIDEO else "audio", ts, body))
    return gops  # complete GOPs only: the tail has no next keyframe to time it


@pytest.fixture(scope="module")
def gops_720p30(tmp_path_factory: pytest.TempPathFactory) -> list[Gop]:
    return split(make_source(tmp_path_factory.mktemp("src") / "720p30.flv", "1280x720", 30, 7, 60))[:2]


@pytest.fixture(scope="module")
def full_720p30(gops_720p30: list[Gop]) -> list[list[RenditionOutput]]:
    ladder = plan_ladder("full", 1000, 1280, 720, 30.0)
    return [transcode_gop(gop_to_flv(g), ladder, seq, g.start_ms, g.duration_ms)
            for seq, g in enumerate(gops_720p30, start=7)]


def boxes(data: bytes) -> Iterator[tuple[str, bytes, int]]:
    """(type, payload, start offset) of each box in ``data``."""
    pos = 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        yield kind.decode(), data[pos + 8:pos + size], pos
        pos += size


def moof(segment: bytes) -> tuple[bytes, int]:
    return next((payload, start) for kind, payload, start in boxes(segment) if kind == "moof")


def sequence_number(segment: bytes) -> int:
    mfhd = next(payload for kind, payload, _ in boxes(moof(segment)[0]) if kind == "mfhd")
    return int(struct.unpack_from(">I", mfhd, 4)[0])


def fragments(segment: bytes) -> list[tuple[int, int, int, bytes]]:
    """(track id, tfdt, sample count, first sample's bytes) per traf of a one-moof segment."""
    payload, moof_start = moof(segment)
    out = []
    for kind, traf, _ in boxes(payload):
        if kind == "traf":
            parts = {k: p for k, p, _ in boxes(traf)}
            track_id = struct.unpack_from(">I", parts["tfhd"], 4)[0]
            tfdt = struct.unpack_from(">Q", parts["tfdt"], 4)[0]
            flags, count, offset = struct.unpack_from(">IIi", parts["trun"])
            first_size = struct.unpack_from(">I", parts["trun"], 12 + 4 * bool(flags & 0x100))[0]
            # default-base-is-moof: the data offset counts from the moof's first byte.
            out.append((track_id, tfdt, count, segment[moof_start + offset:moof_start + offset + first_size]))
    return out


def ffprobe(path: Path, *args: str) -> dict[str, Any]:
    out = subprocess.run(["ffprobe", "-v", "error", *args, "-of", "json", str(path)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def probe(path: Path) -> dict[str, Any]:
    """Streams (frames counted by decoding), format, and the first video frame."""
    info = ffprobe(path, "-count_frames", "-show_streams", "-show_format")
    info["frames"] = ffprobe(path, "-select_streams", "v", "-show_frames", "-read_intervals", "%+#1")["frames"]
    return info


def nal_types(sample: bytes) -> list[int]:
    types, pos = [], 0
    while pos < len(sample):
        (size,) = struct.unpack_from(">I", sample, pos)
        types.append(sample[pos + 4] & 0x1F)
        pos += 4 + size
    return types


def test_full_ladder_segments(full_720p30: list[list[RenditionOutput]], gops_720p30: list[Gop],
                              tmp_path: Path) -> None:
    first = full_720p30[0]
    assert [o.rendition for o in first] == ["source", "480p30", "360p30", "audio"]
    gop = gops_720p30[0]
    expected = {"source": (1280, 720, "avc1.64001f"), "480p30": (854, 480, "avc1.64001f"),
                "360p30": (640, 360, "avc1.64001e")}
    for out in first:
        path = tmp_path / f"{out.rendition}.mp4"
        path.write_bytes(out.init + out.segment)
        info = probe(path)
        streams = {s["codec_type"]: s for s in info["streams"]}
        assert streams["audio"]["codec_name"] == "aac" and streams["audio"]["sample_rate"] == "48000"
        assert abs(float(info["format"]["duration"]) * 1000 - gop.duration_ms) <= 0.05 * gop.duration_ms
        assert out.bandwidth_bps == len(out.segment) * 8 * 1000 // out.duration_ms
        if out.audio_only:
            assert list(streams) == ["audio"] and out.codecs == "mp4a.40.2"
            # Audio ends with the GOP to within one AAC frame (1024 samples = 21.3 ms).
            assert abs(out.start_pts_ms + out.duration_ms - (gop.start_ms + gop.duration_ms)) <= 22
            continue
        video = streams["video"]
        width, height, codec = expected[out.rendition]
        assert (video["codec_name"], video["width"], video["height"]) == ("h264", width, height)
        assert (out.width, out.height, out.fps, out.duration_ms) == (width, height, 30.0, gop.duration_ms)
        assert video["r_frame_rate"] == "30/1" and int(video["nb_read_frames"]) == gop.video_frames
        assert out.codecs == f"{codec},mp4a.40.2" and video["profile"] == "High"
        first_frame = info["frames"][0]
        assert first_frame["key_frame"] == 1 and first_frame["pict_type"] == "I"
        # The first sample really is an IDR picture (nal_unit_type 5), not just a keyframe flag.
        assert 5 in nal_types(fragments(out.segment)[0][3])


def test_renditions_align_on_the_source_timeline(full_720p30: list[list[RenditionOutput]],
                                                 gops_720p30: list[Gop]) -> None:
    for seq, (outputs, gop) in enumerate(zip(full_720p30, gops_720p30), start=7):
        audio_ms = min(t.timestamp_ms for t in gop.tags if t.kind == "audio")
        for out in outputs:
            frags = fragments(out.segment)
            assert sequence_number(out.segment) == seq + 1
            if out.audio_only:
                [(track_id, tfdt, count, _)] = frags
                assert (track_id, tfdt, count) == (1, audio_ms * 48, gop.audio_frames)
                assert out.start_pts_ms == audio_ms
                continue
            (vid, vtfdt, vcount, _), (aid, atfdt, acount, _) = frags
            # tfdt is the GOP's pts on the source timeline, in each track's timescale.
            assert (vid, vtfdt, vcount) == (1, gop.start_ms * 90, gop.video_frames)
            assert (aid, atfdt, acount) == (2, audio_ms * 48, gop.audio_frames)
            assert out.start_pts_ms == gop.start_ms


def test_init_segments_are_identical_across_gops(full_720p30: list[list[RenditionOutput]]) -> None:
    for a, b in zip(*full_720p30, strict=True):
        assert a.rendition == b.rendition and a.init == b.init and a.segment != b.segment


def decode_video_pts(data: bytes) -> tuple[list[int], list[bool], int]:
    pts, keys, audio = [], [], 0
    with av.open(io.BytesIO(data), "r", format="mp4") as container:
        for packet in container.demux():
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    assert frame.pts is not None and frame.time_base == Fraction(1, 90_000)
                    pts.append(frame.pts)
                    keys.append(frame.key_frame)
                else:
                    audio += 1
    return pts, keys, audio


def test_consecutive_segments_decode_continuously(full_720p30: list[list[RenditionOutput]],
                                                  gops_720p30: list[Gop]) -> None:
    g0, g1 = gops_720p30
    for seg0, seg1 in zip(*full_720p30):
        if seg0.audio_only:
            continue
        pts, keys, audio = decode_video_pts(seg0.init + seg0.segment + seg1.segment)
        assert len(pts) == g0.video_frames + g1.video_frames and audio == g0.audio_frames + g1.audio_frames
        assert keys[0] and keys[g0.video_frames] and sum(keys) == 2
        # Presentation runs on: the second GOP starts one GOP after the first, frames ~33 ms apart.
        assert pts == sorted(pts) and pts[g0.video_frames] - pts[0] == g0.duration_ms * 90
        assert max(b - a for a, b in zip(pts, pts[1:])) <= 34 * 90


def test_passthrough_is_a_remux(full_720p30: list[list[RenditionOutput]], gops_720p30: list[Gop]) -> None:
    source = full_720p30[0][0]
    with av.open(io.BytesIO(source.init + source.segment), "r", format="mp4") as container:
        packets = [bytes(p) for p in container.demux(video=0) if p.size]
    tags = [flv.parse_video(t.payload).data for t in gops_720p30[0].tags if t.kind == "video"]
    assert packets == tags
    # The source's B-frames keep their composition offsets: presentation is not decode order.
    pts, _, _ = decode_video_pts(source.init + source.segment)
    assert pts[0] > gops_720p30[0].start_ms * 90


def test_serial_and_parallel_jobs_agree(gops_720p30: list[Gop], full_720p30: list[list[RenditionOutput]]) -> None:
    # One x264 thread per encoder is deterministic, so threading the rungs changes nothing.
    gop = gops_720p30[0]
    ladder = plan_ladder("full", 1000, 1280, 720, 30.0)
    assert transcode_gop(gop_to_flv(gop), ladder, 7, gop.start_ms, gop.duration_ms, parallel=False) == full_720p30[0]


def test_job_runs_in_a_process_pool(gops_720p30: list[Gop]) -> None:
    gop = gops_720p30[1]
    ladder = plan_ladder("passthrough", 0, 1280, 720, 30.0)
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        outputs = pool.submit(transcode_gop, gop_to_flv(gop), ladder, 8, gop.start_ms, gop.duration_ms).result()
    assert outputs == transcode_gop(gop_to_flv(gop), ladder, 8, gop.start_ms, gop.duration_ms)
    assert pickle.loads(pickle.dumps(outputs)) == outputs


def test_60fps_source_is_decimated_for_30fps_rungs(tmp_path: Path) -> None:
    gops = split(make_source(tmp_path / "480p60.flv", "854x480", 60, 3, 60))[:2]
    ladder = plan_ladder("full", 1000, 854, 480, 60.0)
    assert [r.name for r in ladder] == ["source", "360p30", "audio"]
    outs = [transcode_gop(gop_to_flv(g), ladder, i, g.start_ms, g.duration_ms) for i, g in enumerate(gops)]
    rung = [o[1] for o in outs]
    assert rung[0].init == rung[1].init and rung[0].fps == 30.0
    pts, keys, _ = decode_video_pts(rung[0].init + rung[0].segment + rung[1].segment)
    assert len(pts) == 60 and keys[0] and keys[30]
    assert {b - a for a, b in zip(pts, pts[1:])} <= {33 * 90, 34 * 90}
    source_pts, _, _ = decode_video_pts(outs[0][0].init + outs[0][0].segment)
    assert len(source_pts) == 60 and pts[0] == source_pts[0]


@pytest.mark.parametrize(("width", "height", "level"), [(1280, 720, "3.1"), (854, 480, "3.1"), (640, 360, "3.0")])
def test_x264_headers_depend_only_on_the_rendition(width: int, height: int, level: str) -> None:
    # x264 picks the level from the frame rate: a per-GOP estimate of 30.3 fps
    # would make 720p level 3.2.  Pinned, the SPS/PPS (and the init segment) stay put.
    assert {h264_level(width, height, fps) for fps in (24.0, 25.0, 29.97, 30.0, 30.3, 31.0)} == {level}
    headers = {bytes(open_x264(width, height, fps, 1500, X264Settings()).extradata or b"")
               for fps in (25.0, 29.97, 30.0, 30.3)}
    assert len(headers) == 1 and b"" not in headers
    assert h264_level(1280, 720, 60.0) == "3.2" and h264_level(1920, 1080, 30.0) == "4.0"


def test_video_only_stream(gops_720p30: list[Gop]) -> None:
    gop = gops_720p30[0]
    silent = dataclasses.replace(gop, audio_config=None, tags=tuple(t for t in gop.tags if t.kind == "video"))
    outputs = transcode_gop(gop_to_flv(silent), plan_ladder("full", 1000, 1280, 720, 30.0), 0, gop.start_ms,
                            gop.duration_ms)
    # No audio: the muxed renditions carry video alone and there is no audio-only rendition.
    assert [(o.rendition, o.codecs.count("mp4a")) for o in outputs] == [("source", 0), ("480p30", 0), ("360p30", 0)]
    assert all(len(fragments(o.segment)) == 1 for o in outputs)


@pytest.mark.parametrize("blob", [b"", b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00", b"not an flv at all"])
def test_bad_gop_blobs_raise_value_error(blob: bytes) -> None:
    with pytest.raises(ValueError):
        transcode_gop(blob, plan_ladder("full", 1000, 1280, 720, 30.0), 0, 0, 2000)


def _gop_available(stream_id: str, gop: Gop, ref: str, size: int, occurred_at: int, den: int) -> GopAvailable:
    """The GopAvailable of ``gop`` with its times in a 1/``den`` s time base (the ingest writes 1/1000)."""
    return GopAvailable(
        occurred_at=occurred_at, stream_id=stream_id, channel_id="0c4a1e1e-3f0b-4f43-9f57-3f1f8d3c2b10", seq=7,
        pts=gop.start_ms * den // 1000, duration=gop.duration_ms * den // 1000, time_base_num=1, time_base_den=den,
        byte_size=size, blob_ref=ref, video_codec="avc1.64001f", width=1280, height=720, fps=30.0,
        audio_codec="mp4a.40.2", audio_sample_rate_hz=48000, audio_channels=2)


def _media_playlist(segments: list[SegmentReady]) -> str:
    """The VOD playlist the edge renders from these SegmentReady facts."""
    return render_media([SegmentEntry(e.seq, e.duration_ms, e.uri, e.program_date_time, e.discontinuity,
                                      e.byte_size, e.init_uri) for e in segments], init_uri="init.mp4", ended=True)


async def test_the_worker_reads_gop_times_in_the_event_time_base(
        settings_factory: Callable[..., Settings], gops_720p30: list[Gop]) -> None:
    # The same GOP announced in the ingest's 1/1000 s and in a 1/90000 s time base must give
    # the same segments and the same SegmentReady timing: GopAvailable times are not milliseconds.
    s = settings_factory(ladder={"mode": "full"},
                         transcode={"group_id": f"timebase-{uuid.uuid4().hex[:8]}", "workers": 1, **WHOLE_GOPS})
    ensure_topics(s.kafka)
    serde = make_serde(s)
    client = aioredis.Redis.from_url(s.valkey.url)
    blobs, origin = FileBlobStore(s.data_dir / "blobs"), FileBlobStore(s.data_dir / "origin")
    worker = TranscodeWorker(s, serde, blobs, origin, client)
    gop = gops_720p30[1]  # the second GOP: its pts is not 0
    data = gop_to_flv(gop)
    occurred_at = int(time.time() * 1000)
    streams: dict[int, str] = {}
    try:
        for den in (1000, 90_000):
            stream_id = str(uuid.uuid4())
            ref = blobs.put(f"gops/{stream_id}/00000007.flv", data)
            await worker.handle(_gop_available(stream_id, gop, ref, len(data), occurred_at, den))
            streams[den] = stream_id
        announced = [e.value for e in read_topic(s.kafka, serde, "media.segments", start="beginning",
                                                 exit_at_end=True) if e.key in streams.values()]
    finally:
        worker.close()
        await client.aclose()
        serde.close()
    by_base = {den: {e.rendition: e for e in announced if isinstance(e, SegmentReady) and e.stream_id == stream_id}
               for den, stream_id in streams.items()}
    ms, ticks = by_base[1000], by_base[90_000]
    assert sorted(ms) == sorted(ticks) == ["360p30", "480p30", "audio", "source"]
    # The timing is the GOP's own, in both time bases.
    video = ms["source"]
    assert (video.duration_ms, video.pts_90k) == (gop.duration_ms, gop.start_ms * 90)
    assert video.program_date_time == occurred_at - gop.duration_ms
    for rendition, a in ms.items():
        b = ticks[rendition]
        assert (b.duration_ms, b.program_date_time, b.pts_90k) == (a.duration_ms, a.program_date_time, a.pts_90k)
        assert (b.seq, b.uri, b.discontinuity, b.byte_size, b.bandwidth_bps, b.codecs, b.fps, b.init_uri) == \
            (a.seq, a.uri, a.discontinuity, a.byte_size, a.bandwidth_bps, a.codecs, a.fps, a.init_uri)
        # The segments themselves (tfdt, sample durations) are byte for byte the same.
        assert origin.path(segment_key(streams[90_000], rendition, 7)).read_bytes() == \
            origin.path(segment_key(streams[1000], rendition, 7)).read_bytes()
        assert _media_playlist([b]) == _media_playlist([a])

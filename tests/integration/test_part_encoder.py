"""Scaled rungs part by part (media/transcode/part_encoder.py) on parts the ingest's packager cut from a real
ffmpeg CLI encode: every rung part covers its source part's frames, starts the GOP on an IDR, and a rung's
parts concatenated decode as one continuous segment."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import av
import pytest

from media.ingest import flv
from media.ingest.gop import GopSplitter, MediaTag
from media.package.fmp4 import AudioTrack, VideoTrack, init_segment
from media.package.parts import AudioFrame, CutPart, PartCutter, VideoFrame, part_bytes, rung_segment
from media.transcode.ladder import Rendition
from media.transcode.part_encoder import GopParts, source_config

pytestmark = pytest.mark.integration

RUNGS = [Rendition("360p30", 640, 360, 30.0, 800), Rendition("240p30", 426, 240, 30.0, 400)]


def source_parts(tmp_path: Path) -> tuple[bytes, list[CutPart], VideoTrack, AudioTrack]:
    """A 4 s 720p30 ffmpeg encode (2 s GOPs), cut into parts as the ingest cuts them."""
    out = tmp_path / "src.flv"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=30",
                    "-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", "4", "-c:v", "libx264", "-preset",
                    "veryfast", "-tune", "zerolatency", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
                    "-c:a", "aac", "-f", "flv", str(out)], check=True)
    splitter, cutter = GopSplitter(), PartCutter(223, 48_000)
    video = audio = None
    parts: list[CutPart] = []
    for tag_type, ts, body in flv.iter_file_tags(out.read_bytes()):
        if tag_type not in (flv.TAG_AUDIO, flv.TAG_VIDEO):
            continue
        tag = MediaTag.from_payload("video" if tag_type == flv.TAG_VIDEO else "audio", ts, body)
        gops = splitter.push(tag)
        for gop in gops:
            parts += cutter.end_segment(gop.start_ms + gop.duration_ms)
        if tag.config:
            if tag.kind == "video":
                video = VideoTrack.from_avcc(flv.parse_video(body).data)
            else:
                audio = AudioTrack.from_asc(flv.parse_audio(body).data)
        elif tag.kind == "video" and splitter.open_start_ms is not None:
            v = flv.parse_video(body)
            frame = VideoFrame(ts, ts + v.composition_time_ms, tag.keyframe, v.data)
            if tag.keyframe:
                cutter.start_segment(frame)
            else:
                parts += cutter.add_video(frame)
        elif tag.kind == "audio":
            cutter.add_audio(AudioFrame(ts, flv.parse_audio(body).data))
    parts += cutter.end_segment(splitter.flush().start_ms + 2000)  # type: ignore[union-attr]
    assert video is not None and audio is not None
    return init_segment([video, audio]), parts, video, audio


def test_rung_parts_mirror_the_source_parts_and_concatenate_to_a_segment(tmp_path: Path) -> None:
    init, parts, video, audio = source_parts(tmp_path)
    first_gop = [p for p in parts if p.segment_start_ms == parts[0].segment_start_ms]
    stored = [part_bytes(p, i + 1, video, audio) for i, p in enumerate(first_gop)]
    gop = GopParts(source_config(init, stored[0]), init, RUNGS, 30.0)
    out = [gop.part(data, p.index, p.last) for data, p in zip(stored, first_gop)]
    assert len(out) == len(first_gop) == 10
    for r, rung in enumerate(RUNGS):
        rung_parts = [o[r] for o in out]
        assert all(rp.rendition == rung and rp.data for rp in rung_parts)
        whole = rung_parts[0].init + b"".join(rp.data for rp in rung_parts)
        with av.open(io.BytesIO(whole), format="mp4") as container:
            stream = container.streams.video[0]
            frames = list(container.decode(stream))
            assert (stream.codec_context.width, stream.codec_context.height) == (rung.width, rung.height)
        assert len(frames) == 60 and frames[0].key_frame and not any(f.key_frame for f in frames[1:])
        times = [f.time for f in frames]
        assert all(0.03 < b - a < 0.04 for a, b in zip(times, times[1:]))
        # Each rung part holds the frames of its source part: the first part's frames start the segment.
        for kind, expected in (("video", 6), ("audio", None)):
            with av.open(io.BytesIO(rung_parts[0].init + rung_parts[0].data), format="mp4") as container:
                decoded = list(container.decode(**{kind: 0}))
            assert len(decoded) == expected if expected else decoded
        assert rung_parts[0].codecs.startswith("avc1.") and rung_parts[0].codecs.endswith(",mp4a.40.2")


def test_a_gop_split_for_the_rungs_gives_two_independent_segments_of_a_second(tmp_path: Path) -> None:
    init, parts, video, audio = source_parts(tmp_path)
    first_gop = [p for p in parts if p.segment_start_ms == parts[0].segment_start_ms]
    split = first_gop[-1].rung_split
    assert split == 5, [p.rung_split for p in first_gop]  # 2 s GOP, 200 ms parts: the middle is after part 4
    stored = [part_bytes(p, i + 1, video, audio) for i, p in enumerate(first_gop)]
    gop = GopParts(source_config(init, stored[0]), init, RUNGS[:1], 30.0)
    halves: dict[int, list[bytes]] = {}
    for data, p in zip(stored, first_gop):
        rung_seq, rung_index = rung_segment(0, p.index, split)
        [out] = gop.part(data, p.index, p.last, rung_index)
        assert (out.data[4:8] == b"styp") == (rung_index == 0)
        halves.setdefault(rung_seq, []).append(out.data)
        rung_init = out.init
    assert sorted(halves) == [0, 1] and [len(h) for h in halves.values()] == [5, 5]
    starts = []
    for rung_seq, data in halves.items():
        # Each half alone (the init segment, then its parts) decodes from an IDR: a segment of its own.
        with av.open(io.BytesIO(rung_init + b"".join(data)), format="mp4") as container:
            frames = list(container.decode(video=0))
        assert len(frames) == 30 and frames[0].key_frame and not any(f.key_frame for f in frames[1:]), rung_seq
        starts.append(frames[0].time)
    assert abs(starts[1] - starts[0] - 1.0) < 0.02, starts  # the second half starts a second in

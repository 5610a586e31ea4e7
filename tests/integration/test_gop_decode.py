"""Every GOP the splitter cuts from a real H.264 + AAC FLV decodes on its own.

Media is synthesised in code (as PyAV's own tests do): a few seconds of a moving
pattern at 320x240, 30 fps, a keyframe every 60 frames, plus a 48 kHz stereo
tone, muxed to FLV in memory by FFmpeg's muxer.  The FLV tag bodies are pushed
through ``GopSplitter`` as the RTMP ingest would push them, and each GOP is
written with ``gop_to_flv`` and decoded alone.
"""

from __future__ import annotations

import io
import math
from array import array
from dataclasses import dataclass
from fractions import Fraction

import av
import pytest

from media.ingest import flv
from media.ingest.gop import Gop, GopSplitter, MediaTag, gop_to_flv

WIDTH, HEIGHT, FPS, KEYINT = 320, 240, 30, 60
SAMPLE_RATE, AAC_FRAME = 48_000, 1024
SECONDS = 7  # three full GOPs and a short last one
FRAMES = FPS * SECONDS - 10


def video_frame(i: int) -> av.VideoFrame:
    # Diagonal stripes that move each frame, so every frame really is coded.
    frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
    ramp = bytes(range(256)) * 8
    for plane, shift in zip(frame.planes, (3, 1, 2)):
        rows = b"".join(ramp[(y + i * shift) % 256:][:plane.line_size] for y in range(plane.height))
        plane.update(rows)
    frame.pts = i
    frame.time_base = Fraction(1, FPS)
    return frame


def audio_frames() -> list[av.AudioFrame]:
    tone = array("f", (0.2 * math.sin(2 * math.pi * 440 * n / SAMPLE_RATE) for n in range(AAC_FRAME)))
    frames = []
    for i in range(SECONDS * SAMPLE_RATE // AAC_FRAME - 10):
        frame = av.AudioFrame(format="fltp", layout="stereo", samples=AAC_FRAME)
        for plane in frame.planes:
            plane.update(tone.tobytes())
        frame.sample_rate = SAMPLE_RATE
        frame.pts = i * AAC_FRAME
        frame.time_base = Fraction(1, SAMPLE_RATE)
        frames.append(frame)
    return frames


def encode_flv(b_frames: int) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="flv") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        vs.codec_context.gop_size = KEYINT
        vs.codec_context.max_b_frames = b_frames
        vs.codec_context.thread_count = 1
        # Fixed GOPs: no scene-cut keyframes, every keyframe an IDR (closed GOP).
        vs.codec_context.options = {"x264-params": f"keyint={KEYINT}:min-keyint={KEYINT}:scenecut=0",
                                    "bf": str(b_frames), "preset": "ultrafast" if not b_frames else "veryfast"}
        aus = out.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
        aus.codec_context.thread_count = 1
        audio, sent = audio_frames(), 0
        for i in range(FRAMES):
            out.mux(vs.encode(video_frame(i)))
            # Keep the encoders roughly in step so the muxer interleaves as a live encoder would.
            while sent < len(audio) and sent * AAC_FRAME * FPS < (i + 1) * SAMPLE_RATE:
                out.mux(aus.encode(audio[sent]))
                sent += 1
        for a in audio[sent:]:
            out.mux(aus.encode(a))
        out.mux(vs.encode(None))  # flush: the encoders hold frames back
        out.mux(aus.encode(None))
    return buf.getvalue()


def split(data: bytes) -> tuple[GopSplitter, list[Gop]]:
    splitter = GopSplitter()
    gops: list[Gop] = []
    for tag_type, ts, body in flv.iter_file_tags(data):
        if tag_type == 18:
            splitter.set_metadata(body)
        elif tag_type in (8, 9):
            gops += splitter.push(MediaTag.from_payload("video" if tag_type == 9 else "audio", ts, body))
    last = splitter.flush()
    assert last is not None
    return splitter, [*gops, last]


@dataclass
class Decoded:
    video_pts: list[int]
    first_is_key: bool
    audio_frames: int


def decode(data: bytes) -> Decoded:
    video_pts: list[int] = []
    first_is_key = False
    audio = 0
    with av.open(io.BytesIO(data), "r", format="flv") as container:
        assert sorted(s.type for s in container.streams) == ["audio", "video"]
        for packet in container.demux():
            for frame in packet.decode():  # a None-data packet at EOF flushes the decoder
                if isinstance(frame, av.VideoFrame):
                    if not video_pts:
                        first_is_key = frame.key_frame
                    assert frame.pts is not None and frame.time_base == Fraction(1, 1000)
                    video_pts.append(frame.pts)
                else:
                    audio += 1
    return Decoded(video_pts, first_is_key, audio)


@pytest.mark.parametrize("b_frames", [0, 2], ids=["no-b-frames", "b-frames"])
def test_every_gop_decodes_on_its_own(b_frames: int) -> None:
    source = encode_flv(b_frames)
    splitter, gops = split(source)
    # AAC priming makes the muxer shift the video a frame late, so audio before
    # the first keyframe is dropped; nothing else is.
    raw_audio = [ts for t, ts, body in flv.iter_file_tags(source) if t == 8 and body[1] == 1]
    early = sum(ts < gops[0].start_ms for ts in raw_audio)
    assert splitter.dropped_frames == early <= 2 and splitter.oversize_cuts == 0
    assert [g.video_frames for g in gops] == [KEYINT] * (FRAMES // KEYINT) + [FRAMES % KEYINT]
    assert sum(g.audio_frames for g in gops) == len(raw_audio) - early
    if b_frames:  # composition time offsets really are in play
        ctos = {flv.parse_video(t.payload).composition_time_ms for g in gops for t in g.tags if t.kind == "video"}
        assert len(ctos) > 1

    decoded = [decode(gop_to_flv(g)) for g in gops]
    for gop, d in zip(gops, decoded):
        assert len(d.video_pts) == gop.video_frames
        assert d.first_is_key
        assert d.audio_frames == gop.audio_frames > 0
        # Decode times run from the keyframe, so presentation starts at it too (closed GOP).
        assert min(d.video_pts) == d.video_pts[0]
    for (gop, d), nxt in zip(zip(gops, decoded), decoded[1:]):
        assert gop.duration_ms == KEYINT * 1000 // FPS
        # The source timeline runs on: GOP n+1 starts where GOP n ends, no overlap, no gap.
        assert nxt.video_pts[0] == d.video_pts[0] + gop.duration_ms
        assert max(d.video_pts) < nxt.video_pts[0] <= max(d.video_pts) + 34
    # The last GOP is timed by its frames plus a median one (ms times step 33, 33, 34).
    assert abs(gops[-1].duration_ms - (FRAMES % KEYINT) * 1000 / FPS) <= 1

"""A synthetic broadcast: moving colour bars and a 1 kHz tone, H.264 + AAC over RTMP.

``glasscast go-live`` uses it so a newcomer can watch the pipeline without OBS;
tests and benchmarks use it as a second, PyAV-based publisher besides the
ffmpeg CLI (``ffmpeg_push`` runs that CLI with the same live settings).  Frames
are built from bytes (no numpy): the bars are one
precomputed luma row, shifted a little every frame so motion is visible.
"""

from __future__ import annotations

import array
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

SAMPLE_RATE = 48_000
TONE_HZ = 1000
AUDIO_FRAME_SAMPLES = 1024  # AAC frame size


@dataclass(frozen=True)
class Pattern:
    width: int = 1280
    height: int = 720
    fps: int = 30
    gop_s: float = 2.0
    video_kbps: int = 3000
    audio_kbps: int = 128


def _luma_rows(width: int) -> bytes:
    """Two widths of vertical bars, so a shifted window of one width is always full."""
    levels = (235, 210, 170, 145, 106, 81, 41, 16)
    bar = max(1, width // len(levels))
    row = b"".join(bytes([levels[(x // bar) % len(levels)]]) * 1 for x in range(width))
    return row + row


def _tone() -> bytes:
    """One second of a sine at TONE_HZ as float32 (period divides the sample rate)."""
    samples = array.array("f", (0.2 * math.sin(2 * math.pi * TONE_HZ * i / SAMPLE_RATE) for i in range(SAMPLE_RATE)))
    return samples.tobytes()


def push(url: str, seconds: float, pattern: Pattern = Pattern(), realtime: bool = True,
         should_stop: Callable[[], bool] = lambda: False) -> int:
    """Publish ``seconds`` of test pattern to ``url`` (rtmp://host:port/app/key); returns frames sent."""
    out = av.open(url, mode="w", format="flv")
    try:
        video = out.add_stream("libx264", rate=pattern.fps)
        video.width, video.height, video.pix_fmt = pattern.width, pattern.height, "yuv420p"
        video.bit_rate = pattern.video_kbps * 1000
        gop = max(1, int(pattern.fps * pattern.gop_s))
        # Live settings: a fixed GOP, no scene-cut keyframes, no B-frames, low latency.
        video.codec_context.gop_size = gop
        video.options = {"preset": "veryfast", "tune": "zerolatency", "x264-params":
                         f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0"}
        audio = out.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "stereo"
        audio.bit_rate = pattern.audio_kbps * 1000
        return _run(out, video, audio, pattern, seconds, realtime, should_stop)
    finally:
        out.close()


def _run(out: av.container.OutputContainer, video: av.VideoStream, audio: av.AudioStream, pattern: Pattern,
         seconds: float, realtime: bool, should_stop: Callable[[], bool]) -> int:
    rows = _luma_rows(pattern.width)
    chroma = bytes([128]) * ((pattern.width // 2) * (pattern.height // 2))
    tone = _tone()
    total = int(seconds * pattern.fps)
    audio_pts = 0
    start = time.monotonic()
    for n in range(total):
        if should_stop():
            break
        if realtime:
            delay = start + n / pattern.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        shift = (n * 4) % pattern.width
        frame = av.VideoFrame(pattern.width, pattern.height, "yuv420p")
        frame.planes[0].update(rows[shift:shift + pattern.width] * pattern.height)
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
        frame.pts, frame.time_base = n, Fraction(1, pattern.fps)
        for packet in video.encode(frame):
            out.mux(packet)
        # Keep audio level with video: AAC frames up to this video frame's time.
        while audio_pts < (n + 1) * SAMPLE_RATE // pattern.fps:
            offset = (audio_pts % SAMPLE_RATE) * 4
            chunk = tone[offset:offset + AUDIO_FRAME_SAMPLES * 4]
            if len(chunk) < AUDIO_FRAME_SAMPLES * 4:
                chunk += tone[:AUDIO_FRAME_SAMPLES * 4 - len(chunk)]
            aframe = av.AudioFrame(format="fltp", layout="stereo", samples=AUDIO_FRAME_SAMPLES)
            aframe.planes[0].update(chunk)
            aframe.planes[1].update(chunk)
            aframe.sample_rate, aframe.pts, aframe.time_base = SAMPLE_RATE, audio_pts, Fraction(1, SAMPLE_RATE)
            for packet in audio.encode(aframe):
                out.mux(packet)
            audio_pts += AUDIO_FRAME_SAMPLES
    # Flush the encoders: the last GOP's frames are still inside x264.
    for packet in video.encode(None):
        out.mux(packet)
    for packet in audio.encode(None):
        out.mux(packet)
    return total


def ffmpeg_push(url: str, key: str, seconds: float, size: str = "640x360", fps: int = 30, gop_s: float = 2.0,
                log: Path | None = None) -> subprocess.Popen[bytes]:
    """The real ffmpeg CLI publishing testsrc + sine (libx264 + AAC, fixed GOP) in real time."""
    gop = int(fps * gop_s)
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", f"testsrc=size={size}:rate={fps}",
            "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
            "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
            "-pix_fmt", "yuv420p", "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
            "-threads", "1", "-c:a", "aac", "-b:a", "128k", "-f", "flv", f"{url}/{key}"]
    if log is None:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    with open(log, "ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)

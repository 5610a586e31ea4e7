"""One x264 encoder per scaled rendition per GOP: settings as data, scale, encode, flush.

Live settings, and why:

* A fresh encoder per GOP, its first frame forced to an IDR (``pict_type`` I,
  ``forced-idr``) and no scene-cut keyframes: every segment starts with an IDR
  and holds exactly one GOP (CMAF, ISO/IEC 23000-19 clause 7: fragments start
  with a sync sample; RFC 8216 4.3.5.1 independent segments), whichever worker
  encodes it.  ``keyint`` is a constant above any GOP, not the GOP's frame
  count: the forced IDR already cuts the GOP, and a constant keeps the x264
  options (and its in-band settings SEI) the same for every GOP.
* The H.264 level is pinned per frame size (Table A-1, at 30 or 60 fps): x264
  would otherwise pick it from the frame rate it is given, and a per-GOP rate
  estimate of 30.3 fps turns 720p's level 3.1 into 3.2, changing the SPS and so
  the avcC in the init segment.  Pinned, the SPS/PPS depend only on the
  rendition and these settings (checked across frame rates and keyint values),
  so the init segment is stored once per (stream, rendition).
* CBR-like rate control: ``bitrate`` = ``maxrate``, ``bufsize`` = 2x, so the
  advertised ``BANDWIDTH`` (RFC 8216 4.3.4.2) holds.
* No B-frames: with this build at veryfast, bframes=2 or 3 cost 20-45 % *more*
  encode CPU (b-adapt) for 3 % fewer bits.  ``threads=1``: parallelism comes
  from running rungs side by side (``media.transcode.job``), which costs no
  extra CPU; x264's own threads cost 6-16 % more CPU for the ladder and were
  slower per GOP as well (``bench/transcode.py``, "threading_in_process").
* Timestamps stay on the source clock: the encoder's time base is the FLV's
  1/1000 and frames keep the source pts, so output pts equal input pts.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
from av.video.reformatter import VideoReformatter

from media.package.codecs import annexb_to_avcc, avcc_from_annexb
from media.transcode.ladder import Rendition
from media.transcode.timeline import FrameRateFilter

__all__ = ["EncodedFrame", "RungEncoder", "X264Settings", "h264_level", "open_x264"]

SOURCE_TIME_BASE = Fraction(1, 1000)  # FLV/RTMP timestamps are milliseconds
#: H.264 Table A-1: (level, MaxMBPS macroblocks/s, MaxFS macroblocks), lowest first.
H264_LEVELS = ((1.0, 1485, 99), (1.1, 3000, 396), (1.2, 6000, 396), (1.3, 11880, 396), (2.0, 11880, 396),
               (2.1, 19800, 792), (2.2, 20250, 1620), (3.0, 40500, 1620), (3.1, 108000, 3600),
               (3.2, 216000, 5120), (4.0, 245760, 8192), (4.2, 522240, 8704), (5.0, 589824, 22080),
               (5.1, 983040, 36864), (5.2, 2073600, 36864))
#: Frame rates a level is sized for; a measured 30.3 fps still means 30.
RATE_CEILINGS = (30, 60, 120, 240)
RATE_SLACK = 1.05


@dataclass(frozen=True)
class X264Settings:
    """How scaled rungs are encoded; frozen and picklable, so a process pool can take it."""

    preset: str = "veryfast"
    threads: int = 1  # x264 threads per encoder; 0 lets x264 pick
    bframes: int = 0
    keyint: int = 1200  # above any GOP the ingest lets through (10 s at 60 fps)
    bufsize_factor: float = 2.0
    interpolation: str = "BICUBIC"  # swscale's and the ffmpeg CLI's default
    tune: str | None = None


@dataclass(frozen=True)
class EncodedFrame:
    """An encoded access unit, times in ms relative to the GOP's keyframe."""

    dts_ms: int
    pts_ms: int
    keyframe: bool
    data: bytes  # 4-byte length-prefixed NAL units


def h264_level(width: int, height: int, fps: float) -> str:
    """The lowest H.264 level for this size at the standard rate at or above ``fps``."""
    macroblocks = ((width + 15) // 16) * ((height + 15) // 16)
    rate = next((r for r in RATE_CEILINGS if fps <= r * RATE_SLACK), RATE_CEILINGS[-1])
    for level, max_mbps, max_fs in H264_LEVELS:
        if macroblocks <= max_fs and macroblocks * rate <= max_mbps:
            return f"{level:.1f}"
    return f"{H264_LEVELS[-1][0]:.1f}"


def open_x264(width: int, height: int, fps: float, video_kbps: int,
              settings: X264Settings) -> av.VideoCodecContext:
    """An opened libx264 encoder whose extradata holds the SPS/PPS (global header)."""
    codec = av.CodecContext.create("libx264", "w")
    assert isinstance(codec, av.VideoCodecContext)
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = SOURCE_TIME_BASE
    codec.framerate = Fraction(fps).limit_denominator(1001)
    codec.bit_rate = video_kbps * 1000
    codec.gop_size = settings.keyint
    codec.thread_count = settings.threads
    # Global header: SPS/PPS go to extradata (for the avcC), not in front of each IDR.
    codec.flags |= av.codec.context.Flags.global_header
    bits = video_kbps * 1000
    options = {"preset": settings.preset, "level": h264_level(width, height, fps), "forced-idr": "1",
               "maxrate": str(bits), "bufsize": str(int(bits * settings.bufsize_factor)),
               "x264-params": f"keyint={settings.keyint}:scenecut=0:bframes={settings.bframes}"}
    if settings.tune:
        options["tune"] = settings.tune
    codec.options = options
    codec.open()
    return codec


class RungEncoder:
    """Scale and encode one rendition of one GOP: ``push`` decoded frames, then ``finish``."""

    def __init__(self, rendition: Rendition, settings: X264Settings, source_fps: float | None) -> None:
        if rendition.width is None or rendition.height is None or rendition.video_kbps is None:
            raise ValueError(f"rendition {rendition.name!r} needs width, height and video_kbps to be encoded")
        self.rendition = rendition
        self.width, self.height = rendition.width, rendition.height
        fps = rendition.fps or source_fps or 30.0
        self.codec = open_x264(self.width, self.height, fps, rendition.video_kbps, settings)
        self.interpolation = settings.interpolation
        self.reformatter = VideoReformatter()  # keeps its SwsContext: one per rung, not per frame
        self.rate = FrameRateFilter(rendition.fps, source_fps)
        self.frames: list[EncodedFrame] = []

    def push(self, frame: av.VideoFrame) -> None:
        """Scale and encode one decoded source frame (pts in ms, presentation order).

        The frame is shared with the other rungs' threads, so it is only read:
        the caller has set its ``pts``, ``time_base`` and ``pict_type`` (I on the
        GOP's first frame, so the segment opens on an IDR whatever the settings).
        """
        assert frame.pts is not None
        if not self.rate.keep(frame.pts):
            return
        scaled = self.reformatter.reformat(frame, self.width, self.height, "yuv420p",
                                           interpolation=self.interpolation, threads=1)
        if scaled is not frame:
            scaled.pts, scaled.time_base, scaled.pict_type = frame.pts, SOURCE_TIME_BASE, frame.pict_type
        self._collect(self.codec.encode(scaled))

    def finish(self) -> tuple[bytes, list[EncodedFrame]]:
        """Flush the encoder (x264 holds frames in its lookahead) -> (avcC, frames in decode order)."""
        self._collect(self.codec.encode(None))
        extradata = self.codec.extradata
        if not extradata:
            raise ValueError(f"x264 gave no SPS/PPS for rendition {self.rendition.name!r}")
        return avcc_from_annexb(bytes(extradata)), self.frames

    def _collect(self, packets: list[av.Packet[Any]]) -> None:
        for packet in packets:
            if packet.pts is None or packet.dts is None:
                raise ValueError(f"x264 packet without timestamps in rendition {self.rendition.name!r}")
            self.frames.append(EncodedFrame(packet.dts, packet.pts, packet.is_keyframe,
                                            annexb_to_avcc(bytes(packet))))

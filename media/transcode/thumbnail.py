"""A live stream's thumbnail: the first keyframe of its newest GOP as a small JPEG.

The directory and channel pages show what each stream looks like now, so the
media worker refreshes ``thumbs/{stream_id}.jpg`` in the origin store once per
GOP.  It has to cost next to nothing beside the ladder: only the GOP's first
access unit (its IDR, decodable on its own) is decoded, scaled down with
swscale and encoded with FFmpeg's own MJPEG encoder, so no image library is
needed and no other frame is touched.  The JPEG is full-range ("JFIF")
YUV 4:2:0, which every browser shows.

``ThumbnailSchedule`` is the pure policy: at most one thumbnail per GOP, and
never one for a GOP older than the last one thumbnailed (GOPs of one stream
may finish out of order across a worker's pool).
"""

from __future__ import annotations

from collections import OrderedDict
from fractions import Fraction

import av
from av.video.reformatter import ColorRange, Interpolation

from media.transcode.source import SourceGop, parse_gop_flv

__all__ = ["ThumbnailSchedule", "gop_thumbnail", "thumbnail_jpeg", "thumbnail_key", "thumbnail_size"]

MAX_WIDTH, MAX_HEIGHT = 320, 180
JPEG_QSCALE = 5  # MJPEG quantiser, as ffmpeg's -q:v (2 best .. 31 worst): about 6 KB at 320x180
SCHEDULED_STREAMS = 10_000  # streams remembered by a worker's schedule; the oldest are forgotten


def thumbnail_key(stream_id: str) -> str:
    """Where a stream's thumbnail lives in the origin store."""
    return f"thumbs/{stream_id}.jpg"


def thumbnail_size(width: int, height: int, max_width: int = MAX_WIDTH,
                   max_height: int = MAX_HEIGHT) -> tuple[int, int]:
    """The largest even size within ``max_width`` x ``max_height`` with the source's aspect, never larger."""
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    scale = min(max_width / width, max_height / height, 1.0)
    # 4:2:0 chroma needs even dimensions.
    return max(2, int(width * scale / 2 + 0.5) * 2), max(2, int(height * scale / 2 + 0.5) * 2)


def _first_frame(src: SourceGop) -> av.VideoFrame:
    decoder = av.CodecContext.create("h264", "r")
    decoder.extradata = src.avcc
    decoder.thread_count = 1  # frame threads would hold the only frame back until the flush anyway
    packet = av.Packet(src.video[0].data)
    packet.pts = packet.dts = 0
    packet.time_base = Fraction(1, 1000)
    # A decoder that reorders (B-frames) holds the IDR until it is flushed with decode(None).
    for frame in [*decoder.decode(packet), *decoder.decode(None)]:
        assert isinstance(frame, av.VideoFrame)
        return frame
    raise ValueError("the GOP's keyframe decoded to no picture")


def thumbnail_jpeg(src: SourceGop, max_width: int = MAX_WIDTH, max_height: int = MAX_HEIGHT) -> bytes:
    """The GOP's first keyframe as a JPEG no larger than ``max_width`` x ``max_height``."""
    frame = _first_frame(src)
    width, height = thumbnail_size(frame.width, frame.height, max_width, max_height)
    small = frame.reformat(width, height, format="yuv420p", interpolation=Interpolation.AREA,
                           dst_color_range=ColorRange.JPEG)
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.color_range = ColorRange.JPEG
    encoder.time_base = Fraction(1, 1)
    encoder.qmin = encoder.qmax = JPEG_QSCALE
    small.pts = 0
    return b"".join(bytes(p) for p in [*encoder.encode(small), *encoder.encode(None)])


def gop_thumbnail(flv: bytes, max_width: int = MAX_WIDTH, max_height: int = MAX_HEIGHT) -> bytes:
    """``thumbnail_jpeg`` of a GOP FLV as the ingest stores it; raises ``ValueError`` for a bad GOP."""
    return thumbnail_jpeg(parse_gop_flv(flv), max_width, max_height)


class ThumbnailSchedule:
    """Per stream, the newest GOP thumbnailed: a GOP gets a thumbnail once, and only if it is newer."""

    def __init__(self, max_streams: int = SCHEDULED_STREAMS) -> None:
        self.max_streams = max_streams
        self._latest: OrderedDict[str, int] = OrderedDict()

    def claim(self, stream_id: str, seq: int) -> bool:
        """True (and remembered) when GOP ``seq`` is the newest of its stream so far."""
        latest = self._latest.get(stream_id)
        if latest is not None and seq <= latest:
            return False
        self._latest[stream_id] = seq
        self._latest.move_to_end(stream_id)
        while len(self._latest) > self.max_streams:
            self._latest.popitem(last=False)
        return True

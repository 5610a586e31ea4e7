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

Storyboards (media/vod/storyboard.py) need a picture for every
``STORYBOARD_INTERVAL_S`` of media: the first GOP that starts in interval
``index`` (media time = the GOP's start minus GOP 0's start, the time a VOD
player shows, since the VOD playlist starts at GOP 0) also writes
``thumbs/{stream_id}/{index:06d}.jpg``, at most 160x90.  Which GOP that is
depends only on its start, GOP 0's and the previous GOP's
(``storyboard_index``), all fixed once the ingest has stored them, so a
redelivered or retried GOP makes the same decision and the same JPEG under
the same key.  ``GopStarts`` remembers those starts as a worker sees GOPs
arrive (one stream's GOPs arrive in order, on one partition); a worker that
missed them (it just started) reads them from the stored GOPs
(``gop_flv_start_ms``).  Intervals in which no GOP starts (a GOP longer than
10 s) are left without a thumbnail.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from fractions import Fraction

import av
from av.video.reformatter import ColorRange, Interpolation

from media.ingest import flv as flv_tags
from media.transcode.source import TIMESTAMP_WRAP, SourceGop, parse_gop_flv
from media.transcode.timeline import ExactMs

__all__ = ["GopStarts", "STORYBOARD_INTERVAL_S", "STORYBOARD_MAX_HEIGHT", "STORYBOARD_MAX_WIDTH",
           "ThumbnailSchedule", "gop_flv_start_ms", "gop_thumbnail", "storyboard_index", "storyboard_thumb_key",
           "thumbnail_jpeg", "thumbnail_key", "thumbnail_size"]

MAX_WIDTH, MAX_HEIGHT = 320, 180
JPEG_QSCALE = 5  # MJPEG quantiser, as ffmpeg's -q:v (2 best .. 31 worst): about 6 KB at 320x180
SCHEDULED_STREAMS = 10_000  # streams remembered by a worker's schedule; the oldest are forgotten
STORYBOARD_INTERVAL_S = 10  # one storyboard thumbnail per this much media
STORYBOARD_MAX_WIDTH, STORYBOARD_MAX_HEIGHT = 160, 90
GOP_STARTS_KEPT = 8  # per stream, the newest GOP starts remembered besides GOP 0's


def thumbnail_key(stream_id: str) -> str:
    """Where a stream's thumbnail lives in the origin store."""
    return f"thumbs/{stream_id}.jpg"


def storyboard_thumb_key(stream_id: str, index: int) -> str:
    """Where a stream's storyboard thumbnail for [10 index, 10 (index + 1)) s of media lives in the origin store."""
    return f"thumbs/{stream_id}/{index:06d}.jpg"


def storyboard_index(start_ms: ExactMs, previous_start_ms: ExactMs | None, origin_ms: ExactMs) -> int | None:
    """The storyboard interval a GOP starting at ``start_ms`` opens, or None if an earlier GOP opened it.

    ``origin_ms`` is GOP 0's start and ``previous_start_ms`` the previous GOP's
    (None for GOP 0), all on the stream timeline.
    """
    offset_ms = start_ms - origin_ms
    if offset_ms < 0:
        return None
    index = math.floor(offset_ms / (STORYBOARD_INTERVAL_S * 1000))
    if previous_start_ms is not None and previous_start_ms - origin_ms >= index * STORYBOARD_INTERVAL_S * 1000:
        return None
    return index


def gop_flv_start_ms(data: bytes, near_ms: int) -> int:
    """The stream-timeline start of a stored GOP FLV: its keyframe's 32-bit time, unwrapped nearest ``near_ms``."""
    for tag_type, timestamp_ms, body in flv_tags.iter_file_tags(data):
        if tag_type == flv_tags.TAG_VIDEO and flv_tags.parse_video(body).packet_type == "nalu":
            # The signed 32-bit difference: the stored time is the timeline mod 2**32 (FLV spec E.4.1).
            delta = (timestamp_ms - near_ms) % TIMESTAMP_WRAP
            return near_ms + (delta - TIMESTAMP_WRAP if delta >= TIMESTAMP_WRAP // 2 else delta)
    raise ValueError("GOP FLV has no video frame")


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


class GopStarts:
    """Per stream, GOP 0's start and the newest GOPs' starts (ms on the stream timeline), as a worker sees them."""

    def __init__(self, max_streams: int = SCHEDULED_STREAMS, kept: int = GOP_STARTS_KEPT) -> None:
        self.max_streams = max_streams
        self.kept = kept
        self._starts: OrderedDict[str, dict[int, ExactMs]] = OrderedDict()

    def observe(self, stream_id: str, seq: int, start_ms: ExactMs) -> None:
        """Remember where GOP ``seq`` starts (the same again changes nothing)."""
        starts = self._starts.setdefault(stream_id, {})
        starts[seq] = start_ms
        self._starts.move_to_end(stream_id)
        if len(starts) > self.kept + 1:
            for old in sorted(s for s in starts if s)[:len(starts) - self.kept - 1]:
                del starts[old]
        while len(self._starts) > self.max_streams:
            self._starts.popitem(last=False)

    def start(self, stream_id: str, seq: int) -> ExactMs | None:
        """Where GOP ``seq`` starts, if remembered."""
        return self._starts.get(stream_id, {}).get(seq)

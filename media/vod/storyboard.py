"""A video's scrubbing previews: its 10 s thumbnails as one sprite sheet and a WebVTT thumbnails track.

While a stream is live the media workers store a small JPEG for every 10 s of
media (``thumbs/{stream_id}/{index:06d}.jpg``, media/transcode/thumbnail.py).
A player's seek bar wants one image and a cue list: the sprite is a grid of
``TILE_WIDTH`` x ``TILE_HEIGHT`` tiles, ``COLUMNS`` to a row in index order,
and the track (W3C WebVTT, cue payloads as media fragment URIs with
``#xywh=x,y,w,h``, the Media Fragments URI 1.0 spatial dimension) has one cue
per interval [10 i, 10 (i + 1)) s pointing at its tile.

Gaps (an interval in which no GOP started, or whose thumbnail failed) reuse
the previous tile: the cue shows the latest picture before it, as a player's
own preview would.  Intervals before the first thumbnail get no cue.

Absurd inputs are capped, never refused for length: past ``MAX_TILES`` tiles
(5.5 hours at 10 s), the intervals are grouped ``stride`` at a time, each
group showing its first thumbnail in one cue of ``stride`` x 10 s, so the
sprite stays within ``MAX_TILES`` tiles (1600 x 18000 pixels).

No image library: PyAV decodes each JPEG (FFmpeg's mjpeg decoder), scales it
with swscale, numpy places the tiles, and FFmpeg's mjpeg encoder writes the
sheet, as the live thumbnail does.  Full-range ("JFIF") YUV 4:2:0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import ColorRange, Interpolation

from media.transcode.thumbnail import JPEG_QSCALE, STORYBOARD_INTERVAL_S, thumbnail_size

__all__ = ["COLUMNS", "MAX_INDEX", "MAX_TILES", "Storyboard", "TILE_HEIGHT", "TILE_WIDTH", "build_storyboard",
           "render_vtt"]

TILE_WIDTH, TILE_HEIGHT = 160, 90
COLUMNS = 10
MAX_TILES = 2_000  # tiles in one sprite; longer videos group intervals (see the module docstring)
MAX_INDEX = 10_000_000  # about 3.2 years of 10 s intervals: anything past it is not a stream's


@dataclass(frozen=True)
class Cue:
    """One WebVTT cue: [start_s, end_s) shows the tile at (x, y)."""

    start_s: int
    end_s: int
    x: int
    y: int


@dataclass(frozen=True)
class Storyboard:
    """A sprite sheet (JPEG) of ``count`` tiles in ``rows`` x ``columns`` and its WebVTT thumbnails track."""

    sprite_jpeg: bytes
    vtt: str
    tile_width: int
    tile_height: int
    columns: int
    rows: int
    count: int  # tiles in the sheet
    interval_s: int  # seconds each cue covers: STORYBOARD_INTERVAL_S, or a multiple past MAX_TILES
    cues: tuple[Cue, ...]


def _vtt_time(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}.000"


def render_vtt(cues: Sequence[Cue], sprite_name: str, tile_width: int, tile_height: int) -> str:
    """The WebVTT thumbnails track: ``WEBVTT``, then one cue per interval pointing into the sprite."""
    lines = ["WEBVTT", ""]
    for cue in cues:
        lines += [f"{_vtt_time(cue.start_s)} --> {_vtt_time(cue.end_s)}",
                  f"{sprite_name}#xywh={cue.x},{cue.y},{tile_width},{tile_height}", ""]
    return "\n".join(lines)


def _layout(indices: Sequence[int], max_tiles: int) -> tuple[int, list[int], list[tuple[int, int]]]:
    """(stride, the indices that become tiles in sheet order, (group, tile) for every cue)."""
    stride = math.ceil((max(indices) + 1) / max_tiles)
    present = sorted(indices)
    tiles: list[int] = []
    cues: list[tuple[int, int]] = []
    at = 0
    for group in range(max(indices) // stride + 1):
        end = (group + 1) * stride
        first = None
        while at < len(present) and present[at] < end:
            first = present[at] if first is None else first
            at += 1
        if first is not None:
            tiles.append(first)
        if tiles:  # a group without a thumbnail reuses the previous tile
            cues.append((group, len(tiles) - 1))
    return stride, tiles, cues


def _decode(index: int, jpeg: bytes) -> av.VideoFrame:
    try:
        decoder = av.CodecContext.create("mjpeg", "r")
        frames = [*decoder.decode(av.Packet(jpeg)), *decoder.decode(None)]
    except av.FFmpegError as exc:
        raise ValueError(f"thumbnail {index} is not a JPEG: {exc}") from exc
    for frame in frames:
        if isinstance(frame, av.VideoFrame):
            return frame
    raise ValueError(f"thumbnail {index} decoded to no picture")


def _tile(index: int, jpeg: bytes) -> np.ndarray:
    """The thumbnail as an RGB tile: scaled to fit, centred on black (a portrait stream gets bars)."""
    frame = _decode(index, jpeg)
    width, height = thumbnail_size(frame.width, frame.height, TILE_WIDTH, TILE_HEIGHT)
    picture = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation=Interpolation.AREA)
    tile = np.zeros((TILE_HEIGHT, TILE_WIDTH, 3), dtype=np.uint8)
    top, left = (TILE_HEIGHT - height) // 2, (TILE_WIDTH - width) // 2
    tile[top:top + height, left:left + width] = picture
    return tile


def _encode_jpeg(sheet: np.ndarray) -> bytes:
    frame = av.VideoFrame.from_ndarray(sheet, format="rgb24")
    height, width = sheet.shape[:2]
    yuv = frame.reformat(width, height, format="yuv420p", dst_color_range=ColorRange.JPEG)
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.color_range = ColorRange.JPEG
    encoder.time_base = Fraction(1, 1)
    encoder.qmin = encoder.qmax = JPEG_QSCALE
    yuv.pts = 0
    return b"".join(bytes(p) for p in [*encoder.encode(yuv), *encoder.encode(None)])


def build_storyboard(thumbs: list[tuple[int, bytes]], sprite_name: str, *,
                     max_tiles: int = MAX_TILES) -> Storyboard:
    """The sprite sheet and WebVTT track of (index, JPEG) thumbnails given in any order, gaps allowed.

    Raises ``ValueError`` for no thumbnails, a negative, duplicate or absurd
    index, or bytes that are not a JPEG.
    """
    if not thumbs:
        raise ValueError("a storyboard needs at least one thumbnail")
    if max_tiles < 1:
        raise ValueError(f"max_tiles must be positive, got {max_tiles}")
    if any(c in sprite_name for c in "\r\n#") or not sprite_name:
        raise ValueError(f"sprite name {sprite_name!r} cannot be a cue payload")
    by_index: dict[int, bytes] = {}
    for index, jpeg in thumbs:
        if not 0 <= index <= MAX_INDEX:
            raise ValueError(f"thumbnail index {index} is outside 0..{MAX_INDEX}")
        if index in by_index:
            raise ValueError(f"thumbnail index {index} is given twice")
        by_index[index] = jpeg
    stride, tiles, groups = _layout(list(by_index), max_tiles)
    columns = min(COLUMNS, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    sheet = np.zeros((rows * TILE_HEIGHT, columns * TILE_WIDTH, 3), dtype=np.uint8)
    for position, index in enumerate(tiles):
        y, x = divmod(position, columns)
        top, left = y * TILE_HEIGHT, x * TILE_WIDTH
        sheet[top:top + TILE_HEIGHT, left:left + TILE_WIDTH] = _tile(index, by_index[index])
    interval_s = stride * STORYBOARD_INTERVAL_S
    cues = tuple(Cue(group * interval_s, (group + 1) * interval_s, (tile % columns) * TILE_WIDTH,
                     (tile // columns) * TILE_HEIGHT) for group, tile in groups)
    return Storyboard(_encode_jpeg(sheet), render_vtt(cues, sprite_name, TILE_WIDTH, TILE_HEIGHT), TILE_WIDTH,
                      TILE_HEIGHT, columns, rows, len(tiles), interval_s, cues)

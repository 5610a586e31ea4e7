"""Storyboards (media/vod/storyboard.py): solid-colour JPEG thumbnails in, a sprite sheet and WebVTT out."""

from __future__ import annotations

import random
import re
from fractions import Fraction

import av
import numpy as np
import pytest

from media.vod.storyboard import COLUMNS, TILE_HEIGHT, TILE_WIDTH, build_storyboard


def solid_jpeg(rgb: tuple[int, int, int], width: int = 320, height: int = 180) -> bytes:
    """A flat-colour JPEG as the media worker writes them (FFmpeg's mjpeg, full-range 4:2:0)."""
    frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), rgb, np.uint8), format="rgb24")
    frame = frame.reformat(format="yuvj420p")
    frame.pts = 0
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuvj420p"
    encoder.time_base = Fraction(1, 1)
    return b"".join(bytes(p) for p in [*encoder.encode(frame), *encoder.encode(None)])


def colour(i: int) -> tuple[int, int, int]:
    return (10 * i, 250 - 10 * i, 255 * (i % 2))


def decode_rgb(jpeg: bytes) -> np.ndarray:
    decoder = av.CodecContext.create("mjpeg", "r")
    frames = [*decoder.decode(av.Packet(jpeg)), *decoder.decode(None)]
    frame = frames[0]
    assert isinstance(frame, av.VideoFrame)
    return frame.to_ndarray(format="rgb24")


CUE = re.compile(r"(\d\d):(\d\d):(\d\d)\.000 --> (\d\d):(\d\d):(\d\d)\.000\n(\S+)#xywh=(\d+),(\d+),(\d+),(\d+)")


def cues(vtt: str) -> list[tuple[int, int, str, tuple[int, int, int, int]]]:
    """(start_s, end_s, sprite name, (x, y, w, h)) of each cue."""
    out = []
    for m in CUE.finditer(vtt):
        h0, m0, s0, h1, m1, s1 = (int(g) for g in m.groups()[:6])
        xywh = (int(m[8]), int(m[9]), int(m[10]), int(m[11]))
        out.append((h0 * 3600 + m0 * 60 + s0, h1 * 3600 + m1 * 60 + s1, m[7], xywh))
    return out


def tile_colour(sprite: np.ndarray, x: int, y: int) -> np.ndarray:
    """The mean colour of a tile's middle (away from chroma bleeding at its edges)."""
    patch = sprite[y + 30:y + TILE_HEIGHT - 30, x + 50:x + TILE_WIDTH - 50]
    return np.asarray(patch.reshape(-1, 3).mean(axis=0))


def test_cues_point_at_the_grid_and_the_tiles_hold_the_right_pictures() -> None:
    thumbs = [(i, solid_jpeg(colour(i))) for i in range(25)]
    random.Random(7).shuffle(thumbs)  # any order
    board = build_storyboard(thumbs, "storyboard.jpg")
    assert (board.columns, board.rows, board.count) == (COLUMNS, 3, 25)
    assert (board.tile_width, board.tile_height, board.interval_s) == (160, 90, 10)
    assert board.vtt.startswith("WEBVTT\n\n")
    sprite = decode_rgb(board.sprite_jpeg)
    assert sprite.shape == (3 * TILE_HEIGHT, COLUMNS * TILE_WIDTH, 3)
    parsed = cues(board.vtt)
    assert len(parsed) == 25
    palette = np.array([colour(i) for i in range(25)], dtype=float)
    for i, (start, end, name, (x, y, w, h)) in enumerate(parsed):
        assert (start, end, name) == (10 * i, 10 * (i + 1), "storyboard.jpg")
        assert (x, y, w, h) == ((i % COLUMNS) * TILE_WIDTH, (i // COLUMNS) * TILE_HEIGHT, TILE_WIDTH, TILE_HEIGHT)
        seen = tile_colour(sprite, x, y)
        assert int(np.argmin(((palette - seen) ** 2).sum(axis=1))) == i
        assert np.abs(seen - palette[i]).max() < 12
    # The unused rest of the last row is black.
    assert tile_colour(sprite, 9 * TILE_WIDTH, 2 * TILE_HEIGHT).max() < 8


def test_a_missing_interval_reuses_the_previous_tile_and_none_come_before_the_first() -> None:
    board = build_storyboard([(5, solid_jpeg(colour(1))), (2, solid_jpeg(colour(0)))], "s.jpg")
    assert board.count == 2 and (board.columns, board.rows) == (2, 1)
    assert [(start, end, xywh[0]) for start, end, _, xywh in cues(board.vtt)] == [
        (20, 30, 0), (30, 40, 0), (40, 50, 0), (50, 60, 160)]
    assert decode_rgb(board.sprite_jpeg).shape == (90, 320, 3)


def test_a_portrait_thumbnail_is_fitted_between_black_bars() -> None:
    board = build_storyboard([(0, solid_jpeg((250, 250, 250), 90, 160))], "s.jpg")
    sprite = decode_rgb(board.sprite_jpeg)
    assert sprite.shape == (90, 160, 3)
    assert sprite[45, 80].min() > 235  # the picture, 50 pixels wide, in the middle
    assert sprite[45, 5].max() < 10 and sprite[45, 155].max() < 10


def test_more_intervals_than_tiles_are_grouped_under_the_cap() -> None:
    thumbs = [(i, solid_jpeg(colour(i))) for i in range(10)]
    board = build_storyboard(thumbs, "s.jpg", max_tiles=4)
    assert board.interval_s == 30 and board.count == 4  # groups of 3 intervals: 0-2, 3-5, 6-8, 9
    parsed = cues(board.vtt)
    assert [(start, end) for start, end, _, _ in parsed] == [(0, 30), (30, 60), (60, 90), (90, 120)]
    sprite = decode_rgb(board.sprite_jpeg)
    palette = np.array([colour(i) for i in range(10)], dtype=float)
    for (_, _, _, (x, y, _, _)), first in zip(parsed, (0, 3, 6, 9), strict=True):
        seen = tile_colour(sprite, x, y)
        assert int(np.argmin(((palette - seen) ** 2).sum(axis=1))) == first  # each group's first thumbnail


def test_a_very_long_video_stays_within_the_default_cap() -> None:
    board = build_storyboard([(0, solid_jpeg(colour(0))), (4999, solid_jpeg(colour(1)))], "s.jpg")
    assert board.interval_s == 30 and board.count == 2
    assert len(board.cues) == 1667 and board.cues[-1].end_s == 50010


@pytest.mark.parametrize(("thumbs", "name", "message"), [
    ([], "s.jpg", "at least one"),
    ([(-1, b"")], "s.jpg", "outside"),
    ([(10**9, b"")], "s.jpg", "outside"),
    ([(1, b"x"), (1, b"y")], "s.jpg", "twice"),
    ([(0, b"not a jpeg")], "s.jpg", "thumbnail 0"),
    ([(0, b"")], "bad\nname", "cue payload"),
])
def test_bad_input_is_a_value_error(thumbs: list[tuple[int, bytes]], name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_storyboard(thumbs, name)

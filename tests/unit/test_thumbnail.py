"""The thumbnail's pure parts (media/transcode/thumbnail.py): its size, which GOPs get one, storyboard intervals."""

from __future__ import annotations

from fractions import Fraction

import pytest

from media.transcode.thumbnail import (
    STORYBOARD_INTERVAL_S,
    GopStarts,
    ThumbnailSchedule,
    storyboard_index,
    storyboard_thumb_key,
    thumbnail_key,
    thumbnail_size,
)


@pytest.mark.parametrize(("source", "size"), [
    ((1920, 1080), (320, 180)), ((1280, 720), (320, 180)), ((854, 480), (320, 180)),
    ((640, 480), (240, 180)), ((720, 1280), (102, 180)), ((320, 180), (320, 180)),
    ((160, 90), (160, 90)),  # never scaled up
    ((2, 2), (2, 2)),
])
def test_size_keeps_the_aspect_within_320x180(source: tuple[int, int], size: tuple[int, int]) -> None:
    assert thumbnail_size(*source) == size
    width, height = size
    assert width % 2 == 0 and height % 2 == 0 and width <= 320 and height <= 180


def test_size_refuses_an_empty_frame() -> None:
    with pytest.raises(ValueError, match="positive"):
        thumbnail_size(0, 720)


def test_key_is_per_stream() -> None:
    assert thumbnail_key("9b2f") == "thumbs/9b2f.jpg"


def test_each_gop_once_and_never_an_older_one() -> None:
    schedule = ThumbnailSchedule()
    assert schedule.claim("s1", 4)
    assert not schedule.claim("s1", 4)  # the same GOP again (a retry or a redelivery)
    assert not schedule.claim("s1", 3)  # finished after a newer one
    assert schedule.claim("s1", 5) and schedule.claim("s2", 0)


def test_schedule_forgets_the_oldest_streams() -> None:
    schedule = ThumbnailSchedule(max_streams=2)
    for stream in ("a", "b", "c"):
        assert schedule.claim(stream, 9)
    assert schedule.claim("a", 9)  # forgotten, so claimed again
    assert not schedule.claim("c", 9)


def test_storyboard_keys_are_per_stream_and_interval() -> None:
    assert storyboard_thumb_key("9b2f", 7) == "thumbs/9b2f/000007.jpg"
    assert STORYBOARD_INTERVAL_S == 10


@pytest.mark.parametrize(("start", "previous", "origin", "index"), [
    (0, None, 0, 0),  # GOP 0 opens interval 0
    (2000, 0, 0, None),
    (10000, 8000, 0, 1),  # a GOP starting on the boundary opens it
    (12000, 9000, 0, 1),  # the first GOP after the boundary
    (14000, 12000, 0, None),
    (31000, 9000, 0, 3),  # a long GOP: intervals 1 and 2 get no thumbnail
    (17021, 15021, 7021, 1),  # media time counts from GOP 0's start, not from 0
    (Fraction(30001, 3), Fraction(24001, 3), Fraction(1, 3), 1),  # exact times from other time bases
    (5000, None, 7000, None),  # before GOP 0 (cannot happen; refused all the same)
])
def test_the_first_gop_starting_in_an_interval_opens_it(start: Fraction | int, previous: Fraction | int | None,
                                                         origin: Fraction | int, index: int | None) -> None:
    assert storyboard_index(start, previous, origin) == index


def test_every_interval_gets_one_gop_whatever_the_gop_lengths() -> None:
    starts, at = [], 0
    for length in [2000, 2500, 1700, 3300, 2000, 900, 4100, 2000] * 10:
        starts.append(at)
        at += length
    opened = [storyboard_index(s, starts[i - 1] if i else None, 0) for i, s in enumerate(starts)]
    indices = [i for i in opened if i is not None]
    assert indices == sorted(set(indices)) == list(range(starts[-1] // 10000 + 1))


def test_gop_starts_keep_gop_zero_and_the_newest() -> None:
    starts = GopStarts(max_streams=2, kept=3)
    for seq in range(10):
        starts.observe("s", seq, seq * 2000)
    assert starts.start("s", 0) == 0 and starts.start("s", 9) == 18000 and starts.start("s", 7) == 14000
    assert starts.start("s", 6) is None
    starts.observe("t", 0, 5)
    starts.observe("u", 0, 5)  # a third stream: the least recent ("s") is forgotten
    assert starts.start("s", 0) is None and starts.start("t", 0) == 5

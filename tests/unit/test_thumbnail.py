"""The thumbnail's pure parts (media/transcode/thumbnail.py): its size and which GOPs get one."""

from __future__ import annotations

import pytest

from media.transcode.thumbnail import ThumbnailSchedule, thumbnail_key, thumbnail_size


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

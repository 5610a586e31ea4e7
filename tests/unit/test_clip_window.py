"""Where a clip falls in a broadcast's segments (views/clip_window.py): pure arithmetic."""

from __future__ import annotations

import pytest

from views.clip_window import ClipOutside, live_window, place, vod_window

# Four 2 s GOPs, then a reconnect gap of 5 s of wall time (no playhead time), then three more.
ENTRIES = [{"seq": i, "duration_ms": 2000, "program_date_time_ms": 1_000_000 + 2000 * i} for i in range(4)] + [
    {"seq": 4 + i, "duration_ms": 2000, "program_date_time_ms": 1_013_000 + 2000 * i} for i in range(3)]


def test_a_video_clip_covers_the_segments_holding_its_first_and_last_millisecond() -> None:
    w = vod_window(place(ENTRIES), 3500, 5000)
    assert (w.first_seq, w.last_seq, w.lead_in_ms, w.offset_ms, w.duration_ms) == (1, 4, 1500, 3500, 5000)
    assert w.start_at_ms == 1_002_000 + 1500  # the program date time of its first frame


def test_a_clip_ending_on_a_segment_boundary_takes_no_extra_segment() -> None:
    w = vod_window(place(ENTRIES), 2000, 6000)
    assert (w.first_seq, w.last_seq, w.lead_in_ms) == (1, 3, 0)


def test_after_a_reconnect_gap_the_program_date_time_jumps_but_the_playhead_does_not() -> None:
    w = vod_window(place(ENTRIES), 8500, 5000)
    assert (w.first_seq, w.last_seq, w.lead_in_ms) == (4, 6, 500)
    assert w.start_at_ms == 1_013_000 + 500


@pytest.mark.parametrize(("offset_ms", "duration_ms", "message"), [
    (0, 4999, "5 to 60 s"), (0, 60_001, "5 to 60 s"), (-1, 5000, "outside the video"),
    (9001, 5000, "outside the video"), (14_000, 5000, "outside the video")])
def test_clips_outside_the_video_or_the_length_bounds_are_refused(offset_ms: int, duration_ms: int,
                                                                  message: str) -> None:
    with pytest.raises(ClipOutside, match=message):
        vod_window(place(ENTRIES), offset_ms, duration_ms)


def test_a_live_clip_is_the_last_part_of_what_is_there_or_all_of_it() -> None:
    w = live_window(place(ENTRIES), 30_000)
    assert (w.first_seq, w.last_seq, w.offset_ms, w.duration_ms) == (0, 6, 0, 14_000)
    w = live_window(place(ENTRIES), 5000)
    assert (w.first_seq, w.last_seq, w.offset_ms, w.lead_in_ms) == (4, 6, 9000, 1000)
    with pytest.raises(ClipOutside, match="so far"):
        live_window(place(ENTRIES[:2]), 30_000)

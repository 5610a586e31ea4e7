"""The clip's pure parts: the edit-list rewrite (media/vod/edit_list.py) and the cut (media/vod/remux.py)."""

from __future__ import annotations

import struct

import pytest

from media.package.fmp4 import box, full_box
from media.vod.edit_list import set_video_edit_duration
from media.vod.remux import plan_cut


def _trak(handler: bytes, track_ms: int, edits: list[tuple[int, int]]) -> bytes:
    tkhd = full_box(b"tkhd", 0, 3, struct.pack(">5I", 0, 0, 1, 0, track_ms), bytes(60))
    elst = full_box(b"elst", 0, 0, struct.pack(">I", len(edits)),
                    *(struct.pack(">Ii2H", ms, media_time, 1, 0) for ms, media_time in edits))
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I4s", 0, handler), bytes(12), b"\0")
    return box(b"trak", tkhd, box(b"edts", elst), box(b"mdia", hdlr))


def _movie(timescale: int = 1000, video: bool = True) -> bytes:
    mvhd = full_box(b"mvhd", 0, 0, struct.pack(">4I", 0, 0, timescale, 5033), bytes(80))
    traks = [_trak(b"soun", 5018, [(4, -1), (5014, 0)])]
    if video:
        traks.insert(0, _trak(b"vide", 5033, [(5033, 69030)]))
    return box(b"ftyp", b"isom", bytes(4)) + box(b"moov", mvhd, *traks) + box(b"mdat", b"\0" * 16)


def _durations(mp4: bytes) -> tuple[int, list[int], list[int]]:
    """mvhd duration, each tkhd duration, each elst's last segment_duration (all version 0)."""
    mvhd = mp4.index(b"mvhd") + 4
    tkhds = [i + 4 for i in range(len(mp4)) if mp4.startswith(b"tkhd", i)]
    elsts = [i + 4 for i in range(len(mp4)) if mp4.startswith(b"elst", i)]
    last_edits = []
    for at in elsts:
        count = struct.unpack_from(">I", mp4, at + 4)[0]
        last_edits.append(struct.unpack_from(">I", mp4, at + 8 + (count - 1) * 12)[0])
    return (struct.unpack_from(">I", mp4, mvhd + 16)[0], [struct.unpack_from(">I", mp4, t + 20)[0] for t in tkhds],
            last_edits)


def test_the_video_edit_is_cut_to_the_duration_and_the_headers_follow() -> None:
    movie = _movie()
    patched = set_video_edit_duration(movie, 5000)
    assert len(patched) == len(movie)
    assert _durations(movie) == (5033, [5033, 5018], [5033, 5014])
    assert _durations(patched) == (5018, [5000, 5018], [5000, 5014])  # the audio edit is left alone
    assert struct.unpack_from(">i", patched, patched.index(b"elst") + 16)[0] == 69030  # media_time kept


@pytest.mark.parametrize(("movie", "message"), [
    (_movie(video=False), "no video track"),
    (_movie(timescale=600), "timescale is 600"),
    (box(b"ftyp", b"isom"), "no moov"),
    (_movie()[:_movie().index(b"mdat") - 20], "bad size"),  # the moov cut short
])
def test_what_it_cannot_patch_is_a_value_error(movie: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        set_video_edit_duration(movie, 1000)


# (pts, keyframe) in decode order, 1 tick per frame interval of 10, two B-frames: I0 P30 B10 B20 P60 B40 B50 I90 ...
FRAMES = [(0, True), (30, False), (10, False), (20, False), (60, False), (40, False), (50, False),
          (90, True), (120, False), (100, False), (110, False)]


def test_the_cut_starts_at_the_keyframe_before_and_keeps_the_references_after() -> None:
    cut = plan_cut(FRAMES, 10, 25, 40)
    assert (cut.first, cut.start, cut.end) == (0, 20, 60)  # the frame on screen at 25 is the one at 20
    assert cut.last == 6  # B50 is the last shown before 60, and P60 comes before it in decode order
    assert plan_cut(FRAMES, 10, 95, 20) == type(cut)(7, 9, 90, 110)


def test_the_cut_is_measured_from_the_first_picture() -> None:
    shifted = [(pts + 5, key) for pts, key in FRAMES]
    assert plan_cut(shifted, 10, 0, 30).start == 5


def test_a_window_past_the_last_frame_is_refused() -> None:
    assert plan_cut(FRAMES, 10, 0, 130).end == 130
    with pytest.raises(ValueError, match="past their end"):
        plan_cut(FRAMES, 10, 0, 131)
    with pytest.raises(ValueError, match="no frames"):
        plan_cut([], 10, 0, 1)

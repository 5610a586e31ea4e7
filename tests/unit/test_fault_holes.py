"""The fault scenario's GOP accounting: a hole is lost unless a killed ingest had only reserved its number."""

from __future__ import annotations

from bench.faults import gop_holes


def test_a_hole_is_lost_unless_a_takeover_continued_after_it() -> None:
    assert gop_holes([], set()) == ([], [])
    assert gop_holes([0, 1, 2], {5}) == ([], [])
    assert gop_holes([0, 1, 3, 4, 6], set()) == ([2, 5], [])
    assert gop_holes([0, 1, 3, 4, 6], {2}) == ([5], [2])  # the takeover continued at 3
    assert gop_holes([2, 3], {1}) == ([0], [1])

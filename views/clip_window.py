"""Where a clip falls in a broadcast's segments: pure arithmetic over the segment index.

A video's playhead time is its VOD playlist's: the source segments' durations
laid end to end from 0 (a reconnect's gap takes no playhead time).  A clip is
``duration_ms`` from a playhead ``offset_ms``; it covers the source segments
(whole GOPs) from the one holding its start to the one holding its last
millisecond, and ``lead_in_ms`` is how far into the first of them it starts.
The clip playlist lists those whole segments and starts playback after the
lead-in (EXT-X-START); the MP4 keeps the lead-in's packets (decoding needs the
keyframe) and hides them with an edit list (media/vod/remux.py), so both
start at the requested moment.

A live clip is the last ``duration_ms`` of what the segment index has, ending
with the newest complete segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MIN_CLIP_MS, MAX_CLIP_MS = 5_000, 60_000


class ClipOutside(ValueError):
    """The requested clip does not fit in the video (or the stream has too little yet)."""


@dataclass(frozen=True)
class Placed:
    """One source segment with its place on the playhead."""

    seq: int
    start_ms: int
    duration_ms: int
    program_date_time_ms: int

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.duration_ms


@dataclass(frozen=True)
class ClipWindow:
    first_seq: int
    last_seq: int
    offset_ms: int  # the clip's start on the video's playhead
    lead_in_ms: int  # from the first segment's start to the clip's start
    duration_ms: int
    start_at_ms: int  # the program date time of the clip's start


def place(segments: Sequence[dict[str, Any]]) -> list[Placed]:
    """Segment index entries (in seq order) on the playhead."""
    placed: list[Placed] = []
    at = 0
    for entry in segments:
        duration = int(entry["duration_ms"])
        placed.append(Placed(int(entry["seq"]), at, duration, int(entry["program_date_time_ms"])))
        at += duration
    return placed


def total_ms(placed: Sequence[Placed]) -> int:
    return placed[-1].end_ms if placed else 0


def vod_window(placed: Sequence[Placed], offset_ms: int, duration_ms: int) -> ClipWindow:
    """The clip of ``duration_ms`` from playhead ``offset_ms``; ClipOutside unless it lies within the video."""
    total = total_ms(placed)
    if not MIN_CLIP_MS <= duration_ms <= MAX_CLIP_MS:
        raise ClipOutside(f"a clip lasts {MIN_CLIP_MS // 1000} to {MAX_CLIP_MS // 1000} s")
    if offset_ms < 0 or offset_ms + duration_ms > total:
        raise ClipOutside(f"the clip ({offset_ms / 1000:.3f} s + {duration_ms / 1000:.3f} s) is outside the video "
                          f"({total / 1000:.3f} s long)")
    end_ms = offset_ms + duration_ms
    first = next(p for p in placed if p.end_ms > offset_ms)
    last = next(p for p in placed if p.end_ms >= end_ms)
    lead_in = offset_ms - first.start_ms
    return ClipWindow(first.seq, last.seq, offset_ms, lead_in, duration_ms, first.program_date_time_ms + lead_in)


def live_window(placed: Sequence[Placed], duration_ms: int) -> ClipWindow:
    """The last ``duration_ms`` of a live stream (all of it when shorter, if that is at least the minimum)."""
    if not MIN_CLIP_MS <= duration_ms <= MAX_CLIP_MS:
        raise ClipOutside(f"a clip lasts {MIN_CLIP_MS // 1000} to {MAX_CLIP_MS // 1000} s")
    total = total_ms(placed)
    if total < MIN_CLIP_MS:
        raise ClipOutside(f"the stream has {total / 1000:.1f} s of video so far; a clip needs "
                          f"{MIN_CLIP_MS // 1000} s")
    duration = min(duration_ms, total)
    return vod_window(placed, total - duration, duration)

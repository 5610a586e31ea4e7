"""The LL-HLS part cutter (media/package/parts.py): pure, on synthetic frame timings."""

from __future__ import annotations

import pytest

from media.package.parts import AudioFrame, CutPart, PartCutter, VideoFrame, part_target_ms, rung_segment


def frame_times(fps_num: int, fps_den: int, count: int, start_ms: int = 0) -> list[int]:
    """Millisecond decode times as an encoder writes them (rounded down, so 33/33/34 at 30 fps)."""
    return [start_ms + i * 1000 * fps_den // fps_num for i in range(count)]


def cut(times: list[int], gop_frames: int, target: int, audio: list[int] | None = None) -> list[CutPart]:
    cutter = PartCutter(target, audio_rate=48_000)
    parts: list[CutPart] = []
    pending_audio = sorted(audio or [])
    for i, t in enumerate(times):
        frame = VideoFrame(t, t, i % gop_frames == 0, b"v")
        if frame.keyframe:
            parts += cutter.end_segment(t)
            cutter.start_segment(frame)
        else:
            parts += cutter.add_video(frame)
        while pending_audio and pending_audio[0] <= t:
            cutter.add_audio(AudioFrame(pending_audio.pop(0), b"a"))
    parts += cutter.end_segment(times[-1] + (times[-1] - times[-2]))
    return parts


@pytest.mark.parametrize(("fps", "expected"), [(30, 223), (29.97, 223), (25, 267), (24, 278), (60, 200), (None, 223)])
def test_the_part_target_leaves_room_for_whole_frames(fps: float | None, expected: int) -> None:
    assert part_target_ms(fps) == expected


@pytest.mark.parametrize(("num", "den"), [(30, 1), (30000, 1001), (25, 1), (24, 1), (60, 1), (50, 1)])
def test_every_part_but_the_last_is_within_85_to_100_percent_of_the_target(num: int, den: int) -> None:
    target = part_target_ms(num / den)
    gop = round(2 * num / den)  # a 2 s GOP
    times = frame_times(num, den, gop * 3)
    parts = cut(times, gop, target)
    segments: dict[int, list[CutPart]] = {}
    for p in parts:
        segments.setdefault(p.segment_start_ms, []).append(p)
    assert len(segments) == 3
    for start, seg in segments.items():
        assert [p.index for p in seg] == list(range(len(seg)))
        assert seg[0].start_ms == start and seg[0].independent and not any(p.independent for p in seg[1:])
        assert [p.last for p in seg] == [False] * (len(seg) - 1) + [True]
        for a, b in zip(seg, seg[1:]):
            assert b.start_ms == a.start_ms + a.duration_ms  # contiguous
        for p in seg[:-1]:
            assert 0.85 * target <= p.duration_ms <= target, (p.duration_ms, target)
        assert seg[-1].duration_ms <= target
    assert sum(len(p.video) for p in parts) == len(times)  # every frame once


def test_parts_sum_to_the_gop_and_frames_keep_their_order_and_durations() -> None:
    times = frame_times(30, 1, 60)
    parts = cut(times, 60, 223)
    assert [p.duration_ms for p in parts] == [200] * 9 + [199]  # the GOP ends one frame (33 ms) after 1966
    assert sum(s.duration for p in parts for s in p.video) == 1999 * 90
    assert parts[0].video[0].sync and not any(s.sync for p in parts for s in p.video[1:] if p.index == 0)


def test_audio_runs_on_across_parts_without_gaps_or_overlaps() -> None:
    times = frame_times(30, 1, 120)
    audio = [i * 1024 * 1000 // 48_000 for i in range(185)]  # AAC at 48 kHz: 21.33 ms, written as 21/21/22
    parts = cut(times, 60, 223, audio)
    with_audio = [p for p in parts if p.audio]
    assert sum(len(p.audio) for p in parts) == len([a for a in audio if a <= times[-1]])
    for a, b in zip(with_audio, with_audio[1:]):
        assert b.audio_start_ticks == a.audio_start_ticks + sum(s.duration for s in a.audio)


def test_a_hole_in_the_audio_is_kept() -> None:
    cutter = PartCutter(223, audio_rate=48_000)
    cutter.start_segment(VideoFrame(0, 0, True, b"v"))
    cutter.add_audio(AudioFrame(0, b"a"))
    cutter.add_audio(AudioFrame(100, b"a"))  # about four frames lost before the ingest
    (part,) = cutter.end_segment(200)
    assert part.audio[0].duration == 4800 and part.audio_start_ticks == 0


def test_a_late_frame_is_counted_not_hidden() -> None:
    cutter = PartCutter(223)
    cutter.start_segment(VideoFrame(0, 0, True, b"v"))
    out: list[CutPart] = []
    for t in (33, 66, 100, 133, 166, 300):  # the frame after 166 ms arrives 134 ms later
        out += cutter.add_video(VideoFrame(t, t, False, b"v"))
    assert out[0].duration_ms == 300 and cutter.overlong_parts == 1


def test_frames_before_a_keyframe_are_dropped_and_misuse_is_refused() -> None:
    cutter = PartCutter(223)
    assert cutter.add_video(VideoFrame(0, 0, False, b"v")) == [] and cutter.end_segment(10) == []
    cutter.start_segment(VideoFrame(0, 0, True, b"v"))
    with pytest.raises(ValueError, match="end_segment first"):
        cutter.start_segment(VideoFrame(33, 33, True, b"v"))
    with pytest.raises(ValueError):
        PartCutter(0)


def _halves(parts: list[CutPart]) -> list[tuple[int, int]]:
    """Per segment: how long its two rung halves last (ms), from where each part says the split is."""
    segments: dict[int, list[CutPart]] = {}
    for p in parts:
        segments.setdefault(p.segment_start_ms, []).append(p)
    out = []
    for seg in segments.values():
        split = seg[-1].rung_split
        assert split is not None
        # Decided once and never changed: every part from the deciding one on carries the same split.
        decided = [p.rung_split for p in seg if p.rung_split is not None]
        assert set(decided) == {split} and seg[-1].index >= split >= seg[len(seg) - len(decided)].index
        out.append((sum(p.duration_ms for p in seg[:split]), sum(p.duration_ms for p in seg[split:])))
    return out


@pytest.mark.parametrize(("num", "den"), [(30, 1), (30000, 1001), (25, 1), (60, 1)])
def test_a_2s_gop_splits_into_two_rung_segments_of_about_a_second(num: int, den: int) -> None:
    gop = round(2 * num / den)
    target = part_target_ms(num / den)
    for first, second in _halves(cut(frame_times(num, den, gop * 4), gop, target)):
        assert abs(first - 1000) <= target // 2 + 1 and abs(first + second - 2000) <= 2, (first, second)
        assert round(first / 1000) <= 1 and round(second / 1000) <= 1  # EXT-X-TARGETDURATION 1 on the rungs


def test_the_split_follows_the_gop_length_from_the_previous_gop() -> None:
    halves = _halves(cut(frame_times(30, 1, 120 * 3), 120, 223))  # 4 s GOPs
    assert halves[0][0] == 1000  # the first GOP is aimed at 1 s: its length is not known yet
    assert all(abs(a - 2000) <= 112 for a, _ in halves[1:]), halves


def test_a_gop_shorter_than_predicted_splits_at_its_last_part() -> None:
    cutter = PartCutter(223)
    parts: list[CutPart] = []
    times = frame_times(30, 1, 60 + 12)  # a 2 s GOP, then one of 12 frames (400 ms: two parts)
    for i, t in enumerate(times):
        frame = VideoFrame(t, t, i in (0, 60), b"v")
        if frame.keyframe:
            parts += cutter.end_segment(t)
            cutter.start_segment(frame)
        else:
            parts += cutter.add_video(frame)
    parts += cutter.end_segment(times[-1] + 33)
    short = [p for p in parts if p.segment_start_ms == times[60]]
    assert [p.rung_split for p in short] == [None, 1]


def test_a_gop_of_one_part_is_not_split() -> None:
    cutter = PartCutter(223)
    cutter.start_segment(VideoFrame(0, 0, True, b"v"))
    cutter.add_video(VideoFrame(33, 33, False, b"v"))
    assert [p.rung_split for p in cutter.end_segment(66)] == [None]


@pytest.mark.parametrize(("seq", "part", "split", "expected"), [
    (0, 0, None, (0, 0)), (7, 3, None, (14, 3)), (7, 4, 5, (14, 4)), (7, 5, 5, (15, 0)), (7, 9, 5, (15, 4)),
])
def test_rung_segment_numbers_are_dense(seq: int, part: int, split: int | None, expected: tuple[int, int]) -> None:
    assert rung_segment(seq, part, split) == expected

"""The ladder policy (``media.transcode.ladder``): modes, tiers, no upscaling, frame rates."""

from __future__ import annotations

import pytest

from media.transcode.ladder import AUDIO, LADDER, MIN_RUNG_KBPS, Rendition, gop_kbps, plan_ladder


def names(renditions: list[Rendition]) -> list[str]:
    return [r.name for r in renditions]


def test_table_is_the_seed_ladder() -> None:
    assert [(r.name, r.width, r.height, r.fps, r.video_kbps) for r in LADDER] == [
        ("720p30", 1280, 720, 30.0, 3000), ("480p30", 854, 480, 30.0, 1500), ("360p30", 640, 360, 30.0, 800)]
    assert not any(r.passthrough or r.audio_only for r in LADDER)
    assert AUDIO.audio_only and not AUDIO.passthrough


def test_passthrough_mode_is_source_only() -> None:
    [source] = plan_ladder("passthrough", 10_000, 1920, 1080, 60.0)
    assert source == Rendition("source", 1920, 1080, 60.0, None, passthrough=True)


def test_full_mode_from_1080p60() -> None:
    ladder = plan_ladder("full", 0, 1920, 1080, 60.0)
    assert names(ladder) == ["source", "720p30", "480p30", "360p30", "audio"]
    # Scaled rungs never exceed their table rate, and a 16:9 source keeps the table sizes.
    assert [(r.width, r.height, r.fps) for r in ladder[1:4]] == [(1280, 720, 30.0), (854, 480, 30.0), (640, 360, 30.0)]
    assert ladder[-1] == AUDIO


def test_full_mode_never_upscales_and_drops_the_rung_at_source_height() -> None:
    assert names(plan_ladder("full", 0, 1280, 720, 30.0)) == ["source", "480p30", "360p30", "audio"]
    assert names(plan_ladder("full", 0, 854, 480, 30.0)) == ["source", "360p30", "audio"]
    assert names(plan_ladder("full", 0, 640, 360, 30.0)) == ["source", "audio"]
    assert names(plan_ladder("full", 0, 320, 240, 30.0)) == ["source", "audio"]
    assert names(plan_ladder("full", 0, 1280, 721, 30.0)) == ["source", "720p30", "480p30", "360p30", "audio"]


def test_rung_fps_is_capped_by_the_source() -> None:
    ladder = plan_ladder("full", 0, 1920, 1080, 25.0)
    assert {r.fps for r in ladder[1:4]} == {25.0}
    assert {r.fps for r in plan_ladder("full", 0, 1920, 1080, 29.97)[1:4]} == {29.97}
    # An unknown source rate leaves the table rate.
    unknown = plan_ladder("full", 0, 1920, 1080, None)
    assert unknown[0].fps is None and {r.fps for r in unknown[1:4]} == {30.0}


def test_scaled_widths_follow_the_source_aspect_ratio() -> None:
    ladder = plan_ladder("full", 0, 1440, 1080, 30.0)  # 4:3
    assert [(r.width, r.height) for r in ladder[1:4]] == [(960, 720), (640, 480), (480, 360)]
    assert all(r.width is not None and r.width % 2 == 0 for r in plan_ladder("full", 0, 1366, 768, 30.0)[1:-1])


@pytest.mark.parametrize(("viewers", "expected"), [
    (0, ["source"]), (9, ["source"]),
    (10, ["source", "720p30"]), (99, ["source", "720p30"]),
    (100, ["source", "720p30", "480p30", "360p30", "audio"]),
    (50_000, ["source", "720p30", "480p30", "360p30", "audio"]),
])
def test_tiered_by_audience(viewers: int, expected: list[str]) -> None:
    assert names(plan_ladder("tiered", viewers, 1920, 1080, 60.0)) == expected


def test_tiered_middle_tier_takes_the_best_rung_below_the_source() -> None:
    assert names(plan_ladder("tiered", 50, 1280, 720, 30.0)) == ["source", "480p30"]
    assert names(plan_ladder("tiered", 50, 854, 480, 30.0)) == ["source", "360p30"]
    # Nothing to scale down to: the second rendition is audio-only.
    assert names(plan_ladder("tiered", 50, 640, 360, 30.0)) == ["source", "audio"]


def test_tier_thresholds_are_parameters() -> None:
    assert names(plan_ladder("tiered", 3, 1280, 720, 30.0, tier_small=2, tier_medium=5)) == ["source", "480p30"]
    assert len(plan_ladder("tiered", 5, 1280, 720, 30.0, tier_small=2, tier_medium=5)) == 4


def test_unknown_mode_is_named() -> None:
    with pytest.raises(ValueError, match="'adaptive'"):
        plan_ladder("adaptive", 0, 1280, 720, 30.0)


@pytest.mark.parametrize("size", [(0, 720), (1280, 0), (-2, 720)])
def test_bad_source_size_is_rejected(size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="source size"):
        plan_ladder("full", 0, size[0], size[1], 30.0)


def test_bad_tiers_are_rejected() -> None:
    with pytest.raises(ValueError, match="tier"):
        plan_ladder("tiered", 0, 1280, 720, 30.0, tier_small=100, tier_medium=10)


def test_renditions_are_frozen_values() -> None:
    with pytest.raises(AttributeError):
        LADDER[0].name = "x"  # type: ignore[misc]
    assert plan_ladder("full", 0, 1920, 1080, 30.0) == plan_ladder("full", 0, 1920, 1080, 30.0)


def test_scaled_rungs_never_exceed_the_source_bitrate() -> None:
    rungs = {r.name: r for r in plan_ladder("full", 0, 1280, 720, 30.0, source_kbps=900)}
    assert rungs["480p30"].video_kbps == 900 and rungs["360p30"].video_kbps == 800
    rungs = {r.name: r for r in plan_ladder("full", 0, 1280, 720, 30.0, source_kbps=40)}
    assert rungs["360p30"].video_kbps == MIN_RUNG_KBPS
    rungs = {r.name: r for r in plan_ladder("full", 0, 1280, 720, 30.0)}
    assert rungs["480p30"].video_kbps == 1500  # unknown source bitrate: the ladder's own


def test_gop_kbps_from_the_event_fields() -> None:
    assert gop_kbps(250_000, 2000, 1, 1000) == 1000  # 250 kB in 2 s
    assert gop_kbps(250_000, 180_000, 1, 90_000) == 1000
    assert gop_kbps(1000, 0, 1, 1000) is None

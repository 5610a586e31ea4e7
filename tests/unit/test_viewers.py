"""Bucket maths, decay and the viewer-count fold (views/viewers.py), without Valkey."""

from __future__ import annotations

import pytest

from infra.errors import SettingsError
from infra.settings import ViewerSettings, load_settings
from media.transcode.worker import viewers_key
from views.viewers import (
    HEARTBEAT_INTERVAL_S,
    ViewerCounts,
    apply_viewer_count,
    bucket_of,
    channel_of_key,
    counted_for_s,
    group_beats,
    recent_buckets,
    snapshot,
)

CHANNEL = "7d8a0b8e-54a6-4b43-9d4c-6f1f0b9b2a11"
STREAM = "0f3c2a55-1b7e-4d0f-a7a4-2f5c9d1e8b30"


def counted(beats_ms: list[int], now_ms: int, bucket_s: int, window_s: int) -> bool:
    """Whether a session with these beats is in the merged count at ``now_ms`` (an exact set for the HLL)."""
    merged = set(recent_buckets(now_ms, bucket_s, window_s))
    return any(bucket_of(t, bucket_s) in merged for t in beats_ms if t <= now_ms)


def test_bucket_of_counts_from_the_epoch() -> None:
    assert bucket_of(0, 15) == 0
    assert bucket_of(14_999, 15) == 0
    assert bucket_of(15_000, 15) == 1
    assert bucket_of(1_790_000_007_000, 15) == 1_790_000_007_000 // 15_000


def test_recent_buckets_end_with_the_current_one() -> None:
    now = 1_790_000_007_000
    current = bucket_of(now, 15)
    assert recent_buckets(now, 15, 60) == [current - 3, current - 2, current - 1, current]
    assert recent_buckets(now, 60, 120) == [bucket_of(now, 60) - 1, bucket_of(now, 60)]
    assert recent_buckets(now, 2, 6) == [bucket_of(now, 2) - 2, bucket_of(now, 2) - 1, bucket_of(now, 2)]


def test_defaults_meet_the_heartbeat_interval_and_the_60_s_decay() -> None:
    s = ViewerSettings()
    low, high = counted_for_s(s.bucket_s, s.window_s)
    assert low > HEARTBEAT_INTERVAL_S  # always counted while beating, with slack for late beats
    assert high <= 60  # gone within a minute of the last beat


@pytest.mark.parametrize("phase_ms", range(0, 30_000, 1_250))
def test_a_viewer_beating_every_30_s_is_always_counted_then_drops_out(phase_ms: int) -> None:
    s = ViewerSettings()
    start = 1_790_000_000_000 + phase_ms
    beats = [start + i * HEARTBEAT_INTERVAL_S * 1000 for i in range(10)]
    last = beats[-1]
    for now in range(start, last + HEARTBEAT_INTERVAL_S * 1000, 250):
        assert counted(beats, now, s.bucket_s, s.window_s), f"not counted {now - start} ms in"
    low, high = counted_for_s(s.bucket_s, s.window_s)
    assert counted(beats, last + low * 1000 - 1, s.bucket_s, s.window_s)
    assert not counted(beats, last + high * 1000, s.bucket_s, s.window_s)
    gone = next(t for t in range(last, last + 120_000, 100) if not counted(beats, t, s.bucket_s, s.window_s))
    assert low * 1000 <= gone - last <= high * 1000


def test_minute_buckets_would_keep_a_departed_viewer_up_to_two_minutes() -> None:
    minute = 1_790_000_040_000  # a minute boundary
    early, late = minute + 100, minute + 59_900
    assert counted([early], early + 119_000, 60, 120) and not counted([early], minute + 120_000, 60, 120)
    assert counted([late], late + 60_000, 60, 120) and not counted([late], late + 60_100, 60, 120)
    assert counted_for_s(60, 120) == (60, 120)


def test_group_beats_merges_sessions_per_channel_and_bucket_and_drops_stale_ones() -> None:
    other = "11111111-2222-4333-8444-555555555555"
    now = 1_790_000_010_000
    oldest = recent_buckets(now, 15, 60)[0]
    beats = [(CHANNEL, now, "a"), (CHANNEL, now + 1, "a"), (CHANNEL, now, "b"), (other, now, "a"),
             (CHANNEL, now - 15_000, "c"), (CHANNEL, now - 600_000, "stale")]
    groups = group_beats(beats, 15, oldest)
    assert groups == {(CHANNEL, bucket_of(now, 15)): {"a", "b"}, (other, bucket_of(now, 15)): {"a"},
                      (CHANNEL, bucket_of(now, 15) - 1): {"c"}}


def test_snapshot_value_and_fold() -> None:
    live = snapshot("e1", 1_790_000_000_000, CHANNEL, STREAM, 987, 15, 60)
    assert live.to_avro() == {"event_id": "e1", "occurred_at": 1_790_000_000_000, "channel_id": CHANNEL,
                    "stream_id": STREAM, "viewers": 987, "window_s": 60, "bucket_s": 15}
    assert apply_viewer_count(live) == 987
    offline = snapshot("e2", 1_790_000_005_000, CHANNEL, None, 987, 15, 60)
    assert offline.viewers == 0 and offline.stream_id is None
    assert apply_viewer_count(offline) is None
    # Snapshots are absolute: a replay in log order (redeliveries included) ends on the last one.
    history = [live, live, offline, live, snapshot("e3", 1_790_000_010_000, CHANNEL, STREAM, 5, 15, 60)]
    view: int | None = None
    for event in history + history[-1:]:
        view = apply_viewer_count(event)
    assert view == 5


def test_keys_match_what_the_ladder_policy_reads() -> None:
    counts = ViewerCounts(None, "gc:", 15, 60)  # type: ignore[arg-type]  # keys need no client
    assert counts.k_viewers(CHANNEL) == viewers_key("gc:", CHANNEL)
    assert counts.k_hll(CHANNEL, 42) == f"gc:viewers:hll:{CHANNEL}:42"  # outside view: (rebuild-views)
    assert channel_of_key(f"gc:view:viewers:{CHANNEL}".encode(), "gc:view:viewers:") == CHANNEL


@pytest.mark.parametrize(("env", "var"), [
    ({"GLASSCAST_VIEWERS_WINDOW_S": "50"}, "GLASSCAST_VIEWERS_WINDOW_S"),
    ({"GLASSCAST_VIEWERS_BUCKET_S": "60"}, "GLASSCAST_VIEWERS_WINDOW_S"),
    ({"GLASSCAST_VIEWERS_BUCKET_S": "0"}, "GLASSCAST_VIEWERS_BUCKET_S"),
    ({"GLASSCAST_VIEWERS_SNAPSHOT_INTERVAL_S": "0"}, "GLASSCAST_VIEWERS_SNAPSHOT_INTERVAL_S"),
    ({"GLASSCAST_VIEWERS_BATCH_SIZE": "0"}, "GLASSCAST_VIEWERS_BATCH_SIZE"),
])
def test_bad_viewer_settings_name_the_variable(env: dict[str, str], var: str) -> None:
    with pytest.raises(SettingsError, match=var):
        load_settings(env)

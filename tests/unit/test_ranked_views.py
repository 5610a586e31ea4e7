"""The videos and clips views' pure parts: ranked members and cursors, and folds that commute."""

from __future__ import annotations

import itertools
import uuid

import pytest

from schemas.records.clip import ClipCreated, ClipRendered, ClipViewsCounted
from schemas.records.stream import StreamEnded
from schemas.records.video import StoryboardReady, VideoDeleted, VideoPurged, VideoViewsCounted
from views.clips import CLIP_FOLDS, ClipView
from views.fold import Applied
from views.ranked import decode_cursor, encode_cursor, member
from views.videos import VIDEO_FOLDS, VideoView

VIDEO, CHANNEL, CLIP = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())


def test_members_sort_newest_and_most_viewed_first_then_by_time() -> None:
    ids = sorted(str(uuid.uuid4()) for _ in range(3))
    by_time = sorted([member("time", 0, 1000, ids[0]), member("time", 0, 3000, ids[1]),
                      member("time", 0, 2000, ids[2])])
    assert [m.rsplit(":", 1)[1] for m in by_time] == [ids[1], ids[2], ids[0]]
    by_views = sorted([member("views", 5, 1000, ids[0]), member("views", 9, 500, ids[1]),
                       member("views", 5, 2000, ids[2])])
    assert [m.rsplit(":", 1)[1] for m in by_views] == [ids[1], ids[2], ids[0]]


def test_cursors_round_trip_and_refuse_another_listing_or_garbage() -> None:
    m = member("views", 3, 1234, VIDEO)
    cursor = encode_cursor("videos", "views", m)
    assert decode_cursor("videos", "views", cursor) == m
    for kind, sort, bad in (("clips", "views", cursor), ("videos", "time", cursor), ("videos", "views", "bm9wZQ"),
                            ("videos", "views", "!!"), ("videos", "views", "x" * 300)):
        with pytest.raises(ValueError):
            decode_cursor(kind, sort, bad)  # type: ignore[arg-type]


def _fold_all(folds: dict[type, object], events: list[object]) -> object:
    view = None
    for offset, event in enumerate(events):
        view = folds[type(event)](Applied(offset, event), view)  # type: ignore[operator]
    return view


VIDEO_EVENTS = [
    StreamEnded(occurred_at=20_000, stream_id=VIDEO, channel_id=CHANNEL, started_at=1_000, duration_ms=19_000),
    StoryboardReady(occurred_at=21_000, video_id=VIDEO, channel_id=CHANNEL, sprite_key="s", vtt_key="v",
                    thumbnail_key="t", interval_s=10, tile_width=160, tile_height=90, columns=10, tiles=2),
    VideoViewsCounted(occurred_at=22_000, video_id=VIDEO, channel_id=CHANNEL, views=3),
    VideoViewsCounted(occurred_at=23_000, video_id=VIDEO, channel_id=CHANNEL, views=7),
    VideoDeleted(occurred_at=24_000, video_id=VIDEO, channel_id=CHANNEL, reason="OWNER"),
    VideoDeleted(occurred_at=25_000, video_id=VIDEO, channel_id=CHANNEL, reason="RETENTION"),
    VideoPurged(occurred_at=26_000, video_id=VIDEO, channel_id=CHANNEL, objects_deleted=1, bytes_freed=2,
                objects_kept=0),
]


def test_the_video_folds_give_one_view_in_any_order_and_under_redelivery() -> None:
    expected = _fold_all(VIDEO_FOLDS, VIDEO_EVENTS)
    assert isinstance(expected, VideoView)
    assert (expected.views, expected.deleted_reason, expected.purged, expected.duration_ms) == (7, "OWNER", True,
                                                                                                19_000)
    assert not expected.listed and expected.storyboard is not None
    for order in itertools.islice(itertools.permutations(VIDEO_EVENTS), 0, None, 97):
        assert _fold_all(VIDEO_FOLDS, [*order, *order]) == expected


def test_the_clip_folds_give_one_view_in_any_order_and_under_redelivery() -> None:
    events = [
        ClipCreated(occurred_at=5_000, clip_id=CLIP, channel_id=CHANNEL, stream_id=VIDEO,
                    created_by_user_id=str(uuid.uuid4()), title="t", start_at=1_500, duration_ms=5000,
                    first_segment_seq=1, last_segment_seq=3, offset_ms=3500, lead_in_ms=1500),
        ClipRendered(occurred_at=6_000, clip_id=CLIP, mp4_key="clips/x/clip.mp4", byte_size=10, duration_ms=5000),
        ClipViewsCounted(occurred_at=7_000, clip_id=CLIP, channel_id=CHANNEL, views=2),
    ]
    expected = _fold_all(CLIP_FOLDS, events)
    assert isinstance(expected, ClipView) and expected.created and expected.mp4_key and expected.views == 2
    for order in itertools.permutations(events):
        assert _fold_all(CLIP_FOLDS, [*order, *order]) == expected

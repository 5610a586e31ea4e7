"""Directory members, cursors, entries and category totals (views/directory.py), without Valkey."""

from __future__ import annotations

import base64
import uuid
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from views.channels import ChannelView
from views.directory import (
    MAX_VIEWERS,
    RECENT,
    SORTS,
    VIEWERS,
    Audience,
    DirectoryEntry,
    apply_count,
    category_deltas,
    category_key,
    category_rows,
    decode_cursor,
    encode_cursor,
    live_entry,
    member,
    placements,
    stream_of,
)
from views.streams import CONFIGURED, ENDED, LIVE, StreamView

CHANNEL = "7d8a0b8e-54a6-4b43-9d4c-6f1f0b9b2a11"
STREAM = "0f3c2a55-1b7e-4d0f-a7a4-2f5c9d1e8b30"


def entry(stream_id: str = STREAM, viewers: int = 0, started_at_ms: int = 1_790_000_000_000,
          category: str | None = "Games") -> DirectoryEntry:
    return DirectoryEntry(stream_id=stream_id, channel_id=CHANNEL, channel_name="speedy", title="Any%",
                          category=category, tags=("speedrun",), viewers=viewers, started_at_ms=started_at_ms)


def channel() -> ChannelView:
    return ChannelView(id=CHANNEL, name="speedy", owner_user_id="u1", title="Channel title", category="Art",
                       tags=("chill",), stream_key_hash="a" * 64, created_at_ms=1, updated_at_ms=1, seq=0)


def stream(status: str = LIVE) -> StreamView:
    return StreamView(id=STREAM, channel_id=CHANNEL, seq=3, status=status, started_at_ms=1_790_000_000_000,
                      title="Any% practice", category="Games", tags=("speedrun", "pb"))


def test_viewers_order_is_most_viewers_then_newest_then_stream_id() -> None:
    ids = sorted(str(uuid.uuid4()) for _ in range(4))
    entries = [entry(ids[0], 5, 1000), entry(ids[1], 500, 1000), entry(ids[2], 5, 2000), entry(ids[3], 5, 2000)]
    ordered = sorted(entries, key=lambda e: member(VIEWERS, e))
    assert [e.stream_id for e in ordered] == [ids[1], ids[2], ids[3], ids[0]]


def test_recent_order_is_newest_first() -> None:
    older, newer = entry("a", 900, 1000), entry("b", 0, 2000)
    assert member(RECENT, newer) < member(RECENT, older)
    assert member(VIEWERS, older) < member(VIEWERS, newer)


def test_members_have_fixed_width_numbers_and_end_with_the_stream_id() -> None:
    m = member(VIEWERS, entry(viewers=7, started_at_ms=1_790_000_000_000))
    assert m == f"{MAX_VIEWERS - 7:012d}:{9_999_999_999_999 - 1_790_000_000_000:013d}:{STREAM}"
    assert stream_of(m) == STREAM and stream_of(member(RECENT, entry())) == STREAM
    # Out-of-range numbers are clamped rather than breaking the width (and so the order).
    assert len(member(VIEWERS, entry(viewers=MAX_VIEWERS))) == len(m)
    with pytest.raises(ValueError, match="unknown sort"):
        member("popular", entry())


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2)), min_size=1, max_size=40),
       st.integers(1, 7), st.sampled_from(SORTS))
def test_keyset_pages_cover_every_stream_once_in_order(shape: list[tuple[int, int]], size: int, sort: str) -> None:
    # Few distinct viewer counts and start times: lots of exact ties.
    entries = [entry(f"s{i:03d}", viewers, 1000 + started) for i, (viewers, started) in enumerate(shape)]
    members = sorted(member(sort, e) for e in entries)
    seen: list[str] = []
    after: str | None = None
    while True:
        page = [m for m in members if after is None or m > after][:size + 1]
        seen += page[:size]
        if len(page) <= size:
            break
        after = decode_cursor(sort, encode_cursor(sort, page[size - 1]))
    assert seen == members and len(set(seen)) == len(entries)


def test_cursor_round_trips_and_is_url_safe() -> None:
    for sort in SORTS:
        m = member(sort, entry(viewers=12))
        cursor = encode_cursor(sort, m)
        assert decode_cursor(sort, cursor) == m
        assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize("cursor, message", [
    ("", "1-256 characters"),
    ("x" * 300, "1-256 characters"),
    ("%%%", "not one this API returned"),
    ("abc", "not one this API returned"),
    (base64.urlsafe_b64encode(b"\xff\xfe").decode(), "not one this API returned"),
    (base64.urlsafe_b64encode(b"viewers|12:34:x").decode(), "not one this API returned"),
    (base64.urlsafe_b64encode(b"popular|000000000001:0000000000001:x").decode(), "not one this API returned"),
])
def test_malformed_cursors_are_refused(cursor: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_cursor(VIEWERS, cursor)


def test_a_cursor_of_the_other_sort_is_refused() -> None:
    cursor = encode_cursor(RECENT, member(RECENT, entry()))
    with pytest.raises(ValueError, match="sort=recent, not sort=viewers"):
        decode_cursor(VIEWERS, cursor)


def test_live_entry_lists_only_live_streams_with_the_stream_metadata() -> None:
    e = live_entry(stream(), channel(), 42)
    assert e == DirectoryEntry(stream_id=STREAM, channel_id=CHANNEL, channel_name="speedy", title="Any% practice",
                               category="Games", tags=("speedrun", "pb"), viewers=42,
                               started_at_ms=1_790_000_000_000)
    assert e.public()["thumbnail_url"] == f"/thumbs/{STREAM}.jpg"
    assert set(e.public()) == {"stream_id", "channel_id", "channel_name", "title", "category", "tags", "viewers",
                               "started_at_ms", "thumbnail_url"}
    assert live_entry(stream(CONFIGURED), channel(), 3) is None
    assert live_entry(stream(ENDED), channel(), 3) is None
    assert live_entry(None, channel(), 3) is None
    assert live_entry(stream(), None, 0).channel_name is None  # type: ignore[union-attr]
    assert DirectoryEntry.from_json(e.to_json()) == e


def test_counts_are_absolute_and_a_redelivery_changes_nothing() -> None:
    first = apply_count(10, 40, None)
    assert first == Audience(viewers=40, seq=10)
    later = apply_count(12, 35, first)
    assert later == Audience(viewers=35, seq=12)
    assert apply_count(10, 40, later) == later  # redelivered older snapshot
    assert apply_count(12, 35, later) == later
    assert apply_count(13, -5, later).viewers == 0
    assert Audience.from_json(later.to_json()) == later


def test_category_keys_ignore_case_width_and_spacing() -> None:
    assert category_key("Just  Chatting ") == category_key("just chatting") == "just chatting"
    assert category_key("ＧＡＭＥＳ") == "games"
    assert category_key("") is None and category_key("   ") is None and category_key(None) is None


def test_placements_are_all_and_the_category_for_each_sort() -> None:
    e = entry(viewers=3)
    assert placements(e) == {(s, c, member(s, e)) for s in SORTS for c in (None, "games")}
    assert placements(entry(category=None)) == {(s, None, member(s, entry(category=None))) for s in SORTS}
    assert placements(None) == set()


def test_category_deltas_follow_a_stream_through_its_life() -> None:
    started = entry(viewers=0)
    watched = replace(started, viewers=30)
    moved = replace(watched, category="Art")
    assert category_deltas(None, started) == {"games": (1, 0)}
    assert category_deltas(started, watched) == {"games": (0, 30)}
    assert category_deltas(watched, watched) == {"games": (0, 0)}
    assert category_deltas(watched, moved) == {"games": (-1, -30), "art": (1, 30)}
    assert category_deltas(moved, None) == {"art": (-1, -30)}
    assert category_deltas(None, entry(category=None)) == {}


def test_category_rows_sort_by_viewers_then_name_and_keep_idle_categories() -> None:
    rows = category_rows(["games", "Games", "Art", "Music", "Zebra"],
                         {"games": 2, "art": 1, "music": 0}, {"games": 10, "art": 10, "music": 0})
    assert rows == [{"name": "Art", "live_streams": 1, "viewers": 10},
                    {"name": "Games", "live_streams": 2, "viewers": 10},
                    {"name": "Music", "live_streams": 0, "viewers": 0},
                    {"name": "Zebra", "live_streams": 0, "viewers": 0}]
    assert category_rows([], {}, {}) == []

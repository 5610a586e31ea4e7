"""View folds are pure and idempotent: applying an event twice is applying it once, and
replaying a history rebuilds the same view."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.record import Record
from schemas.records.channel import ChannelCreated, ChannelUpdated, StreamKeyRotated
from schemas.records.stream import StreamConfigured, StreamEnded, StreamReconnected, StreamStarted, StreamUpdated
from schemas.records.user import ProfileUpdated, UserDeleted, UserRegistered
from views.channels import CHANNEL_FOLDS, ChannelView
from views.fold import Applied
from views.streams import STREAM_FOLDS, StreamView
from views.users import USER_FOLDS

CHANNEL_ID = "6f1c1f0e-7a44-4f0b-9a3c-2b8f7f1e0a11"
names = st.text(alphabet="abcdefghijklmnop_", min_size=4, max_size=12)
opt = lambda s: st.one_of(st.none(), s)  # noqa: E731


@st.composite
def channel_history(draw: Any) -> list[Applied[Record]]:
    events: list[Applied[Record]] = [Applied(0, ChannelCreated(
        occurred_at=1_700_000_000_000, channel_id=CHANNEL_ID, owner_user_id="u1",
        name=draw(names), title=draw(st.text(max_size=20)), category=draw(opt(names)),
        tags=tuple(draw(st.lists(names, max_size=3))), stream_key_hash="a" * 64))]
    for offset in range(1, draw(st.integers(0, 8)) + 1):
        at = 1_700_000_000_000 + offset * 1000
        if draw(st.booleans()):
            tags = draw(opt(st.lists(names, max_size=3)))
            events.append(Applied(offset, ChannelUpdated(
                occurred_at=at, channel_id=CHANNEL_ID, updated_by_user_id="u1",
                title=draw(opt(st.text(max_size=20))), category=draw(opt(st.sampled_from(["", "Games"]))),
                tags=None if tags is None else tuple(tags))))
        else:
            events.append(Applied(offset, StreamKeyRotated(
                occurred_at=at, channel_id=CHANNEL_ID, rotated_by_user_id="u1",
                stream_key_hash=draw(st.sampled_from("bcdef")) * 64)))
    return events


def replay(events: list[Applied[Record]], view: ChannelView | None = None) -> ChannelView | None:
    for event in events:
        view = CHANNEL_FOLDS[type(event.value)](event, view)
    return view


@settings(max_examples=200)
@given(channel_history())
def test_channel_fold_is_idempotent_per_event(events: list[Applied[Record]]) -> None:
    view = None
    for event in events:
        once = CHANNEL_FOLDS[type(event.value)](event, view)
        assert CHANNEL_FOLDS[type(event.value)](event, once) == once
        view = once


@settings(max_examples=200)
@given(channel_history(), st.data())
def test_redelivered_prefix_changes_nothing(events: list[Applied[Record]], data: Any) -> None:
    final = replay(events)
    cut = data.draw(st.integers(0, len(events)))
    # A consumer that crashed before committing sees a prefix again.
    assert replay(events[:cut], final) == final
    assert replay(events) == final


def test_channel_fold_applies_updates() -> None:
    events = [
        Applied(0, ChannelCreated(
            occurred_at=1000, channel_id=CHANNEL_ID, owner_user_id="u1", name="speedy",
            title="t", category="Games", tags=("a",), stream_key_hash="a" * 64)),
        Applied(1, ChannelUpdated(
            occurred_at=2000, channel_id=CHANNEL_ID, updated_by_user_id="u1",
            title=None, category="", tags=("b", "c"))),
        Applied(2, StreamKeyRotated(
            occurred_at=3000, channel_id=CHANNEL_ID, rotated_by_user_id="u1",
            stream_key_hash="b" * 64)),
    ]
    view = replay(events)
    assert view is not None
    assert (view.title, view.category, view.tags, view.stream_key_hash) == ("t", None, ("b", "c"), "b" * 64)
    assert (view.created_at_ms, view.updated_at_ms, view.seq) == (1000, 3000, 2)
    assert ChannelView.from_json(view.to_json()) == view


def test_update_before_create_is_ignored() -> None:
    update = Applied(5, ChannelUpdated(
        occurred_at=1, channel_id=CHANNEL_ID, updated_by_user_id="u", title="x",
        category=None, tags=None))
    assert CHANNEL_FOLDS[type(update.value)](update, None) is None


def test_user_fold() -> None:
    reg = Applied(3, UserRegistered(
        occurred_at=1000, user_id="u1", username="alice", email=None, password_hash="$argon2id$x"))
    view = USER_FOLDS[type(reg.value)](reg, None)
    assert view is not None and view.username == "alice" and view.seq == 3
    assert USER_FOLDS[type(reg.value)](reg, view) == view
    upd = Applied(4, ProfileUpdated(
        occurred_at=2000, user_id="u1", display_name="Alice", bio=None, avatar_url=None))
    after = USER_FOLDS[type(upd.value)](upd, view)
    assert after is not None and after.display_name == "Alice" and after.seq == 4
    assert USER_FOLDS[type(upd.value)](upd, after) == after
    assert "password_hash" not in after.to_json()
    gone = Applied(5, UserDeleted(occurred_at=3000, user_id="u1"))
    deleted = USER_FOLDS[type(gone.value)](gone, after)
    assert deleted is not None and deleted.deleted and deleted.display_name is None and deleted.seq == 5
    assert USER_FOLDS[type(upd.value)](Applied(6, upd.value), deleted) == deleted  # nothing comes back


STREAM_ID = "0b7e3c1a-5d2f-4c8e-9a61-7f3d2e1c0b9a"


@st.composite
def stream_history(draw: Any) -> list[Applied[Record]]:
    """A broadcast's lifecycle: maybe configured first, started, updated, reconnected, ended (maybe twice)."""
    base = {"channel_id": CHANNEL_ID, "stream_id": STREAM_ID}
    events: list[Applied[Record]] = []
    offset = 0

    def add(record: type[Record], **value: Any) -> None:
        nonlocal offset
        events.append(Applied(offset, record(**base, occurred_at=1_700_000_000_000 + offset * 1000, **value)))
        offset += 1

    def started() -> None:
        add(StreamStarted, title=draw(st.text(max_size=10)), category=draw(opt(names)), tags=(),
            ingest_host="ingest-1")

    if draw(st.booleans()):
        add(StreamConfigured, configured_by_user_id="u1", title=draw(st.text(max_size=10)),
            category=draw(opt(names)), tags=tuple(draw(st.lists(names, max_size=2))))
    else:
        started()
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from([StreamStarted, StreamUpdated, StreamReconnected, StreamEnded]))
        if kind is StreamStarted:
            started()
        elif kind is StreamUpdated:
            tags = draw(opt(st.lists(names, max_size=2)))
            add(kind, updated_by_user_id="u1", title=draw(opt(st.text(min_size=1, max_size=10))),
                category=draw(opt(st.sampled_from(["", "Games"]))), tags=None if tags is None else tuple(tags))
        elif kind is StreamReconnected:
            add(kind, reconnect_count=draw(st.integers(1, 5)), gap_ms=1000, ingest_host="ingest-1", next_gop_seq=0)
        else:
            add(kind, reason=draw(st.sampled_from(["PUBLISHER_STOPPED", "ENDED_BY_CREATOR"])),
                started_at=1_700_000_000_000, duration_ms=offset * 1000)
    return events


def replay_stream(events: list[Applied[Record]]) -> StreamView | None:
    view = None
    for event in events:
        view = STREAM_FOLDS[type(event.value)](event, view)
    return view


@settings(max_examples=200)
@given(stream_history(), st.data())
def test_stream_fold_is_idempotent_and_replayable(events: list[Applied[Record]], data: Any) -> None:
    final = replay_stream(events)
    cut = data.draw(st.integers(0, len(events)))
    assert replay_stream(events[:cut] + events) == final  # a redelivered prefix changes nothing
    view = None
    for event in events:
        once = STREAM_FOLDS[type(event.value)](event, view)
        assert STREAM_FOLDS[type(event.value)](event, once) == once
        view = once


@settings(max_examples=200)
@given(stream_history())
def test_the_first_end_wins_and_nothing_changes_after_it(events: list[Applied[Record]]) -> None:
    final = replay_stream(events)
    ends = [e.value for e in events if isinstance(e.value, StreamEnded)]
    if final is None or not ends:
        return
    assert final.status == "ended" and final.end_reason == ends[0].reason
    assert final.ended_at_ms == ends[0].occurred_at
    assert replay_stream(events[:[e.value for e in events].index(ends[0]) + 1]) == final


def test_a_configured_stream_goes_live_with_its_configured_metadata() -> None:
    events = [
        Applied(3, StreamConfigured(
            occurred_at=1_000, stream_id=STREAM_ID, channel_id=CHANNEL_ID, configured_by_user_id="u1",
            title="Pre-show", category="Art", tags=("cozy",))),
        Applied(4, StreamStarted(
            occurred_at=2_000, stream_id=STREAM_ID, channel_id=CHANNEL_ID, title="Channel title",
            category=None, tags=(), ingest_host="ingest-1")),
    ]
    view = replay_stream(events)
    assert view is not None and view.status == "live" and view.started_at_ms == 2_000
    assert (view.title, view.category, view.tags, view.configured_at_ms) == ("Pre-show", "Art", ("cozy",), 1_000)
    assert StreamView.from_json(view.to_json()) == view


def test_stream_documents_without_a_status_read_as_before() -> None:
    old = {"id": STREAM_ID, "channel_id": CHANNEL_ID, "started_at_ms": 5, "seq": 1, "title": "t",
           "category": None, "ended_at_ms": None, "end_reason": None, "reconnects": 0}
    assert StreamView.from_json(old).live
    assert StreamView.from_json({**old, "ended_at_ms": 9, "end_reason": "PUBLISHER_STOPPED"}).ended

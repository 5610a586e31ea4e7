"""View folds are pure and idempotent: applying an event twice is applying it once, and
replaying a history rebuilds the same view."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings, strategies as st

from processors.views.channels import CHANNEL_FOLDS, ChannelView
from processors.views.fold import Applied
from processors.views.users import USER_FOLDS

CHANNEL_ID = "6f1c1f0e-7a44-4f0b-9a3c-2b8f7f1e0a11"
names = st.text(alphabet="abcdefghijklmnop_", min_size=4, max_size=12)
opt = lambda s: st.one_of(st.none(), s)  # noqa: E731


@st.composite
def channel_history(draw: Any) -> list[Applied]:
    events = [Applied("glasscast.channel.ChannelCreated", 0, {
        "occurred_at": 1_700_000_000_000, "channel_id": CHANNEL_ID, "owner_user_id": "u1",
        "name": draw(names), "title": draw(st.text(max_size=20)), "category": draw(opt(names)),
        "tags": draw(st.lists(names, max_size=3)), "stream_key_hash": "a" * 64})]
    for offset in range(1, draw(st.integers(0, 8)) + 1):
        at = 1_700_000_000_000 + offset * 1000
        if draw(st.booleans()):
            events.append(Applied("glasscast.channel.ChannelUpdated", offset, {
                "occurred_at": at, "channel_id": CHANNEL_ID, "updated_by_user_id": "u1",
                "title": draw(opt(st.text(max_size=20))), "category": draw(opt(st.sampled_from(["", "Games"]))),
                "tags": draw(opt(st.lists(names, max_size=3)))}))
        else:
            events.append(Applied("glasscast.channel.StreamKeyRotated", offset, {
                "occurred_at": at, "channel_id": CHANNEL_ID, "rotated_by_user_id": "u1",
                "stream_key_hash": draw(st.sampled_from("bcdef")) * 64}))
    return events


def replay(events: list[Applied], view: ChannelView | None = None) -> ChannelView | None:
    for event in events:
        view = CHANNEL_FOLDS[event.record](event, view)
    return view


@settings(max_examples=200)
@given(channel_history())
def test_channel_fold_is_idempotent_per_event(events: list[Applied]) -> None:
    view = None
    for event in events:
        once = CHANNEL_FOLDS[event.record](event, view)
        assert CHANNEL_FOLDS[event.record](event, once) == once
        view = once


@settings(max_examples=200)
@given(channel_history(), st.data())
def test_redelivered_prefix_changes_nothing(events: list[Applied], data: Any) -> None:
    final = replay(events)
    cut = data.draw(st.integers(0, len(events)))
    # A consumer that crashed before committing sees a prefix again.
    assert replay(events[:cut], final) == final
    assert replay(events) == final


def test_channel_fold_applies_updates() -> None:
    events = [
        Applied("glasscast.channel.ChannelCreated", 0, {
            "occurred_at": 1000, "channel_id": CHANNEL_ID, "owner_user_id": "u1", "name": "speedy",
            "title": "t", "category": "Games", "tags": ["a"], "stream_key_hash": "a" * 64}),
        Applied("glasscast.channel.ChannelUpdated", 1, {
            "occurred_at": 2000, "channel_id": CHANNEL_ID, "updated_by_user_id": "u1",
            "title": None, "category": "", "tags": ["b", "c"]}),
        Applied("glasscast.channel.StreamKeyRotated", 2, {
            "occurred_at": 3000, "channel_id": CHANNEL_ID, "rotated_by_user_id": "u1",
            "stream_key_hash": "b" * 64}),
    ]
    view = replay(events)
    assert view is not None
    assert (view.title, view.category, view.tags, view.stream_key_hash) == ("t", None, ("b", "c"), "b" * 64)
    assert (view.created_at_ms, view.updated_at_ms, view.seq) == (1000, 3000, 2)
    assert ChannelView.from_json(view.to_json()) == view


def test_update_before_create_is_ignored() -> None:
    update = Applied("glasscast.channel.ChannelUpdated", 5, {
        "occurred_at": 1, "channel_id": CHANNEL_ID, "updated_by_user_id": "u", "title": "x",
        "category": None, "tags": None})
    assert CHANNEL_FOLDS[update.record](update, None) is None


def test_user_fold() -> None:
    reg = Applied("glasscast.user.UserRegistered", 3, {
        "occurred_at": 1000, "user_id": "u1", "username": "alice", "email": None, "password_hash": "$argon2id$x"})
    view = USER_FOLDS[reg.record](reg, None)
    assert view is not None and view.username == "alice" and view.seq == 3
    assert USER_FOLDS[reg.record](reg, view) == view
    upd = Applied("glasscast.user.ProfileUpdated", 4, {
        "occurred_at": 2000, "user_id": "u1", "display_name": "Alice", "bio": None, "avatar_url": None})
    after = USER_FOLDS[upd.record](upd, view)
    assert after is not None and after.display_name == "Alice" and after.seq == 4
    assert USER_FOLDS[upd.record](upd, after) == after
    assert "password_hash" not in after.public()

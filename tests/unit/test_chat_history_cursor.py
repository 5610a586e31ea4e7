"""Replay cursors and pages (views/chat_history/cursor.py) and the replay query's two forms
(gateways/chat_history.py), without a server."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from gateways.chat_history import CursorRequest, ReplayWindow, parse_request
from gateways.errors import BadRequest, ValidationFailed
from views.chat_history.cursor import (
    Cursor,
    CursorError,
    cursor_sides,
    decode_cursor,
    encode_cursor,
    fetch_sizes,
    page_of,
)
from views.chat_history.store import ArchivedMessage, Window, pivot

# Fixed, not random: a parameter is built from it, and every xdist worker must collect the same ones.
CHANNEL = "6a1f0c6e-3a52-4d2b-9c39-5b0e2f7d8a11"


def _messages(n: int) -> list[ArchivedMessage]:
    return [ArchivedMessage(channel_id=CHANNEL, message_id=str(uuid.UUID(int=i + 1)), user_id="u", username="v",
                            text=f"m{i}", sent_at_ms=1000 + i) for i in range(n)]


@given(direction=st.sampled_from(["older", "newer"]), ms=st.integers(0, 253_402_300_800_000),
       message_id=st.one_of(st.just(""), st.uuids().map(str)))
def test_a_cursor_round_trips_and_is_url_safe(direction: str, ms: int, message_id: str) -> None:
    cursor = Cursor(CHANNEL, "older" if direction == "older" else "newer", (ms, message_id))
    text = encode_cursor(cursor)
    assert text.isascii() and all(c.isalnum() or c in "-_" for c in text)
    assert decode_cursor(text, CHANNEL) == cursor


def test_a_cursor_of_another_channel_is_refused() -> None:
    text = encode_cursor(Cursor(CHANNEL, "newer", (5, "m")))
    with pytest.raises(CursorError, match="another channel"):
        decode_cursor(text, str(uuid.uuid4()))


@pytest.mark.parametrize("text", [
    "", "!!!!", "a" * 300, "é", "YQ", encode_cursor(Cursor(CHANNEL, "newer", (5, "m"))) + "A",
    "MXxufGN8NXxt!!", "MXxufGN8NXxt==", "MXxu fGN8NXxt", "MXxu+GN8NXxt",  # 1|n|c|5|m with characters added
    "MnxufGN8NXxt",  # 2|n|c|5|m: another version
    "MXx4fGN8NXxt",  # an unknown direction
    "MXxufGN8LTV8bQ",  # a negative time
    "MXxufGN8NXxtfGV4dHJh",  # a field too many
])
def test_malformed_cursors_are_refused(text: str) -> None:
    with pytest.raises(CursorError, match="not a cursor"):
        decode_cursor(text, "c")


@given(st.text(max_size=300))
def test_any_text_is_a_cursor_or_a_cursor_error(text: str) -> None:
    try:
        decode_cursor(text, CHANNEL)
    except CursorError:
        pass


def test_a_page_shows_what_was_asked_and_cursors_only_where_more_is() -> None:
    m = _messages(10)
    key = m[5].sort_key()
    before, after = 2, 3
    assert fetch_sizes(before, after) == (3, 4)
    # The store had more on both sides: one extra message each.
    page = page_of(CHANNEL, key, Window(tuple(m[2:5]), tuple(m[6:10])), before, after)
    assert page.messages == (m[3], m[4], m[6], m[7], m[8])
    assert page.prev_cursor == Cursor(CHANNEL, "older", m[3].sort_key())
    assert page.next_cursor == Cursor(CHANNEL, "newer", m[8].sort_key())
    # Exactly as many as asked: nothing more either side.
    page = page_of(CHANNEL, key, Window(tuple(m[3:5]), tuple(m[6:9])), before, after)
    assert page.messages == (m[3], m[4], m[6], m[7], m[8]) and page.prev_cursor is page.next_cursor is None
    # A forward page (nothing shown before) still points back when something is there.
    before, after = cursor_sides("newer", 4)
    page = page_of(CHANNEL, key, Window((m[4],), tuple(m[6:10])), before, after)
    assert page.messages == tuple(m[6:10]) and page.next_cursor is None
    assert page.prev_cursor == Cursor(CHANNEL, "older", key)
    assert cursor_sides("older", 4) == (4, 0)
    # An empty history around a moment.
    assert page_of(CHANNEL, pivot(7), Window((), ()), 50, 50).messages == ()


def test_the_two_forms_of_the_query() -> None:
    assert parse_request(QueryParams("around_timestamp=5&before=1")) == ReplayWindow(5, 1, 50)
    assert parse_request(QueryParams("cursor=abc")) == CursorRequest("abc", 50)
    assert parse_request(QueryParams("cursor=abc&limit=200")) == CursorRequest("abc", 200)


@pytest.mark.parametrize("query, status, field", [
    ("cursor=abc&around_timestamp=5", 400, "around_timestamp"),
    ("cursor=abc&before=5", 400, "before"),
    ("limit=5", 400, "limit"),
    ("around_timestamp=5&limit=5", 400, "limit"),
    ("cursor=abc&cursor=def", 400, "cursor"),
    ("cursor=abc&limit=201", 422, "limit"),
    ("cursor=abc&limit=x", 422, "limit"),
])
def test_mixed_or_bad_forms_are_refused(query: str, status: int, field: str) -> None:
    with pytest.raises((BadRequest, ValidationFailed)) as caught:
        parse_request(QueryParams(query))
    assert caught.value.status == status and caught.value.extra == {"field": field}

"""The replay endpoint's query string and message shape (gateways/chat_history.py), without a server."""

from __future__ import annotations

import pytest
from starlette.datastructures import QueryParams

from gateways.chat_history import DEFAULT_SIDE, MAX_SIDE, ReplayWindow, message_json, parse_timestamp, parse_window
from gateways.errors import BadRequest, ValidationFailed
from views.chat_history.store import ArchivedMessage, Emote


def test_the_moment_is_required_and_each_side_defaults_to_fifty() -> None:
    assert parse_window(QueryParams("around_timestamp=5")) == ReplayWindow(5, DEFAULT_SIDE, DEFAULT_SIDE)
    assert DEFAULT_SIDE == 50
    for query in ("", "around_timestamp=", "before=5"):
        with pytest.raises(ValidationFailed, match="required") as caught:
            parse_window(QueryParams(query))
        assert caught.value.extra == {"field": "around_timestamp"}


def test_a_full_query() -> None:
    assert parse_window(QueryParams("around_timestamp=1790000000123&before=0&after=200")) == ReplayWindow(
        1_790_000_000_123, 0, MAX_SIDE)


NOON = 1_789_992_000_000  # 2026-09-21T12:00:00Z


@pytest.mark.parametrize("raw, ms", [
    ("0", 0),
    ("1790000000123", 1_790_000_000_123),
    ("2026-09-21T12:00:00Z", NOON),
    ("2026-09-21T12:00:00.123+00:00", NOON + 123),
    ("2026-09-21T14:00:00.123+02:00", NOON + 123),
    ("2026-09-21T12:00:00.123", NOON + 123),  # no offset: UTC
    ("2026-09-21 12:00:00.123456", NOON + 123),  # microseconds are cut to the millisecond
    ("2026-09-21", NOON - 12 * 3_600_000),
])
def test_timestamps_in_milliseconds_or_iso_8601(raw: str, ms: int) -> None:
    assert parse_timestamp(raw) == ms


@pytest.mark.parametrize("query, status, field", [
    ("around_timestamp=yesterday", 422, "around_timestamp"),
    ("around_timestamp=-5", 422, "around_timestamp"),
    ("around_timestamp=1.79e12", 422, "around_timestamp"),
    ("around_timestamp=1969-12-31T23:59:59Z", 422, "around_timestamp"),
    ("around_timestamp=" + "9" * 5000, 422, "around_timestamp"),
    ("around_timestamp=0001-01-01T00:00:00%2B01:00", 422, "around_timestamp"),
    ("around_timestamp=2026-09-21T14:00:00 02:00", 422, "around_timestamp"),  # an unescaped + read as a space
    ("around_timestamp=1&before=201", 422, "before"), ("around_timestamp=1&before=-1", 422, "before"),
    ("around_timestamp=1&before=ten", 422, "before"),
    ("around_timestamp=1&after=%EF%BC%91", 422, "after"),  # a full-width digit one
    ("around_timestamp=1&after=1" + "0" * 4400, 422, "after"),
    ("befor=10", 400, "befor"),
    ("after=1&after=2", 400, "after"),
])
def test_bad_parameters_are_refused_naming_the_parameter(query: str, status: int, field: str) -> None:
    with pytest.raises((BadRequest, ValidationFailed)) as caught:
        parse_window(QueryParams(query))
    assert caught.value.status == status and caught.value.extra == {"field": field}


def test_a_message_as_replay_shows_it() -> None:
    m = ArchivedMessage(channel_id="c", message_id="m", user_id="u", username="speedy", text="Kappa 👋",
                        sent_at_ms=1_790_000_000_123, emotes=(Emote("25", 0, 5),), badges=("vip",))
    assert message_json(m) == {"message_id": "m", "user_id": "u", "username": "speedy", "text": "Kappa 👋",
                               "emotes": [{"emote_id": "25", "start": 0, "end": 5}], "badges": ["vip"],
                               "sent_at_ms": 1_790_000_000_123}

"""Chat replay: the messages of a channel's chat around a moment, from the chat history store.

    GET /v1/chat/{room}/messages?around_timestamp=T&before=N&after=M
    GET /v1/chat/{room}/messages?cursor=C&limit=L

``room`` is a channel id or name.  ``T`` is epoch milliseconds or an ISO 8601
time (``2026-03-01T20:15:00Z``; without an offset it is UTC).  The first form
holds up to ``before`` messages sent at or before ``T`` and up to ``after``
sent after it (each 50 unless given, at most 200), oldest first, as a VOD
player needs them to show the chat beside the video:

    {"channel_id": ..., "around_timestamp": T_ms,
     "messages": [{"message_id", "user_id", "username", "text", "emotes": [{"emote_id", "start", "end"}],
                   "badges", "sent_at_ms"}, ...],
     "prev_cursor": "..." | null, "next_cursor": "..." | null}

``prev_cursor`` pages to the messages before the first one shown and
``next_cursor`` to those after the last, each ``null`` when there are none
(yet: a live channel's ``next_cursor`` may be ``null`` now and not later).
The second form follows one: ``limit`` messages (50 unless given, at most 200)
in the cursor's direction, oldest first, with both cursors again and no
``around_timestamp``.  Cursors are opaque, keyset positions in one channel's
history (``views/chat_history/cursor.py``): a page never repeats or skips a
message, however much chat arrives meanwhile.

Deleted messages are never in it, nor what a user said in the channel up to
the moment they were banned or timed out there (CLEARCHAT), even when the ban
came long after the message.  An unknown or repeated parameter, ``cursor``
with ``around_timestamp``, ``before`` or ``after``, ``limit`` without a
cursor, and a malformed cursor or one of another channel are a 400; a value
that cannot be read a 422; each names the parameter.  The store is opened in
the gateway's lifespan (gateways/services.py) and reached as
``services(request).chat_history``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateways.channels import find_channel
from gateways.errors import BadRequest, Unavailable, ValidationFailed
from gateways.services import services
from views.chat_history.cursor import (
    Cursor,
    CursorError,
    Page,
    cursor_sides,
    decode_cursor,
    encode_cursor,
    fetch_sizes,
    page_of,
)
from views.chat_history.errors import HistoryError
from views.chat_history.store import ArchivedMessage, Key, pivot

DEFAULT_SIDE, MAX_SIDE = 50, 200
WINDOW_PARAMETERS = ("around_timestamp", "before", "after")
CURSOR_PARAMETERS = ("cursor", "limit")
PARAMETERS = (*WINDOW_PARAMETERS, *CURSOR_PARAMETERS)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_TIMESTAMP_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last ISO 8601 four-digit-year instant


@dataclass(frozen=True)
class ReplayWindow:
    """A replay request: around when and how many messages on each side."""

    around_ms: int
    before: int
    after: int


@dataclass(frozen=True)
class CursorRequest:
    """A request for the page a cursor points to: the cursor as sent, and how many messages."""

    cursor: str
    limit: int


def check_parameters(query: QueryParams) -> None:
    """Refuse unknown and repeated parameters, and the two forms mixed."""
    for name in sorted(set(query.keys())):
        if name not in PARAMETERS:
            raise BadRequest(f"unknown parameter '{name}' (allowed: {', '.join(PARAMETERS)})", field=name)
        if len(query.getlist(name)) > 1:
            raise BadRequest(f"parameter '{name}' is given more than once", field=name)
    if "cursor" in query:
        for name in WINDOW_PARAMETERS:
            if name in query:
                raise BadRequest(f"'{name}' does not go with 'cursor' (a cursor already says where to read)",
                                 field=name)
    elif "limit" in query:
        raise BadRequest("'limit' goes with 'cursor'; around a moment use 'before' and 'after'", field="limit")


def parse_request(query: QueryParams) -> ReplayWindow | CursorRequest:
    """What a replay query string asks for: a window around a moment, or a page from a cursor."""
    check_parameters(query)
    if "cursor" not in query:
        return parse_window(query)
    return CursorRequest(query["cursor"], _side(query.get("limit", ""), "limit"))


def parse_window(query: QueryParams) -> ReplayWindow:
    """The replay window a query string asks for."""
    check_parameters(query)
    raw = query.get("around_timestamp", "")
    if raw == "":
        raise ValidationFailed("'around_timestamp' is required: epoch milliseconds or an ISO 8601 time",
                               field="around_timestamp")
    return ReplayWindow(parse_timestamp(raw), _side(query.get("before", ""), "before"),
                        _side(query.get("after", ""), "after"))


def _side(raw: str, name: str) -> int:
    if raw == "":
        return DEFAULT_SIDE
    if not raw.isascii() or not raw.isdigit() or len(raw) > 3 or int(raw) > MAX_SIDE:
        raise ValidationFailed(f"'{name}' must be a whole number from 0 to {MAX_SIDE}", field=name)
    return int(raw)


def parse_timestamp(raw: str) -> int:
    """Epoch milliseconds, or an ISO 8601 time (UTC when it has no offset), as epoch milliseconds."""
    if raw.isascii() and raw.isdigit():
        ms = int(raw) if len(raw) <= len(str(MAX_TIMESTAMP_MS)) else -1
    else:
        try:
            when = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise ValidationFailed("'around_timestamp' must be epoch milliseconds or an ISO 8601 time "
                                   "such as 2026-03-01T20:15:00Z (a + in an offset is %2B in a URL)",
                                   field="around_timestamp") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        try:
            ms = (when - EPOCH) // dt.timedelta(milliseconds=1)
        except OverflowError:  # an offset that moves year 1 or 9999 out of range
            ms = -1
    if not 0 <= ms <= MAX_TIMESTAMP_MS:
        raise ValidationFailed("'around_timestamp' must lie between 1970 and the year 9999",
                               field="around_timestamp")
    return ms


def message_json(m: ArchivedMessage) -> dict[str, Any]:
    """A message as replay shows it."""
    return {"message_id": m.message_id, "user_id": m.user_id, "username": m.username, "text": m.text,
            "emotes": [{"emote_id": e.emote_id, "start": e.start, "end": e.end} for e in m.emotes],
            "badges": list(m.badges), "sent_at_ms": m.sent_at_ms}


def _cursor_json(cursor: Cursor | None) -> str | None:
    return None if cursor is None else encode_cursor(cursor)


async def replay(request: Request) -> JSONResponse:
    svc = services(request)
    asked = parse_request(request.query_params)
    channel = await find_channel(svc, request.path_params["room"])
    key: Key
    if isinstance(asked, CursorRequest):
        try:
            cursor = decode_cursor(asked.cursor, channel.id)
        except CursorError as exc:
            raise BadRequest(str(exc), field="cursor") from None
        key, (before, after) = cursor.key, cursor_sides(cursor.direction, asked.limit)
    else:
        key, before, after = pivot(asked.around_ms), asked.before, asked.after
    store = svc.chat_history
    if store is None:
        raise Unavailable("chat history is not open on this gateway", reason="history_unavailable")
    try:
        window = await store.window(channel.id, key, *fetch_sizes(before, after))
    except HistoryError as exc:
        raise Unavailable(f"chat history did not answer: {exc}", reason="history_unavailable") from exc
    page: Page = page_of(channel.id, key, window, before, after)
    body: dict[str, Any] = {"channel_id": channel.id}
    if isinstance(asked, ReplayWindow):
        body["around_timestamp"] = asked.around_ms
    body.update(messages=[message_json(m) for m in page.messages], prev_cursor=_cursor_json(page.prev_cursor),
                next_cursor=_cursor_json(page.next_cursor))
    return JSONResponse(body)


routes = [Route("/v1/chat/{room}/messages", replay, methods=["GET"])]

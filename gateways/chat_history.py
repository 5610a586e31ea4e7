"""Chat replay: the messages of a channel's chat around a moment, from the chat history store.

    GET /v1/chat/{room}/messages?around_timestamp=T&before=N&after=M

``room`` is a channel id or name.  ``T`` (required) is epoch milliseconds or
an ISO 8601 time (``2026-03-01T20:15:00Z``; without an offset it is UTC).
The answer holds up to ``before`` messages sent at or before ``T`` and up to
``after`` sent after it (each 50 unless given, at most 200), oldest first, as
a VOD player needs them to show the chat beside the video:

    {"channel_id": ..., "around_timestamp": T_ms,
     "messages": [{"message_id", "user_id", "username", "text", "emotes": [{"emote_id", "start", "end"}],
                   "badges", "sent_at_ms"}, ...]}

Deleted messages are never in it.  An unknown or repeated parameter is a 400,
a value that cannot be read a 422, both naming the parameter.  The store is
opened in the gateway's lifespan (gateways/services.py) and reached as
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
from views.chat_history.errors import HistoryError
from views.chat_history.store import ArchivedMessage

DEFAULT_SIDE, MAX_SIDE = 50, 200
PARAMETERS = ("around_timestamp", "before", "after")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_TIMESTAMP_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last ISO 8601 four-digit-year instant


@dataclass(frozen=True)
class ReplayWindow:
    """A replay request: around when and how many messages on each side."""

    around_ms: int
    before: int
    after: int


def parse_window(query: QueryParams) -> ReplayWindow:
    """The replay window a query string asks for."""
    for name in sorted(set(query.keys())):
        if name not in PARAMETERS:
            raise BadRequest(f"unknown parameter '{name}' (allowed: {', '.join(PARAMETERS)})", field=name)
        if len(query.getlist(name)) > 1:
            raise BadRequest(f"parameter '{name}' is given more than once", field=name)
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


async def replay(request: Request) -> JSONResponse:
    svc = services(request)
    window = parse_window(request.query_params)
    channel = await find_channel(svc, request.path_params["room"])
    store = svc.chat_history
    if store is None:
        raise Unavailable("chat history is not open on this gateway", reason="history_unavailable")
    try:
        messages = await store.around(channel.id, window.around_ms, window.before, window.after)
    except HistoryError as exc:
        raise Unavailable(f"chat history did not answer: {exc}", reason="history_unavailable") from exc
    return JSONResponse({"channel_id": channel.id, "around_timestamp": window.around_ms,
                         "messages": [message_json(m) for m in messages]})


routes = [Route("/v1/chat/{room}/messages", replay, methods=["GET"])]

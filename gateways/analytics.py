"""Creator analytics over the analytics store (views/analytics/report.py says what each number is).

    GET /v1/streams/{stream_id}/analytics[?format=csv]                  one broadcast, from its start to its end
    GET /v1/channels/{channel_id}/analytics?from=&to=[&format=csv]      a channel over a time range

Only the channel's owner may read them (403 for anyone else, 401 without a
token).  ``from`` and ``to`` are epoch milliseconds or ISO 8601 times (a
time without a zone is UTC); ``to`` defaults to now and ``from`` to 7 days
before ``to``.  A range that runs backwards or spans more than a year is a
400.  A stream's range is its start (or configuration) to its end, or now
while it is live; its viewer and ingest numbers are the stream's own, while
chat, follows and subscriptions are the channel's within that range.
``format=csv`` answers ``text/csv``: the per-minute series, one row per
minute (columns: ``views/analytics/report.py``, ``CSV_COLUMNS``).
An analytics store that does not answer is a 503 with ``reason:
analytics_unavailable``.  A report costs the store real work (a year of
heartbeats at most), so each signed-in user may ask
``GLASSCAST_ANALYTICS_REPORTS_PER_MINUTE`` (120) times a minute across every
gateway; past that, 429 with Retry-After.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateways.channels import find_channel
from gateways.chat.ratelimit import RateLimiter
from gateways.errors import BadRequest, Forbidden, NotFound, TooManyRequests, Unavailable
from gateways.services import Services, services
from views.analytics.errors import AnalyticsError, QueryRefused
from views.analytics.report import AnalyticsReport, Range, build_report, to_csv
from views.channels import ChannelView

DAY_MS = 86_400_000
MAX_RANGE_MS = 366 * DAY_MS  # "a year", leap years included
DEFAULT_RANGE_MS = 7 * DAY_MS
REPORT_WINDOW_MS = 60_000


class ReportLimiter(RateLimiter):
    """Analytics reports per user in a sliding minute."""

    def __init__(self, svc: Services) -> None:
        super().__init__(svc.redis, svc.settings.valkey.key_prefix)
        self.prefix = f"{svc.settings.valkey.key_prefix}analytics:rate:"


def parse_time(name: str, raw: str) -> int:
    """Epoch milliseconds from ``raw``: an integer (ms) or an ISO 8601 time (UTC when it names no zone)."""
    text = raw.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name}: expected epoch milliseconds or an ISO 8601 time, not {raw!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def parse_range(from_raw: str | None, to_raw: str | None, now_ms: int) -> tuple[int, int]:
    """``(from_ms, to_ms)`` from the query, with the defaults and limits of the module docstring."""
    to_ms = parse_time("to", to_raw) if to_raw else now_ms
    from_ms = parse_time("from", from_raw) if from_raw else to_ms - DEFAULT_RANGE_MS
    check_range(from_ms, to_ms)
    return from_ms, to_ms


def check_range(from_ms: int, to_ms: int) -> None:
    if to_ms <= from_ms:
        raise BadRequest(f"the range runs backwards or is empty: from {from_ms} is not before to {to_ms}",
                         reason="bad_range")
    if to_ms - from_ms > MAX_RANGE_MS:
        raise BadRequest("the range spans more than a year: ask for at most 366 days at a time", reason="bad_range")


async def _owner(svc: Services, request: Request, channel: ChannelView) -> None:
    principal = await svc.user_principal(request)
    limit = svc.settings.analytics.reports_per_minute
    allowed, wait_ms = await ReportLimiter(svc).allow("reports", principal.user_id, svc.now_ms(), REPORT_WINDOW_MS,
                                                      limit, uuid.uuid4().hex)
    if not allowed:
        wait_s = max(1, math.ceil(wait_ms / 1000))
        raise TooManyRequests(f"too many analytics requests: at most {limit} a minute; "
                              f"try again in {wait_s} s", retry_after_s=wait_s)
    if principal.user_id != channel.owner_user_id:
        raise Forbidden("only the channel's owner may read its analytics")


async def _answer(svc: Services, request: Request, rng: Range) -> Response:
    try:
        report: AnalyticsReport = await build_report(svc.analytics, rng, svc.settings.viewers.heartbeat_interval_s)
    except QueryRefused as exc:  # the tables are missing or the store disagrees with the SQL: ours, not theirs
        raise RuntimeError(f"analytics query refused: {exc}") from exc
    except AnalyticsError as exc:
        raise Unavailable("the analytics store did not answer", reason="analytics_unavailable",
                          retry_after_s=2) from exc
    headers = {"Cache-Control": "private, no-store"}
    if request.query_params.get("format", "json") == "csv":
        name = f"analytics-{rng.stream_id or rng.channel_id}.csv"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return Response(to_csv(report), media_type="text/csv; charset=utf-8", headers=headers)
    return JSONResponse(report.to_json(), headers=headers)


def _format(request: Request) -> None:
    fmt = request.query_params.get("format", "json")
    if fmt not in ("json", "csv"):
        raise BadRequest(f"format: expected json or csv, not {fmt!r}")


async def channel_analytics(request: Request) -> Response:
    svc = services(request)
    _format(request)
    channel = await find_channel(svc, request.path_params["channel_id"])
    await _owner(svc, request, channel)
    from_ms, to_ms = parse_range(request.query_params.get("from"), request.query_params.get("to"), svc.now_ms())
    return await _answer(svc, request, Range(channel.id, None, from_ms, to_ms))


async def stream_analytics(request: Request) -> Response:
    svc = services(request)
    _format(request)
    stream = await svc.views.get_stream(request.path_params["stream_id"])
    if stream is None:
        raise NotFound(f"stream '{request.path_params['stream_id']}' does not exist")
    channel = await svc.views.get_channel(stream.channel_id)
    if channel is None:
        raise NotFound(f"the channel of stream '{stream.id}' does not exist")
    await _owner(svc, request, channel)
    start = stream.started_at_ms or stream.configured_at_ms or svc.now_ms()
    end = stream.ended_at_ms if stream.ended_at_ms is not None else svc.now_ms()
    from_ms, to_ms = start, max(end + 1, start + 1)
    if to_ms - from_ms > MAX_RANGE_MS:
        from_ms = to_ms - MAX_RANGE_MS
    return await _answer(svc, request, Range(channel.id, stream.id, from_ms, to_ms))


routes = [
    Route("/v1/streams/{stream_id}/analytics", stream_analytics, methods=["GET"]),
    Route("/v1/channels/{channel_id}/analytics", channel_analytics, methods=["GET"]),
]

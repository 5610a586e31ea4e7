"""Viewer heartbeats: ``POST /v1/streams/{stream_id}/heartbeat`` answers 204 and produces a Heartbeat.

A player beats about every 30 s (docs/ARCHITECTURE.md, "Control plane") with its session
id and playback health.  The route does no counting: it validates, fills in
the channel from the stream view and queues the event without waiting for the
broker's acknowledgement (librdkafka batches it within ``linger.ms``); the
processors turn heartbeats into viewer counts (processors/viewers_agent.py).

A beat counts only for a session the playback endpoint issued
(gateways/viewer_sessions.py): it carries ``session_id`` and ``token``, the
playback token that session came with, and the token must be valid for the
stream's channel and name that session as issued (403 otherwise).  A session
gets one accepted beat per ``viewers.heartbeat_interval_s`` on a gateway,
less a slack for timer jitter; an earlier one is 429 with Retry-After and
produces nothing.

It has to be cheap (a popular channel means thousands of beats a second per
gateway), so the stream -> channel lookup comes from a small in-process cache
and the token check is an HMAC with no Valkey round trip, skipped when the
session's last accepted beat carried the same token
(gateways/heartbeat_intake.py, ``Services.heartbeats``).  The route is a plain ASGI app
(no Request or Response objects on the 204 path), matched ahead of the rest
(gateways/middleware.py, ``HotRoutes``).  A bearer token is optional: with
one the beat carries the viewer's user id, and a bad one is refused (401).
Beats for an ended stream (VOD playback) are accepted too: counts are kept
per channel and reported only while the channel is live.
"""

from __future__ import annotations

import math
import time
from typing import Any, TypedDict

from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateways import validation as v
from gateways.channels import UUID_RE
from gateways.errors import (
    ApiError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unavailable,
    ValidationFailed,
    api_error_handler,
)
from gateways.heartbeat_intake import Admitted, SessionGate, retry_after_s, too_soon_s, vouches
from gateways.playback_token import TokenRefused, verify_session
from gateways.services import Services
from schemas.records.viewer import Heartbeat, PlaybackKind
from topics.errors import DeliveryError

FIELDS = {"session_id", "token", "rendition", "buffer_health_s", "bitrate_kbps", "latency_ms", "dropped_frames",
          "channel_id", "clip_id"}
MAX_SESSION_ID_LENGTH = 64
MAX_TOKEN_LENGTH = 1024
MAX_RENDITION_LENGTH = 32
MAX_BUFFER_HEALTH_S = 3600.0  # no player buffers an hour ahead; larger is a bug, not a measurement
INT_MAX = 2**31 - 1  # Avro "int" is 32-bit signed (Avro 1.11.1, "Primitive Types")


def _number(data: dict[str, Any], name: str, low: float, high: float) -> float:
    value = data.get(name)
    if value is None:
        raise ValidationFailed(f"'{name}' is required", field=name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationFailed(f"'{name}' must be a number", field=name)
    if not low <= value <= high:
        raise ValidationFailed(f"'{name}' must be between {low:g} and {high:g}", field=name)
    return float(value)


def _integer(data: dict[str, Any], name: str, required: bool = True) -> int | None:
    value = data.get(name)
    if value is None:
        if required:
            raise ValidationFailed(f"'{name}' is required", field=name)
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(f"'{name}' must be an integer", field=name)
    if not 0 <= value <= INT_MAX:
        raise ValidationFailed(f"'{name}' must be between 0 and {INT_MAX}", field=name)
    return value


class HeartbeatFields(TypedDict):
    """What the player reports in a beat: the Heartbeat record's own fields."""

    session_id: str
    rendition: str
    buffer_health_s: float
    bitrate_kbps: int
    latency_ms: int | None
    dropped_frames: int | None
    clip_id: str | None


def heartbeat_fields(data: dict[str, Any]) -> HeartbeatFields:
    """The player-reported fields of a Heartbeat, validated (pure)."""
    v.only(data, FIELDS)
    session_id = v.string(data, "session_id", max_length=MAX_SESSION_ID_LENGTH)
    if not session_id:
        raise ValidationFailed("'session_id' must not be empty", field="session_id")
    rendition = v.string(data, "rendition", max_length=MAX_RENDITION_LENGTH)
    assert rendition is not None  # required: v.string raises when it is missing
    v.string(data, "channel_id", required=False, max_length=36)
    clip_id = v.string(data, "clip_id", required=False, max_length=36)
    if clip_id is not None and not UUID_RE.match(clip_id):
        raise ValidationFailed("'clip_id' must be a clip id (a UUID)", field="clip_id")
    bitrate = _integer(data, "bitrate_kbps")
    assert bitrate is not None  # required
    return {"session_id": session_id, "rendition": rendition,
            "buffer_health_s": _number(data, "buffer_health_s", 0.0, MAX_BUFFER_HEALTH_S),
            "bitrate_kbps": bitrate,
            "latency_ms": _integer(data, "latency_ms", required=False),
            "dropped_frames": _integer(data, "dropped_frames", required=False),
            "clip_id": clip_id}


def _headers(scope: Scope) -> tuple[bytes | None, bytes | None]:
    """(Content-Length, Authorization) from the raw ASGI headers."""
    length = authorization = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = value
        elif name == b"authorization":
            authorization = value
    return length, authorization


async def _body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    message = await receive()
    body: bytes = message.get("body", b"")
    while message.get("more_body", False):
        message = await receive()
        body += message.get("body", b"")
        if len(body) > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
    return body


def beat_token(data: dict[str, Any]) -> str | None:
    """The playback token a beat carries (its checks are ``admit_session``'s)."""
    return v.string(data, "token", required=False, max_length=MAX_TOKEN_LENGTH)


def admit_session(gate: SessionGate, secret: bytes, interval_s: float, session_id: str, token: str | None,
                  channel_id: str, now_s: float, wall_s: float) -> Admitted:
    """The beat's session checked against its token and its last beat; raises 403 or 429 to refuse it.

    ``now_s`` is monotonic (the interval), ``wall_s`` the wall clock (the token's expiry).  No I/O.
    """
    last = gate.last(session_id)
    if last is not None and token is not None and vouches(last, token, channel_id, wall_s):
        expires_at_s = last[3]
    else:
        try:
            expires_at_s = verify_session(secret, token, channel_id, session_id, int(wall_s))
        except TokenRefused as exc:
            raise Forbidden(str(exc), reason="playback_token") from None
    wait_s = too_soon_s(last[0], now_s, interval_s) if last is not None else 0.0
    if wait_s > 0:
        raise TooManyRequests(f"one heartbeat per session every {interval_s:g} s; this one is early",
                              retry_after_s(wait_s), reason="heartbeat_too_soon")
    assert token is not None  # verify() refuses a missing one
    return now_s, token, channel_id, expires_at_s


async def accept_heartbeat(scope: Scope, receive: Receive) -> None:
    """Validate one beat and queue its Heartbeat event; raises ``ApiError`` to refuse it."""
    svc: Services = scope["app"].state.services
    stream_id = str(scope["path_params"]["stream_id"]).lower()
    length, authorization = _headers(scope)
    data = v.parse_object(await _body(receive, length, svc.settings.gateway.max_body_bytes))
    fields = heartbeat_fields(data)
    token = beat_token(data)
    user_id = svc.principal(Request(scope)).user_id if authorization is not None else None
    intake = svc.heartbeats
    found, channel_id = intake.streams.get(stream_id, time.monotonic())
    if not found:
        channel_id = await intake.streams.lookup(svc.views, stream_id)
    if channel_id is None:
        raise NotFound(f"stream {stream_id} does not exist")
    if data.get("channel_id") not in (None, channel_id):
        raise ValidationFailed(f"'channel_id' is not the channel of stream {stream_id}", field="channel_id")
    # No await from here on: two copies of one beat cannot both pass the gate.
    interval_s = svc.settings.viewers.heartbeat_interval_s
    admitted = admit_session(intake.sessions, svc.playback_secret, interval_s, fields["session_id"], token,
                             channel_id, time.monotonic(), svc.clock())
    # What the player plays: a clip when it says so, the video once the broadcast has ended, else live.
    playback: PlaybackKind = "CLIP" if fields["clip_id"] else "VOD" if intake.streams.ended(stream_id) else "LIVE"
    try:
        svc.producer.produce(Heartbeat(event_id=intake.event_id(), occurred_at=svc.now_ms(), channel_id=channel_id,
                                       stream_id=stream_id, user_id=user_id, playback=playback, **fields),
                             channel_id)
    except DeliveryError as exc:
        raise Unavailable(f"the event log did not take the heartbeat: {exc}", reason="log_unavailable") from exc
    intake.sessions.admit(fields["session_id"], admitted, interval_s)


class HeartbeatEndpoint:
    """The route as a plain ASGI app: no Request or Response objects on the 204 path."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await accept_heartbeat(scope, receive)
        except ApiError as exc:
            response = await api_error_handler(Request(scope), exc)
            await response(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


heartbeat = HeartbeatEndpoint()

routes = [
    Route("/v1/streams/{stream_id:uuid}/heartbeat", heartbeat, methods=["POST"]),
]

"""Viewer heartbeats: ``POST /v1/streams/{stream_id}/heartbeat`` answers 204 and produces a Heartbeat.

A player beats about every 30 s (DESIGN.md, "Control plane") with its session
id and playback health.  The route does no counting: it validates, fills in
the channel from the stream view and queues the event without waiting for the
broker's acknowledgement (librdkafka batches it within ``linger.ms``); the
processors turn heartbeats into viewer counts (processors/viewers_agent.py).

It has to be cheap (a popular channel means thousands of beats a second per
gateway), so the stream -> channel lookup is kept in a small in-process cache
for a few seconds instead of costing a Valkey round trip per beat; concurrent
misses for one stream share a single lookup.  The route is a plain ASGI app
(no Request or Response objects on the 204 path), matched ahead of the rest
(gateways/middleware.py, ``HotRoutes``).  A bearer token is optional: with
one the beat carries the viewer's user id, and a bad one is refused (401).
Beats for an ended stream (VOD playback) are accepted too: counts are kept
per channel and reported only while the channel is live.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import OrderedDict
from typing import Any

from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateways import validation as v
from gateways.errors import ApiError, NotFound, PayloadTooLarge, Unavailable, ValidationFailed, api_error_handler
from gateways.services import Services
from topics.errors import DeliveryError

HEARTBEAT = "glasscast.viewer.Heartbeat"
FIELDS = {"session_id", "rendition", "buffer_health_s", "bitrate_kbps", "latency_ms", "dropped_frames", "channel_id"}
MAX_SESSION_ID_LENGTH = 64
MAX_RENDITION_LENGTH = 32
MAX_BUFFER_HEALTH_S = 3600.0  # no player buffers an hour ahead; larger is a bug, not a measurement
INT_MAX = 2**31 - 1  # Avro "int" is 32-bit signed (Avro 1.11.1, "Primitive Types")
STREAM_CACHE_TTL_S = 5.0  # a stream's channel never changes; expiry only bounds memory and view rebuilds
UNKNOWN_STREAM_TTL_S = 1.0  # a stream the view does not have yet may appear any moment
STREAM_CACHE_SIZE = 10_000
INTAKE_KEY = "heartbeats.intake"
# RFC 9562 section 4: the version nibble (bits 48-51 from the left) and the variant bits (64-65).
UUID_VERSION_VARIANT_MASK = (0xF << 76) | (0x3 << 62)
UUID_V4_BITS = (0x4 << 76) | (0x2 << 62)


class StreamChannels:
    """A bounded, expiring map of stream id -> channel id (None: the stream is unknown)."""

    def __init__(self, maxsize: int = STREAM_CACHE_SIZE) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[str | None]] = {}

    def get(self, stream_id: str, now_s: float) -> tuple[bool, str | None]:
        """(found, channel id) for a fresh entry; (False, None) when absent or expired."""
        entry = self._entries.get(stream_id)
        if entry is None or entry[0] <= now_s:
            return False, None
        return True, entry[1]

    def put(self, stream_id: str, channel_id: str | None, now_s: float) -> None:
        ttl = STREAM_CACHE_TTL_S if channel_id is not None else UNKNOWN_STREAM_TTL_S
        self._entries[stream_id] = (now_s + ttl, channel_id)
        self._entries.move_to_end(stream_id)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)  # the oldest insertion goes first

    async def lookup(self, svc: Services, stream_id: str) -> str | None:
        """The stream's channel, from the cache or (once for concurrent callers) the stream view."""
        found, channel_id = self.get(stream_id, time.monotonic())
        if found:
            return channel_id
        pending = self._pending.get(stream_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = future
        try:
            stream = await svc.views.get_stream(stream_id)
            channel_id = stream.channel_id if stream is not None else None
            self.put(stream_id, channel_id, time.monotonic())
            future.set_result(channel_id)
            return channel_id
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so a future nobody else awaited is not logged
            raise
        finally:
            del self._pending[stream_id]


class Intake:
    """What the route keeps per gateway app: the stream cache and an event-id generator."""

    def __init__(self) -> None:
        self.streams = StreamChannels()
        # Event ids need uniqueness, not secrecy: a seeded PRNG spares a getrandom()
        # system call per beat, which also releases the GIL to the producer's threads.
        self._random = random.Random()

    def event_id(self) -> str:
        """A random (version 4, RFC 9562 5.4) UUID in its canonical text form."""
        bits = self._random.getrandbits(128) & ~UUID_VERSION_VARIANT_MASK | UUID_V4_BITS
        h = f"{bits:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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


def heartbeat_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The player-reported fields of a Heartbeat, validated (pure)."""
    v.only(data, FIELDS)
    session_id = v.string(data, "session_id", max_length=MAX_SESSION_ID_LENGTH)
    if not session_id:
        raise ValidationFailed("'session_id' must not be empty", field="session_id")
    rendition = v.string(data, "rendition", max_length=MAX_RENDITION_LENGTH)
    v.string(data, "channel_id", required=False, max_length=36)
    return {"session_id": session_id, "rendition": rendition,
            "buffer_health_s": _number(data, "buffer_health_s", 0.0, MAX_BUFFER_HEALTH_S),
            "bitrate_kbps": _integer(data, "bitrate_kbps"),
            "latency_ms": _integer(data, "latency_ms", required=False),
            "dropped_frames": _integer(data, "dropped_frames", required=False)}


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


async def accept_heartbeat(scope: Scope, receive: Receive) -> None:
    """Validate one beat and queue its Heartbeat event; raises ``ApiError`` to refuse it."""
    svc: Services = scope["app"].state.services
    stream_id = str(scope["path_params"]["stream_id"]).lower()
    length, authorization = _headers(scope)
    data = v.parse_object(await _body(receive, length, svc.settings.gateway.max_body_bytes))
    fields = heartbeat_fields(data)
    user_id = svc.principal(Request(scope)).user_id if authorization is not None else None
    intake = svc.extra.get(INTAKE_KEY)
    if intake is None:
        intake = svc.extra[INTAKE_KEY] = Intake()
    found, channel_id = intake.streams.get(stream_id, time.monotonic())
    if not found:
        channel_id = await intake.streams.lookup(svc, stream_id)
    if channel_id is None:
        raise NotFound(f"stream {stream_id} does not exist")
    if data.get("channel_id") not in (None, channel_id):
        raise ValidationFailed(f"'channel_id' is not the channel of stream {stream_id}", field="channel_id")
    try:
        svc.producer.produce(HEARTBEAT, channel_id, {
            "event_id": intake.event_id(), "occurred_at": svc.now_ms(), "channel_id": channel_id,
            "stream_id": stream_id, "user_id": user_id, **fields})
    except DeliveryError as exc:
        raise Unavailable(f"the event log did not take the heartbeat: {exc}") from exc


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

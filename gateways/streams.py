"""The stream lifecycle API: configure a broadcast, update it while live, end it, read it.

    POST  /v1/streams               set up the next broadcast (title, category, tags): status configured
    GET   /v1/streams/{id}          a stream's status and metadata, with its viewer count
    PATCH /v1/streams/{id}          change title, category or tags of a configured or live stream
    POST  /v1/streams/{id}/end      end it: the VOD is available at once, the ingest drops the publisher
    GET   /v1/streams/{id}/health   the latest ingest health of a live stream (its owner only)

Every change is an event on ``stream.lifecycle`` (keyed by channel, like the
ingest's own lifecycle events); the answer waits, bounded, until the stream
view shows it.  The ingest adopts a configured stream's id, title and tags
when the channel's publisher connects (media/ingest/session.py).
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateways import validation as v
from gateways.auth import Principal
from gateways.channels import find_channel
from gateways.errors import Conflict, Forbidden, NotFound, ValidationFailed
from gateways.services import Services, json_body, services
from schemas.records.stream import StreamConfigured, StreamEnded, StreamUpdated
from views.channels import ChannelView
from views.streams import StreamView
from views.viewers import viewers_key

# What the creator dashboard shows from the latest StreamHealth (schemas/stream/StreamHealth.avsc).
HEALTH_FIELDS = ("status", "ingest_bitrate_kbps", "video_bitrate_kbps", "audio_bitrate_kbps", "fps",
                 "keyframe_interval_ms", "width", "height", "video_codec", "audio_codec", "dropped_frames",
                 "late_frames", "bytes_received")


async def _stream(svc: Services, request: Request) -> StreamView:
    stream_id = str(request.path_params["stream_id"])
    stream = await svc.views.get_stream(stream_id)
    if stream is None:
        raise NotFound(f"stream {stream_id} does not exist")
    return stream


async def _owned(svc: Services, request: Request) -> tuple[Principal, ChannelView, StreamView]:
    principal = await svc.user_principal(request)
    stream = await _stream(svc, request)
    channel = await svc.views.get_channel(stream.channel_id)
    if channel is None or channel.owner_user_id != principal.user_id:
        raise Forbidden("only the channel's owner may do this")
    return principal, channel, stream


async def stream_json(svc: Services, stream: StreamView, channel: ChannelView | None = None) -> dict[str, Any]:
    """A stream as the API shows it: the view, its channel's name, viewers while live, its media URLs."""
    channel = channel or await svc.views.get_channel(stream.channel_id)
    viewers = await svc.redis.get(viewers_key(svc.settings.valkey.key_prefix, stream.channel_id))
    return {**stream.public(), "channel_name": channel.name if channel is not None else None,
            "viewers": int(viewers) if stream.live and viewers is not None else 0,
            "thumbnail_url": f"/thumbs/{stream.id}.jpg" if stream.started_at_ms is not None else None,
            "playback_url": f"/v1/streams/{stream.id}/playback"}


async def _seen(svc: Services, stream_id: str, offset: int) -> StreamView | None:
    """Wait until the stream view has applied the event at ``offset``."""
    async def caught_up() -> bool:
        stream = await svc.views.get_stream(stream_id)
        return stream is not None and stream.seq >= offset
    await svc.wait_for(caught_up)
    return await svc.views.get_stream(stream_id)


def _metadata(data: dict[str, Any]) -> tuple[str | None, str | None, list[str] | None]:
    title = v.title(data)
    if title == "":
        raise ValidationFailed("'title' must not be empty", field="title")
    return title, v.category(data), v.tags(data)


async def create_stream(request: Request) -> JSONResponse:
    svc = services(request)
    principal = await svc.user_principal(request)
    data = await json_body(request)
    v.only(data, {"channel_id", "title", "category", "tags"})
    channel_ref = v.string(data, "channel_id", max_length=64)
    assert channel_ref is not None
    channel = await find_channel(svc, channel_ref)
    if channel.owner_user_id != principal.user_id:
        raise Forbidden("only the channel's owner may set up its streams")
    live = await svc.views.live_stream_of(channel.id)
    if live is not None:
        raise Conflict(f"channel is live as stream {live.id}; update that stream with PATCH /v1/streams/{live.id}",
                       stream_id=live.id)
    configured = await svc.views.configured_stream_of(channel.id)
    if configured is not None:
        raise Conflict(f"channel already has stream {configured.id} set up; update it with PATCH "
                       f"/v1/streams/{configured.id} or end it first", stream_id=configured.id)
    title, category, tags = _metadata(data)
    stream_id = str(uuid.uuid4())
    ack = await svc.emit(StreamConfigured(
        occurred_at=svc.now_ms(), stream_id=stream_id, channel_id=channel.id,
        configured_by_user_id=principal.user_id, title=title or channel.title,
        category=channel.category if category is None else (category or None),
        tags=tuple(channel.tags if tags is None else tags)), channel.id)
    stream = await _seen(svc, stream_id, ack.offset)
    if stream is None:
        raise NotFound(f"stream {stream_id} is not visible yet; retry GET /v1/streams/{stream_id}")
    return JSONResponse(await stream_json(svc, stream, channel), status_code=201,
                        headers={"Location": f"/v1/streams/{stream_id}"})


async def get_stream(request: Request) -> JSONResponse:
    svc = services(request)
    stream = await _stream(svc, request)
    return JSONResponse(await stream_json(svc, stream))


async def update_stream(request: Request) -> JSONResponse:
    svc = services(request)
    principal, channel, stream = await _owned(svc, request)
    data = await json_body(request)
    v.only(data, {"title", "category", "tags"})
    if not data:
        raise ValidationFailed("nothing to update: give title, category or tags")
    if stream.ended:
        raise Conflict(f"stream {stream.id} has ended; set up a new one with POST /v1/streams")
    title, category, tags = _metadata(data)
    ack = await svc.emit(StreamUpdated(
        occurred_at=svc.now_ms(), stream_id=stream.id, channel_id=channel.id, updated_by_user_id=principal.user_id,
        title=title, category=category, tags=None if tags is None else tuple(tags)), channel.id)
    updated = await _seen(svc, stream.id, ack.offset)
    return JSONResponse(await stream_json(svc, updated or stream, channel))


async def end_stream(request: Request) -> JSONResponse:
    svc = services(request)
    principal, channel, stream = await _owned(svc, request)
    if stream.ended:
        return JSONResponse(await stream_json(svc, stream, channel))  # ending twice is harmless
    now = svc.now_ms()
    started = stream.started_at_ms if stream.started_at_ms is not None else now
    ack = await svc.emit(StreamEnded(
        occurred_at=now, stream_id=stream.id, channel_id=channel.id, started_at=started,
        duration_ms=max(0, now - started), reason="ENDED_BY_CREATOR", last_gop_seq=None,
        ended_by_user_id=principal.user_id), channel.id)
    ended = await _seen(svc, stream.id, ack.offset)
    return JSONResponse(await stream_json(svc, ended or stream, channel))


async def stream_health(request: Request) -> JSONResponse:
    svc = services(request)
    _, channel, stream = await _owned(svc, request)
    sample = await svc.views.stream_health(stream.id) if stream.live else None
    body = await stream_json(svc, stream, channel)
    health = {k: (sample or {}).get(k) for k in HEALTH_FIELDS}
    return JSONResponse({"stream_id": stream.id, "stream_status": stream.status, "viewers": body["viewers"],
                         "at_ms": sample["occurred_at"] if sample else None, **health},
                        headers={"Cache-Control": "no-store"})


routes = [
    Route("/v1/streams", create_stream, methods=["POST"]),
    Route("/v1/streams/{stream_id:uuid}", get_stream, methods=["GET"]),
    Route("/v1/streams/{stream_id:uuid}", update_stream, methods=["PATCH"]),
    Route("/v1/streams/{stream_id:uuid}/end", end_stream, methods=["POST"]),
    Route("/v1/streams/{stream_id:uuid}/health", stream_health, methods=["GET"]),
]

"""Channels: create, read, update, rotate the stream key.

The stream key is returned once, at creation and at rotation; events and
views carry only its SHA-256, which is what the RTMP ingest looks up.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateways import validation as v
from gateways.auth import Principal, hash_stream_key, new_stream_key
from gateways.errors import Conflict, Forbidden, NotFound, ValidationFailed
from gateways.services import Services, json_body, services
from processors.views.channels import ChannelView

CHANNEL_CREATED = "glasscast.channel.ChannelCreated"
CHANNEL_UPDATED = "glasscast.channel.ChannelUpdated"
STREAM_KEY_ROTATED = "glasscast.channel.StreamKeyRotated"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


async def _find(svc: Services, ref: str) -> ChannelView:
    """A channel by id, or by name for readable URLs."""
    channel = await (svc.views.get_channel(ref) if UUID_RE.match(ref) else svc.views.get_channel_by_name(ref))
    if channel is None:
        raise NotFound(f"channel '{ref}' does not exist")
    return channel


async def _owned(svc: Services, request: Request) -> tuple[Principal, ChannelView]:
    principal = svc.principal(request)
    channel = await _find(svc, request.path_params["channel_id"])
    if channel.owner_user_id != principal.user_id:
        raise Forbidden("only the channel's owner may do this")
    return principal, channel


async def _seen(svc: Services, channel_id: str, offset: int) -> ChannelView | None:
    """Wait until the channel view has applied the event at ``offset``."""
    async def caught_up() -> bool:
        channel = await svc.views.get_channel(channel_id)
        return channel is not None and channel.seq >= offset
    await svc.wait_for(caught_up)
    return await svc.views.get_channel(channel_id)


async def create_channel(request: Request) -> JSONResponse:
    svc = services(request)
    principal = svc.principal(request)
    data = await json_body(request)
    v.only(data, {"name", "title", "category", "tags"})
    name = v.name(data, "name")
    title = v.title(data) or f"{name}'s stream"
    category = v.category(data) or None
    tags = v.tags(data) or []
    channel_id = str(uuid.uuid4())
    if not await svc.views.claim("channel", name, channel_id):
        raise Conflict(f"channel name '{name}' is taken", field="name")
    stream_key = new_stream_key()
    try:
        ack = await svc.emit(CHANNEL_CREATED, channel_id, {
            **svc.envelope(), "channel_id": channel_id, "owner_user_id": principal.user_id, "name": name,
            "title": title, "category": category, "tags": tags, "stream_key_hash": hash_stream_key(stream_key)})
    except BaseException:
        await svc.views.release("channel", name, channel_id)
        raise
    await _seen(svc, channel_id, ack.offset)
    body: dict[str, Any] = {"id": channel_id, "name": name, "title": title, "category": category,
                            "tags": tags, "stream_key": stream_key, "rtmp_url": svc.settings.rtmp_url}
    return JSONResponse(body, status_code=201, headers={"Location": f"/v1/channels/{channel_id}"})


async def get_channel(request: Request) -> JSONResponse:
    svc = services(request)
    channel = await _find(svc, request.path_params["channel_id"])
    return JSONResponse(channel.public())


async def update_channel(request: Request) -> JSONResponse:
    svc = services(request)
    principal, channel = await _owned(svc, request)
    data = await json_body(request)
    v.only(data, {"title", "category", "tags"})
    if not data:
        raise ValidationFailed("nothing to update: give title, category or tags")
    title = v.title(data)
    if title == "":
        raise ValidationFailed("'title' must not be empty", field="title")
    category = v.category(data)
    tags = v.tags(data)
    ack = await svc.emit(CHANNEL_UPDATED, channel.id, {
        **svc.envelope(), "channel_id": channel.id, "updated_by_user_id": principal.user_id,
        "title": title, "category": category, "tags": tags})
    updated = await _seen(svc, channel.id, ack.offset)
    return JSONResponse((updated or channel).public())


async def regenerate_stream_key(request: Request) -> JSONResponse:
    svc = services(request)
    principal, channel = await _owned(svc, request)
    stream_key = new_stream_key()
    ack = await svc.emit(STREAM_KEY_ROTATED, channel.id, {
        **svc.envelope(), "channel_id": channel.id, "rotated_by_user_id": principal.user_id,
        "stream_key_hash": hash_stream_key(stream_key)})
    await _seen(svc, channel.id, ack.offset)
    return JSONResponse({"id": channel.id, "stream_key": stream_key, "rtmp_url": svc.settings.rtmp_url})


routes = [
    Route("/v1/channels", create_channel, methods=["POST"]),
    Route("/v1/channels/{channel_id}", get_channel, methods=["GET"]),
    Route("/v1/channels/{channel_id}", update_channel, methods=["PATCH"]),
    Route("/v1/channels/{channel_id}/stream-key/regenerate", regenerate_stream_key, methods=["POST"]),
]

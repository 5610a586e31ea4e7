"""Channels: create, read, update, reveal and rotate the stream key.

A stream key is derived (HMAC) from a secret setting and a random nonce that
the events carry, so its owner can reveal it again from the dashboard; events
and views carry only the nonce and the key's SHA-256, which is what the RTMP
ingest looks up.  The key itself is in no event and no log line.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateways import validation as v
from gateways.auth import Principal, derive_stream_key, new_stream_key_nonce, same_digest
from gateways.errors import Conflict, Forbidden, NotFound, ValidationFailed
from gateways.services import Services, json_body, services
from infra.settings import MAX_RETENTION_DAYS
from schemas.records.channel import ChannelCreated, ChannelUpdated, StreamKeyRotated
from views.channels import ChannelView, hash_stream_key

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


async def find_channel(svc: Services, ref: str) -> ChannelView:
    """A channel by id, or by name for readable URLs."""
    channel = await (svc.views.get_channel(ref) if UUID_RE.match(ref) else svc.views.get_channel_by_name(ref))
    if channel is None:
        raise NotFound(f"channel '{ref}' does not exist")
    return channel


async def _owned(svc: Services, request: Request) -> tuple[Principal, ChannelView]:
    principal = await svc.user_principal(request)
    channel = await find_channel(svc, request.path_params["channel_id"])
    if channel.owner_user_id != principal.user_id:
        raise Forbidden("only the channel's owner may do this")
    return principal, channel


def _new_key(svc: Services, channel_id: str) -> tuple[str, str]:
    """(nonce, key) for a fresh stream key."""
    nonce = new_stream_key_nonce()
    return nonce, derive_stream_key(svc.stream_key_secret, channel_id, nonce)


async def channel_json(svc: Services, channel: ChannelView) -> dict[str, Any]:
    """A channel as the API shows it, with its live and configured stream ids and its follower count."""
    live = await svc.views.live_stream_of(channel.id)
    configured = await svc.views.configured_stream_of(channel.id)
    return {**channel.public(), "live_stream_id": live.id if live is not None else None,
            "configured_stream_id": configured.id if configured is not None else None,
            "followers": await svc.views.follows.follower_count(channel.id),
            "vod_retention_days": channel.vod_retention_days or svc.settings.vod.retention_days}


async def _seen(svc: Services, channel_id: str, offset: int) -> ChannelView | None:
    """Wait until the channel view has applied the event at ``offset``."""
    async def caught_up() -> bool:
        channel = await svc.views.get_channel(channel_id)
        return channel is not None and channel.seq >= offset
    await svc.wait_for(caught_up)
    return await svc.views.get_channel(channel_id)


async def create_channel(request: Request) -> JSONResponse:
    svc = services(request)
    principal = await svc.user_principal(request)
    data = await json_body(request)
    v.only(data, {"name", "title", "category", "tags"})
    name = v.name(data, "name")
    title = v.title(data) or f"{name}'s stream"
    category = v.category(data) or None
    tags = v.tags(data) or []
    channel_id = str(uuid.uuid4())
    if not await svc.views.claim("channel", name, channel_id):
        raise Conflict(f"channel name '{name}' is taken", field="name")
    nonce, stream_key = _new_key(svc, channel_id)
    try:
        ack = await svc.emit(ChannelCreated(
            occurred_at=svc.now_ms(), channel_id=channel_id, owner_user_id=principal.user_id, name=name,
            title=title, category=category, tags=tuple(tags), stream_key_hash=hash_stream_key(stream_key),
            stream_key_nonce=nonce), channel_id)
    except BaseException:
        await svc.views.release("channel", name, channel_id)
        raise
    await _seen(svc, channel_id, ack.offset)
    body: dict[str, Any] = {"id": channel_id, "name": name, "title": title, "category": category,
                            "tags": tags, "stream_key": stream_key, "rtmp_url": svc.settings.rtmp_url}
    return JSONResponse(body, status_code=201, headers={"Location": f"/v1/channels/{channel_id}",
                                                                   "Cache-Control": "no-store"})


async def get_channel(request: Request) -> JSONResponse:
    svc = services(request)
    channel = await find_channel(svc, request.path_params["channel_id"])
    return JSONResponse(await channel_json(svc, channel))


async def update_channel(request: Request) -> JSONResponse:
    svc = services(request)
    principal, channel = await _owned(svc, request)
    data = await json_body(request)
    v.only(data, {"title", "category", "tags", "vod_retention_days"})
    if not data:
        raise ValidationFailed("nothing to update: give title, category, tags or vod_retention_days")
    title = v.title(data)
    if title == "":
        raise ValidationFailed("'title' must not be empty", field="title")
    category = v.category(data)
    tags = v.tags(data)
    retention = _retention_days(data)
    ack = await svc.emit(ChannelUpdated(
        occurred_at=svc.now_ms(), channel_id=channel.id, updated_by_user_id=principal.user_id,
        title=title, category=category, tags=None if tags is None else tuple(tags),
        vod_retention_days=retention), channel.id)
    updated = await _seen(svc, channel.id, ack.offset)
    return JSONResponse(await channel_json(svc, updated or channel))


def _retention_days(data: dict[str, Any]) -> int | None:
    """``vod_retention_days``: how many days the channel's videos are kept (0: the platform default)."""
    value = data.get("vod_retention_days")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETENTION_DAYS:
        raise ValidationFailed(f"'vod_retention_days' must be a whole number of days from 1 to "
                               f"{MAX_RETENTION_DAYS} (0: the platform default)", field="vod_retention_days")
    return value


async def regenerate_stream_key(request: Request) -> JSONResponse:
    svc = services(request)
    principal, channel = await _owned(svc, request)
    nonce, stream_key = _new_key(svc, channel.id)
    ack = await svc.emit(StreamKeyRotated(
        occurred_at=svc.now_ms(), channel_id=channel.id, rotated_by_user_id=principal.user_id,
        stream_key_hash=hash_stream_key(stream_key), stream_key_nonce=nonce), channel.id)
    await _seen(svc, channel.id, ack.offset)
    return JSONResponse({"id": channel.id, "stream_key": stream_key, "rtmp_url": svc.settings.rtmp_url},
                        headers={"Cache-Control": "no-store"})


async def reveal_stream_key(request: Request) -> JSONResponse:
    """The channel's current stream key, for its owner only."""
    svc = services(request)
    _, channel = await _owned(svc, request)
    key = None
    if channel.stream_key_nonce is not None:
        key = derive_stream_key(svc.stream_key_secret, channel.id, channel.stream_key_nonce)
    if key is None or not same_digest(hash_stream_key(key), channel.stream_key_hash):
        # Made before keys were revealable, or under another stream-key secret: only a new key helps.
        raise Conflict("this stream key cannot be shown again; regenerate it to get a new one")
    return JSONResponse({"id": channel.id, "stream_key": key, "rtmp_url": svc.settings.rtmp_url},
                        headers={"Cache-Control": "no-store"})


routes = [
    Route("/v1/channels", create_channel, methods=["POST"]),
    Route("/v1/channels/{channel_id}", get_channel, methods=["GET"]),
    Route("/v1/channels/{channel_id}", update_channel, methods=["PATCH"]),
    Route("/v1/channels/{channel_id}/stream-key", reveal_stream_key, methods=["GET"]),
    Route("/v1/channels/{channel_id}/stream-key/regenerate", regenerate_stream_key, methods=["POST"]),
]

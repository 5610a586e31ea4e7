"""Host mode: an offline channel's page plays another channel's live stream, under a "hosting X" banner.

    POST   /v1/channels/{channel_id}/host  {target_channel_id}   the owner starts hosting (channel offline)
    GET    /v1/channels/{channel_id}/host                       what the page plays: the host, or null
    DELETE /v1/channels/{channel_id}/host                       the owner ends it

Each change is an event on the ``raids`` topic (``HostStarted``,
``HostEnded``, keyed by the hosting channel) and is written to the host view
(views/hosting.py) at once; the raid worker folds the log again and drops a
host when the hosted stream ends.  The read checks the target is still live,
so a page never plays a host whose end the view has not folded yet.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateways import validation as v
from gateways.channels import find_channel
from gateways.errors import Conflict, Forbidden, NotFound, ValidationFailed
from gateways.services import Services, json_body, services
from schemas.records.raid import HostEnded, HostStarted
from views.channels import ChannelView
from views.hosting import Hosts, HostView


def hosts(svc: Services) -> Hosts:
    return Hosts(svc.redis, svc.settings.valkey.key_prefix)


async def _owned(svc: Services, request: Request) -> ChannelView:
    principal = await svc.user_principal(request)
    channel = await find_channel(svc, request.path_params["channel_id"])
    if channel.owner_user_id != principal.user_id:
        raise Forbidden("only the channel's owner may change what it hosts", reason="not_owner")
    return channel


async def _host_json(svc: Services, channel: ChannelView, host: HostView | None) -> dict[str, Any]:
    if host is None:
        return {"channel_id": channel.id, "hosting": None}
    target = await svc.views.get_channel(host.target_channel_id)
    live = await svc.views.live_stream_of(host.target_channel_id)
    if target is None or live is None:  # ended; the worker drops it from the view when it folds StreamEnded
        return {"channel_id": channel.id, "hosting": None}
    return {"channel_id": channel.id, "hosting": {
        "channel_id": target.id, "channel_name": target.name, "title": live.title, "live_stream_id": live.id,
        "started_at_ms": host.started_at_ms}}


async def start_host(request: Request) -> JSONResponse:
    svc = services(request)
    channel = await _owned(svc, request)
    data = await json_body(request)
    v.only(data, {"target_channel_id"})
    ref = v.string(data, "target_channel_id", max_length=64)
    assert ref is not None
    try:
        target = await find_channel(svc, ref)
    except NotFound as exc:
        raise ValidationFailed(exc.detail, field="target_channel_id", reason="unknown_target") from None
    if target.id == channel.id:
        raise ValidationFailed("a channel cannot host itself", field="target_channel_id", reason="self_host")
    if await svc.views.live_stream_of(channel.id) is not None:
        raise Conflict("your channel is live; host mode is for when it is offline", reason="channel_live")
    if await svc.views.live_stream_of(target.id) is None:
        raise ValidationFailed(f"'{target.name}' is not live; only a live channel can be hosted",
                               field="target_channel_id", reason="target_offline")
    store = hosts(svc)
    host = await store.get(channel.id)
    if host is None or host.target_channel_id != target.id:
        now = svc.now_ms()
        await svc.emit(HostStarted(occurred_at=now, channel_id=channel.id, target_channel_id=target.id,
                                   started_by=channel.owner_user_id), channel.id)
        host = HostView(channel.id, target.id, now)
        await store.start(host)
    return JSONResponse(await _host_json(svc, channel, host))


async def get_host(request: Request) -> JSONResponse:
    svc = services(request)
    channel = await find_channel(svc, request.path_params["channel_id"])
    return JSONResponse(await _host_json(svc, channel, await hosts(svc).get(channel.id)))


async def end_host(request: Request) -> Response:
    svc = services(request)
    channel = await _owned(svc, request)
    store = hosts(svc)
    host = await store.get(channel.id)
    if host is not None:
        await svc.emit(HostEnded(occurred_at=svc.now_ms(), channel_id=channel.id,
                                 target_channel_id=host.target_channel_id), channel.id)
        await store.end(channel.id, host.target_channel_id)
    return Response(status_code=204)


routes = [
    Route("/v1/channels/{channel_id}/host", start_host, methods=["POST"]),
    Route("/v1/channels/{channel_id}/host", get_host, methods=["GET"]),
    Route("/v1/channels/{channel_id}/host", end_host, methods=["DELETE"]),
]

"""Raids: a broadcaster sends their viewers on to another live channel.

    POST   /v1/raids  {from_broadcaster_id, to_broadcaster_id}   start the 90-second countdown
    GET    /v1/raids?broadcaster_id=                             the channel's raid that has not ended yet
    POST   /v1/raids/{raid_id}/go                               Raid Now: go ahead before the countdown ends
    DELETE /v1/raids?broadcaster_id=                             cancel the countdown

As Twitch's Start a raid (dev.twitch.tv/docs/api/reference/raids): the caller
owns the raiding channel, the target is live and is not the raiding channel,
and a broadcaster may start at most ``RAIDS_PER_WINDOW`` raids in
``RAID_WINDOW_MS``.  A started raid is a ``RaidStarted`` on the ``raids``
topic (keyed by the raiding channel) carrying its deadline; views/raids.py
holds its state (the countdown: GLASSCAST_GATEWAY_RAID_COUNTDOWN_S, 90 s as on Twitch)
and processors/raids/ completes it when the deadline comes,
so the countdown does not depend on this gateway staying up.  When it goes
ahead, the raiding room gets a RAID frame (``kind: outgoing``: the web page
moves to the target) and the target's room announces it (``kind: incoming``).
"""

from __future__ import annotations

import math
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateways import validation as v
from gateways.channels import find_channel
from gateways.chat.ratelimit import RateLimiter
from gateways.errors import Conflict, Forbidden, NotFound, TooManyRequests, ValidationFailed
from gateways.services import Services, json_body, services
from schemas.records.raid import RaidCancelled, RaidStarted
from views.channels import ChannelView
from views.eventsub import rfc3339
from views.raids import CANCELLED, PENDING, RaidStore, RaidView, complete_raid, event_id, raid_frame

RAIDS_PER_WINDOW = 10  # Twitch: "limited to 10 requests within a 10-minute window"
RAID_WINDOW_MS = 10 * 60 * 1000


class RaidLimiter(RateLimiter):
    """The chat's sliding window (one Lua script in Valkey), over a broadcaster's raid requests."""

    def __init__(self, svc: Services) -> None:
        super().__init__(svc.redis, svc.settings.valkey.key_prefix)
        self.prefix = f"{svc.settings.valkey.key_prefix}raids:rate:"


def raid_store(svc: Services) -> RaidStore:
    return RaidStore(svc.redis, svc.settings.valkey.key_prefix)


async def _owned(svc: Services, request: Request, ref: str | None, field: str) -> ChannelView:
    """The channel ``ref`` names, which the caller must own."""
    principal = await svc.user_principal(request)
    if not ref:
        raise ValidationFailed(f"'{field}' must name your channel", field=field)
    try:
        channel = await find_channel(svc, ref)
    except NotFound as exc:
        raise ValidationFailed(exc.detail, field=field) from None
    if channel.owner_user_id != principal.user_id:
        raise Forbidden("only the channel's owner may raid from it", field=field, reason="not_owner")
    return channel


async def _name(svc: Services, channel_id: str) -> str:
    channel = await svc.views.get_channel(channel_id)
    return channel.name if channel is not None else channel_id


def _answer(view: RaidView, now_ms: int) -> dict[str, object]:
    return {**view.public(now_ms), "created_at": rfc3339(view.created_at_ms)}


async def start_raid(request: Request) -> JSONResponse:
    svc = services(request)
    data = await json_body(request)
    v.only(data, {"from_broadcaster_id", "to_broadcaster_id"})
    source = await _owned(svc, request, v.string(data, "from_broadcaster_id", max_length=64),
                          "from_broadcaster_id")
    target_ref = v.string(data, "to_broadcaster_id", max_length=64)
    assert target_ref is not None
    try:
        target = await find_channel(svc, target_ref)
    except NotFound as exc:
        raise ValidationFailed(exc.detail, field="to_broadcaster_id", reason="unknown_target") from None
    if target.id == source.id:
        raise ValidationFailed("a channel cannot raid itself", field="to_broadcaster_id", reason="self_raid")
    if await svc.views.live_stream_of(target.id) is None:
        raise ValidationFailed(f"'{target.name}' is not live; only a live channel can be raided",
                               field="to_broadcaster_id", reason="target_offline")
    store = raid_store(svc)
    if (active := await store.active(source.id)) is not None:
        raise Conflict("this channel's raid is still counting down; cancel it first", reason="raid_in_progress",
                       raid_id=active.raid_id)
    now = svc.now_ms()
    allowed, wait_ms = await RaidLimiter(svc).allow("raids", source.id, now, RAID_WINDOW_MS, RAIDS_PER_WINDOW,
                                                    uuid.uuid4().hex)
    if not allowed:
        wait_s = max(1, math.ceil(wait_ms / 1000))
        raise TooManyRequests(f"too many raids: at most {RAIDS_PER_WINDOW} in 10 minutes; try again in {wait_s} s",
                              retry_after_s=wait_s, reason="raids_rate_limited")
    raid_id = str(uuid.uuid4())
    countdown_ms = int(svc.settings.gateway.raid_countdown_s * 1000)
    view = RaidView(raid_id, source.id, target.id, source.owner_user_id, now, now + countdown_ms)
    await svc.emit(RaidStarted(event_id=event_id(raid_id, "started"), occurred_at=now, raid_id=raid_id,
                               from_channel_id=source.id, to_channel_id=target.id,
                               requested_by=source.owner_user_id, deadline_at=view.deadline_at_ms), source.id)
    outcome = await store.start(view)
    if outcome.startswith("busy:"):  # another request of the same channel won the race
        await store.put_cancelled(view)
        await svc.emit(RaidCancelled(event_id=event_id(raid_id, "cancelled"), occurred_at=now, raid_id=raid_id,
                                     from_channel_id=source.id, to_channel_id=target.id), source.id)
        raise Conflict("this channel's raid is still counting down; cancel it first", reason="raid_in_progress",
                       raid_id=outcome[len("busy:"):])
    names = {source.id: source.name, target.id: target.name}
    await store.publish(source.id, raid_frame(view, "countdown", source.id, await store.viewers(source.id), names,
                                              now))
    return JSONResponse({"data": [_answer(view, now)]})


async def _channel_raid(svc: Services, request: Request) -> tuple[ChannelView, RaidView]:
    v.only(dict(request.query_params), {"broadcaster_id"})
    channel = await _owned(svc, request, request.query_params.get("broadcaster_id"), "broadcaster_id")
    view = await raid_store(svc).active(channel.id)
    if view is None:
        raise NotFound("this channel has no raid counting down", reason="no_raid")
    return channel, view


async def get_raid(request: Request) -> JSONResponse:
    svc = services(request)
    _, view = await _channel_raid(svc, request)
    return JSONResponse({"data": [_answer(view, svc.now_ms())]})


async def cancel_raid(request: Request) -> Response:
    svc = services(request)
    channel, view = await _channel_raid(svc, request)
    store = raid_store(svc)
    if await store.finish(view, "cancelled", only_pending=True) is None:
        raise Conflict("the raid is already going ahead", reason="raid_under_way")
    now = svc.now_ms()
    await svc.emit(RaidCancelled(event_id=event_id(view.raid_id, "cancelled"), occurred_at=now,
                                 raid_id=view.raid_id, from_channel_id=view.from_channel_id,
                                 to_channel_id=view.to_channel_id, reason="BY_BROADCASTER"), channel.id)
    names = {channel.id: channel.name, view.to_channel_id: await _name(svc, view.to_channel_id)}
    await store.publish(channel.id, raid_frame(view, "cancelled", channel.id, 0, names, now))
    return Response(status_code=204)


async def raid_now(request: Request) -> JSONResponse:
    svc = services(request)
    principal = await svc.user_principal(request)
    store = raid_store(svc)
    view = await store.get(request.path_params["raid_id"])
    if view is None:
        raise NotFound("no such raid")
    channel = await svc.views.get_channel(view.from_channel_id)
    if channel is None or channel.owner_user_id != principal.user_id:
        raise Forbidden("only the raiding channel's owner may launch its raid", reason="not_owner")
    if view.status != PENDING:
        raise Conflict(f"the raid is {view.status}", reason=f"raid_{view.status}")

    async def name_of(channel_id: str) -> str:
        return await _name(svc, channel_id)

    done = await complete_raid(store, view.raid_id, svc.now_ms(), True, svc.emit, name_of)
    if done is None:
        now_view = await store.get(view.raid_id)
        status = now_view.status if now_view is not None else "gone"
        raise Conflict(f"the raid is {status}", reason=f"raid_{status}")
    if done.status == CANCELLED:
        raise Conflict("the target went offline, so the raid was cancelled", reason="target_offline")
    return JSONResponse({"data": [_answer(done, svc.now_ms())]})


routes = [
    Route("/v1/raids", start_raid, methods=["POST"]),
    Route("/v1/raids", get_raid, methods=["GET"]),
    Route("/v1/raids", cancel_raid, methods=["DELETE"]),
    Route("/v1/raids/{raid_id}/go", raid_now, methods=["POST"]),
]

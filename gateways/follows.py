"""Follows: a user follows channels, with or without go-live notifications (the bell).

    POST   /v1/users/{user_id}/follows                {channel_id, notifications?}   201; 200 when already following
    PATCH  /v1/users/{user_id}/follows/{channel_id}   {notifications}                the bell
    DELETE /v1/users/{user_id}/follows/{channel_id}                                  204 (also when not following)
    GET    /v1/users/{user_id}/follows?live=&limit=&cursor=
    GET    /v1/channels/{channel_id}/followers?limit=&cursor=    the count for anyone, the list for the owner

A user's follows are theirs: every ``/v1/users/{user_id}/follows`` route needs
the bearer token of that user (403 otherwise).  A change is a ``Followed`` or
``Unfollowed`` event on ``social.follows`` keyed ``follower_id:channel_id``;
the answer waits for the broker's acknowledgement and then, bounded, for the
processors' view of the pair (views/follows.py), so the client reads what it
wrote.  The topic is compacted (the latest event per pair wins), so a bell
change is a new ``Followed`` that carries the follow's own time as
``occurred_at``: the follow age the chat's followers-only mode checks survives
both the change and compaction.  A request that changes nothing (following
twice, the bell already as asked, unfollowing what is not followed) produces
no event.  Changes are writes and are bounded per user with the chat's
sliding window (gateways/chat/ratelimit.py): ``FOLLOW_CHANGES_PER_HOUR``.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateways import validation as v
from gateways.auth import Principal
from gateways.channels import find_channel
from gateways.chat.ratelimit import RateLimiter
from gateways.directory import boolean, limit, params
from gateways.errors import BadRequest, Forbidden, NotFound, TooManyRequests, ValidationFailed
from gateways.services import Services, json_body, services
from schemas.records.social import Followed, Unfollowed
from views.channels import ChannelView
from views.follows import FOLLOWERS, FOLLOWING, FollowState, decode_cursor, encode_cursor
from views.store import text
from views.users import UserView

FOLLOW_CHANGES_PER_HOUR = 300  # follows, unfollows and bell changes per user, in any hour
RATE_WINDOW_MS = 3_600_000
PAGE_LIMIT, PAGE_MAX_LIMIT = 20, 100


class FollowLimiter(RateLimiter):
    """The chat's per-user sliding window (one Lua script in Valkey), over a user's follow changes."""

    def __init__(self, svc: Services) -> None:
        super().__init__(svc.redis, svc.settings.valkey.key_prefix)
        self.prefix = f"{svc.settings.valkey.key_prefix}follows:rate:"


async def _charge(svc: Services, user_id: str) -> None:
    """Count one follow change against the user's hourly bound, or refuse it (429 with Retry-After)."""
    allowed, wait_ms = await FollowLimiter(svc).allow("changes", user_id, svc.now_ms(), RATE_WINDOW_MS,
                                                      FOLLOW_CHANGES_PER_HOUR, uuid.uuid4().hex)
    if not allowed:
        wait_s = max(1, math.ceil(wait_ms / 1000))
        raise TooManyRequests(f"too many follow changes: at most {FOLLOW_CHANGES_PER_HOUR} an hour; "
                              f"try again in {wait_s} s", retry_after_s=wait_s)


async def _self(svc: Services, request: Request) -> Principal:
    """The caller, who must be the path's user."""
    principal = await svc.user_principal(request)
    if request.path_params["user_id"] != principal.user_id:
        raise Forbidden("a user's follows are changed and read only with that user's own token")
    return principal


def _notifications(data: dict[str, Any], required: bool) -> bool:
    value = data.get("notifications")
    if value is None and not required:
        return True  # as Twitch: a new follow gets go-live notifications unless it asks otherwise
    if not isinstance(value, bool):
        raise ValidationFailed("'notifications' must be true or false", field="notifications")
    return value


async def _emit_and_wait(svc: Services, event: Followed | Unfollowed) -> None:
    """Produce ``event`` (acknowledged by the broker), then wait, bounded, until the pair's view has it."""
    ack = await svc.emit(event, f"{event.follower_id}:{event.channel_id}")

    async def caught_up() -> bool:
        state = await svc.views.follows.state(event.follower_id, event.channel_id)
        return state is not None and state.seq >= ack.offset
    await svc.wait_for(caught_up)


async def _follow_json(svc: Services, user_id: str, channel: ChannelView, state: FollowState) -> dict[str, Any]:
    live = await svc.views.live_stream_of(channel.id)
    return {"user_id": user_id, "channel_id": channel.id, "channel_name": channel.name,
            "followed_at_ms": state.followed_at_ms, "notifications": state.notifications,
            "live_stream_id": live.id if live is not None else None}


async def follow(request: Request) -> JSONResponse:
    svc = services(request)
    principal = await _self(svc, request)
    data = await json_body(request)
    v.only(data, {"channel_id", "notifications"})
    ref = v.string(data, "channel_id", max_length=64)
    assert ref is not None
    notify = _notifications(data, required=False)
    try:
        channel = await find_channel(svc, ref)
    except NotFound as exc:
        raise ValidationFailed(exc.detail, field="channel_id") from None
    if channel.owner_user_id == principal.user_id:
        raise ValidationFailed("you cannot follow your own channel", field="channel_id", reason="self_follow")
    user_id = principal.user_id
    state = await svc.views.follows.state(user_id, channel.id)
    already = state is not None and state.following
    if state is None or not state.following or state.notifications != notify:
        await _charge(svc, user_id)
        at = state.followed_at_ms if state is not None and state.following else svc.now_ms()
        await _emit_and_wait(svc, Followed(occurred_at=at, follower_id=user_id, channel_id=channel.id,
                                           notifications_enabled=notify))
        state = FollowState(0, True, at, notify)
    body = await _follow_json(svc, user_id, channel, state)
    if already:
        return JSONResponse(body)
    return JSONResponse(body, status_code=201, headers={"Location": f"/v1/users/{user_id}/follows/{channel.id}"})


async def set_notifications(request: Request) -> JSONResponse:
    svc = services(request)
    principal = await _self(svc, request)
    data = await json_body(request)
    v.only(data, {"notifications"})
    notify = _notifications(data, required=True)
    channel = await find_channel(svc, request.path_params["channel_id"])
    state = await svc.views.follows.state(principal.user_id, channel.id)
    if state is None or not state.following:
        raise NotFound(f"you do not follow channel '{channel.name}'")
    if state.notifications != notify:
        await _charge(svc, principal.user_id)
        # The follow's own time, not now: the latest event per pair is all a compacted topic keeps.
        await _emit_and_wait(svc, Followed(occurred_at=state.followed_at_ms, follower_id=principal.user_id,
                                           channel_id=channel.id, notifications_enabled=notify))
        state = FollowState(state.seq, True, state.followed_at_ms, notify)
    return JSONResponse(await _follow_json(svc, principal.user_id, channel, state))


async def unfollow(request: Request) -> Response:
    svc = services(request)
    principal = await _self(svc, request)
    channel = await find_channel(svc, request.path_params["channel_id"])
    state = await svc.views.follows.state(principal.user_id, channel.id)
    if state is not None and state.following:
        await _charge(svc, principal.user_id)
        await _emit_and_wait(svc, Unfollowed(occurred_at=svc.now_ms(), follower_id=principal.user_id,
                                             channel_id=channel.id))
    return Response(status_code=204)


def _cursor(kind: str, data: dict[str, str]) -> str | None:
    if not data.get("cursor"):
        return None
    try:
        return decode_cursor(kind, data["cursor"])
    except ValueError as exc:
        raise BadRequest(f"'cursor' is not valid: {exc}", field="cursor") from None


async def list_follows(request: Request) -> JSONResponse:
    """The user's followed channels, newest follow first; ``live=true``: only those live now."""
    svc = services(request)
    principal = await _self(svc, request)
    data = params(request.query_params, {"live", "limit", "cursor"})
    live_only = boolean(data, "live", False)
    count = limit(data, PAGE_LIMIT, PAGE_MAX_LIMIT)
    after = _cursor(FOLLOWING, data)
    follows = svc.views.follows
    live_ids: list[str | None]
    if live_only:
        found, last = await follows.live_page(principal.user_id, after, count)
        rows, live_ids = [r for r, _ in found], [s for _, s in found]
    else:
        rows, last = await follows.page(FOLLOWING, principal.user_id, after, count)
        live_ids = [None if s is None else text(s) for s in await svc.redis.mget(
            [svc.views.k_channel_live(r.id) for r in rows])] if rows else []
    states = await follows.states(principal.user_id, [r.id for r in rows])
    channels = await _views(svc, [svc.views.k_channel(r.id) for r in rows], ChannelView.from_json)
    entries = [{"channel_id": r.id, "channel_name": c.name if c is not None else None,
                "followed_at_ms": r.followed_at_ms, "notifications": bool(s is not None and s.notifications),
                "live_stream_id": live}
               for r, s, c, live in zip(rows, states, channels, live_ids, strict=True)]
    return JSONResponse({"total": await follows.following_count(principal.user_id), "follows": entries,
                         "next_cursor": encode_cursor(FOLLOWING, last) if last is not None else None},
                        headers={"Cache-Control": "no-store"})


async def list_followers(request: Request) -> JSONResponse:
    """A channel's follower count; for its owner, also the followers, newest first."""
    svc = services(request)
    channel = await find_channel(svc, request.path_params["channel_id"])
    data = params(request.query_params, {"limit", "cursor"})
    count = limit(data, PAGE_LIMIT, PAGE_MAX_LIMIT)
    after = _cursor(FOLLOWERS, data)
    follows = svc.views.follows
    body: dict[str, Any] = {"channel_id": channel.id, "total": await follows.follower_count(channel.id)}
    owner = False
    if request.headers.get("authorization") is not None:  # anonymous callers see the count; a bad token is a 401
        owner = (await svc.user_principal(request)).user_id == channel.owner_user_id
    if owner:
        rows, last = await follows.page(FOLLOWERS, channel.id, after, count)
        users = await _views(svc, [svc.views.k_user(r.id) for r in rows], UserView.from_json)
        body["followers"] = [{"user_id": r.id, "username": u.username if u is not None else None,
                              "followed_at_ms": r.followed_at_ms} for r, u in zip(rows, users, strict=True)]
        body["next_cursor"] = encode_cursor(FOLLOWERS, last) if last is not None else None
    return JSONResponse(body, headers={"Cache-Control": "private, no-store" if owner else "no-store"})


async def _views(svc: Services, keys: list[str], parse: Callable[[dict[str, Any]], Any]) -> list[Any]:
    """Several JSON views in one round trip (None where one is missing)."""
    raw = await svc.redis.mget(keys) if keys else []
    return [None if r is None else parse(json.loads(r)) for r in raw]


routes = [
    Route("/v1/users/{user_id}/follows", follow, methods=["POST"]),
    Route("/v1/users/{user_id}/follows", list_follows, methods=["GET"]),
    Route("/v1/users/{user_id}/follows/{channel_id}", set_notifications, methods=["PATCH"]),
    Route("/v1/users/{user_id}/follows/{channel_id}", unfollow, methods=["DELETE"]),
    Route("/v1/channels/{channel_id}/followers", list_followers, methods=["GET"]),
]

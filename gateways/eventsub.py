"""EventSub subscriptions for integrators, in Twitch's shape: create, list, delete.

``POST /v1/eventsub/subscriptions`` takes ``{type, version, condition,
transport: {method: "webhook", callback, secret}}`` and answers 202 with the
subscription ``webhook_callback_verification_pending``; the processors'
EventSub dispatcher then sends the challenge (processors/eventsub/).  The
caller must be signed in; ``channel.follow``, ``channel.chat.message``,
``channel.subscribe``, ``channel.subscription.gift`` and ``channel.cheer`` need
the caller to own the condition's channel (Twitch asks for scopes there); the
stream, channel and raid types take any channel.  The secret goes on the log
sealed only (views/eventsub.py) and is never echoed or logged.  Bad input is a
400 that says what is wrong, as Twitch answers it.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateways.channels import UUID_RE
from gateways.errors import BadRequest, Conflict, Forbidden, NotFound
from gateways.services import Services, json_body, services
from schemas.records.eventsub import SubscriptionCreated, SubscriptionDeleted
from views.eventsub import (
    DELETED,
    LIVE_STATUSES,
    OWNER_ONLY,
    SUPPORTED,
    EventSubViews,
    SubscriptionView,
    parse_callback,
    resolve_allowed,
    seal,
    sealing_key,
    secret_problem,
    subscription_object,
)

# Condition fields each type takes besides broadcaster_user_id (Twitch's, for the versions served).
EXTRA_CONDITION = {"channel.follow": "moderator_user_id", "channel.chat.message": "user_id"}


def _subs(svc: Services) -> EventSubViews:
    return EventSubViews(svc.redis, svc.settings.valkey.key_prefix)


def _object(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if not isinstance(value, dict):
        raise BadRequest(f"'{name}' must be an object", field=name)
    return value


def _only(data: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise BadRequest(f"unknown field '{where}{extra[0]}' (allowed: {', '.join(sorted(allowed))})",
                         field=f"{where}{extra[0]}")


def _type_and_version(data: dict[str, Any]) -> tuple[str, str]:
    type_ = data.get("type")
    if not isinstance(type_, str) or type_ not in SUPPORTED:
        shown = repr(type_) if isinstance(type_, str) and len(type_) <= 64 else "given"
        raise BadRequest(f"unknown subscription type {shown}; supported: {', '.join(SUPPORTED)}", field="type")
    version = data.get("version")
    if version != SUPPORTED[type_]:
        raise BadRequest(f"'{type_}' is served in version '{SUPPORTED[type_]}'", field="version")
    return type_, SUPPORTED[type_]


def _raid_condition(cond: dict[str, Any]) -> dict[str, Any]:
    """channel.raid names one side (Twitch: from_broadcaster_user_id or to_broadcaster_user_id); as a
    broadcaster_user_id, with ``user_id`` marking the raiding side (views/eventsub.py ``condition``)."""
    _only(cond, {"from_broadcaster_user_id", "to_broadcaster_user_id"}, "condition.")
    given = {k: v for k, v in cond.items() if v not in (None, "")}
    if len(given) != 1:
        raise BadRequest("channel.raid takes one of condition.from_broadcaster_user_id and "
                         "condition.to_broadcaster_user_id", field="condition")
    (side, channel_id), = given.items()
    return {"broadcaster_user_id": channel_id, "raiding": side == "from_broadcaster_user_id"}


async def _condition(svc: Services, type_: str, data: dict[str, Any], user_id: str) -> dict[str, str | None]:
    cond = _object(data, "condition")
    raiding = False
    if type_ == "channel.raid":
        cond = _raid_condition(cond)
        raiding = bool(cond.pop("raiding"))
    extra = EXTRA_CONDITION.get(type_)
    _only(cond, {"broadcaster_user_id", *([extra] if extra else [])}, "condition.")
    broadcaster = cond.get("broadcaster_user_id")
    if not isinstance(broadcaster, str) or not UUID_RE.match(broadcaster):
        raise BadRequest("condition.broadcaster_user_id must be a channel id", field="condition.broadcaster_user_id")
    channel = await svc.views.get_channel(broadcaster)
    if channel is None:
        raise BadRequest(f"no channel '{broadcaster}'", field="condition.broadcaster_user_id")
    if type_ in OWNER_ONLY and channel.owner_user_id != user_id:
        raise Forbidden(f"'{type_}' needs you to own the channel in condition.broadcaster_user_id")
    out: dict[str, str | None] = {"broadcaster_user_id": broadcaster}
    if extra:
        value = cond.get(extra)
        if value is not None and value != user_id:
            raise Forbidden(f"condition.{extra} must be your own user id", field=f"condition.{extra}")
        out[extra] = value
    if raiding:
        out["user_id"] = broadcaster
    return out


async def _transport(svc: Services, data: dict[str, Any]) -> tuple[str, str]:
    transport = _object(data, "transport")
    _only(transport, {"method", "callback", "secret"}, "transport.")
    if transport.get("method") != "webhook":
        raise BadRequest("transport.method must be 'webhook'", field="transport.method")
    allow_private = svc.settings.eventsub.allow_private_callbacks
    callback = transport.get("callback")
    try:
        target = parse_callback(callback, allow_private)
        await resolve_allowed(target.host, target.port, allow_private)
    except ValueError as exc:
        raise BadRequest(str(exc), field="transport.callback") from None
    secret = transport.get("secret")
    problem = secret_problem(secret)
    if problem is not None:
        raise BadRequest(problem, field="transport.secret")
    assert isinstance(callback, str) and isinstance(secret, str)
    return callback, secret


def _listing(svc: Services, subs: list[SubscriptionView]) -> dict[str, Any]:
    live = [s for s in subs if s.status in LIVE_STATUSES]
    return {"data": [subscription_object(s) for s in subs], "total": len(subs),
            "total_cost": sum(subscription_object(s)["cost"] for s in live),
            "max_total_cost": svc.settings.eventsub.max_subscriptions_per_user}


async def create_subscription(request: Request) -> JSONResponse:
    svc = services(request)
    principal = await svc.user_principal(request)
    data = await json_body(request)
    _only(data, {"type", "version", "condition", "transport"}, "")
    type_, version = _type_and_version(data)
    condition = await _condition(svc, type_, data, principal.user_id)
    callback, secret = await _transport(svc, data)
    subs = _subs(svc)
    mine = [s for s in await subs.of_user(principal.user_id) if s.status in LIVE_STATUSES]
    if len(mine) >= svc.settings.eventsub.max_subscriptions_per_user:
        raise Conflict(f"you have {len(mine)} subscriptions, the most allowed; delete one first",
                       reason="subscription_limit")
    if any(s.type == type_ and s.broadcaster_user_id == condition["broadcaster_user_id"] and s.callback == callback
           for s in mine):
        raise Conflict("a subscription with this type, condition and callback exists", reason="duplicate")
    sub_id = str(uuid.uuid4())
    auth = svc.settings.auth
    key = sealing_key(str(auth.jwt_secret), str(svc.settings.eventsub.secret_key))
    record = SubscriptionCreated(
        occurred_at=svc.now_ms(), subscription_id=sub_id, user_id=principal.user_id, type=type_, version=version,
        broadcaster_user_id=str(condition["broadcaster_user_id"]), moderator_user_id=condition.get("moderator_user_id"),
        condition_user_id=condition.get("user_id"), callback=callback, secret_sealed=seal(key, sub_id, secret))
    await svc.emit(record, sub_id)
    view = await subs.apply(record)  # at once, as the dispatcher folds it again from the log
    assert view is not None
    body = _listing(svc, [*mine, view])
    body["data"] = [subscription_object(view)]
    body["total"] = 1
    return JSONResponse(body, status_code=202, headers={"Cache-Control": "no-store"})


async def list_subscriptions(request: Request) -> JSONResponse:
    svc = services(request)
    principal = await svc.user_principal(request)
    subs = await _subs(svc).of_user(principal.user_id)
    status, type_ = request.query_params.get("status"), request.query_params.get("type")
    shown = [s for s in subs if (status is None or s.status == status) and (type_ is None or s.type == type_)]
    body = _listing(svc, subs)
    body.update(data=[subscription_object(s) for s in shown], total=len(shown), pagination={})
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def delete_subscription(request: Request) -> Response:
    svc = services(request)
    principal = await svc.user_principal(request)
    sub_id = request.path_params.get("subscription_id") or request.query_params.get("id")
    if not sub_id:
        raise BadRequest("give the subscription's id (?id= or /v1/eventsub/subscriptions/{id})", field="id")
    subs = _subs(svc)
    sub = await subs.get(sub_id) if UUID_RE.match(sub_id) else None
    if sub is None or sub.user_id != principal.user_id or sub.status == DELETED:
        raise NotFound(f"no subscription '{sub_id[:64]}' of yours")
    record = SubscriptionDeleted(occurred_at=svc.now_ms(), subscription_id=sub.id,
                                 deleted_by_user_id=principal.user_id)
    await svc.emit(record, sub.id)
    await subs.apply(record)
    return Response(status_code=204)


routes = [
    Route("/v1/eventsub/subscriptions", create_subscription, methods=["POST"]),
    Route("/v1/eventsub/subscriptions", list_subscriptions, methods=["GET"]),
    Route("/v1/eventsub/subscriptions", delete_subscription, methods=["DELETE"]),
    Route("/v1/eventsub/subscriptions/{subscription_id}", delete_subscription, methods=["DELETE"]),
]

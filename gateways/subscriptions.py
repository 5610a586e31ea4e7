"""Paid subscriptions: subscribe, gift, list, cancel at period end.

    POST   /v1/subscriptions                      {channel_id, tier, gift_to?, gift_count?, message?}  201
    GET    /v1/me/subscriptions                   the caller's running subscriptions
    DELETE /v1/me/subscriptions/{channel_id}      cancel at period end: no renewal after, it ends at expires_at
                                                  (the provider is told too: Stripe's cancel_at_period_end)
    POST   /v1/me/subscriptions/{channel_id}/renewal   sandbox provider only: pay the next period now
    GET    /v1/channels/{channel_id}/subscriptions     the owner's revenue: subscribers, tiers, total, points,
                                                       and bits cheered per UTC day of the last 30 (the ledger's)

A subscription is bought through the payment provider (gateways/payments/:
``start_checkout`` records the order and opens the checkout); the processor
turns the payment into ``SubscriptionStarted``/``SubscriptionRenewed`` on
``billing.subscriptions`` (processors/subscriptions/), which the chat's
entitlements and views/subscriptions.py fold.  Tiers are Twitch's: 1000, 2000
and 3000, priced by ``GLASSCAST_PAYMENTS_SUBSCRIPTION_PRICES``.

Gifts.  ``gift_to`` names one user; ``gift_count`` (1 to
``subscriptions.gift_count_max``) gives that many subscriptions to distinct
viewers picked at random among the eligible: signed-in users who watched
(heartbeats) or chatted in the channel within ``gift_viewer_window_s``
(views/subscriptions.py reads the notification processor's engagement index),
not banned there, not subscribed already, neither the gifter nor the
broadcaster.  The order names the recipients, so the payment grants exactly them.

Every refusal is a 4xx with a ``reason`` before anything is ordered, so it
charges nothing: an unknown tier (422 ``unknown_tier``), your own channel
(422 ``self_subscription``), a gift to a banned user (422 ``recipient_banned``),
to yourself or the broadcaster, more gifts than eligible viewers (422
``not_enough_viewers``), a subscription already running (409).

The sandbox provider has no renewals of its own: ``POST .../renewal`` stands
in for the provider's next charge (the period after the current one), and a
short ``GLASSCAST_SUBSCRIPTIONS_PERIOD_S`` lets expiry happen in a test or
demo.  Its order id is derived from the subscription and the period it pays
for, so a retried request orders nothing twice.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateways import validation as v
from gateways.auth import Principal
from gateways.channels import find_channel
from gateways.directory import limit, params
from gateways.errors import Conflict, Forbidden, NotFound, ValidationFailed
from gateways.payments.checkout import start_checkout
from gateways.payments.provider import Order
from gateways.services import Services, json_body, services
from infra.settings import PaymentSettings
from schemas.records.billing import SubscriptionCancelRequested
from views.channels import ChannelView
from views.chat_rooms import RoomKeys
from views.subscriptions import TIERS, SubscriptionView, points

RENEWAL_NAMESPACE = uuid.UUID("a9c3e7d4-5b21-4f0e-8c6a-1d2e3f4a5b6c")
MAX_MESSAGE_LENGTH = 500  # as a chat message
PAGE_LIMIT, PAGE_MAX_LIMIT = 100, 1000
REVENUE_DAYS = 30  # the revenue page's bits by day


def parse_tier(data: dict[str, Any]) -> int:
    """Twitch's tier id, 1000, 2000 or 3000 (a number or its digits as a string)."""
    raw = data.get("tier")
    if raw is None:
        raise ValidationFailed("'tier' is required: 1000, 2000 or 3000", field="tier", reason="unknown_tier")
    tier = raw if isinstance(raw, int) and not isinstance(raw, bool) else (
        v.ascii_int(raw, 9999) if isinstance(raw, str) else None)
    if tier not in TIERS:
        raise ValidationFailed(f"unknown tier {str(raw)[:16]!r}: expected 1000, 2000 or 3000", field="tier",
                               reason="unknown_tier")
    return tier


def price(cfg: PaymentSettings, tier: int) -> int:
    """One period of ``tier``, in the currency's minor unit (``GLASSCAST_PAYMENTS_SUBSCRIPTION_PRICES``)."""
    for item in cfg.subscription_prices:
        name, _, amount = item.partition(":")
        if int(name) == tier:
            return int(amount)
    raise ValidationFailed(f"tier {tier} is not sold here", field="tier", reason="unknown_tier")


def gift_count(data: dict[str, Any], maximum: int) -> int | None:
    raw = data.get("gift_count")
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= maximum:
        raise ValidationFailed(f"'gift_count' must be a whole number from 1 to {maximum}", field="gift_count")
    return raw


def pick_recipients(candidates: Sequence[str], count: int, rng: random.Random) -> list[str]:
    """``count`` distinct users chosen at random from the eligible ``candidates``."""
    pool = list(dict.fromkeys(candidates))
    if len(pool) < count:
        raise ValidationFailed(
            f"only {len(pool)} viewer(s) of this channel can be gifted a subscription now, not {count}: "
            "gifts go to signed-in viewers who watched or chatted recently, are not banned and not subscribed",
            field="gift_count", reason="not_enough_viewers", eligible=len(pool))
    return rng.sample(pool, count)


async def _channel(svc: Services, ref: str) -> ChannelView:
    try:
        return await find_channel(svc, ref)
    except NotFound as exc:
        raise ValidationFailed(exc.detail, field="channel_id") from None


async def _banned(svc: Services, channel_id: str, user_ids: list[str]) -> set[str]:
    if not user_ids:
        return set()
    flags = await svc.redis.smismember(RoomKeys(svc.settings.valkey.key_prefix, channel_id).chat("bans"), user_ids)
    return {u for u, f in zip(user_ids, flags, strict=True) if f}


async def _gift_to(svc: Services, principal: Principal, channel: ChannelView, ref: str, now: int) -> str:
    user = await svc.views.get_user(ref) or await svc.views.get_user_by_name(ref)
    if user is None or user.deleted:
        raise ValidationFailed(f"user '{ref}' does not exist", field="gift_to")
    if user.id == principal.user_id:
        raise ValidationFailed("you cannot gift a subscription to yourself; subscribe instead", field="gift_to",
                               reason="self_gift")
    if user.id == channel.owner_user_id:
        raise ValidationFailed("the broadcaster cannot be gifted a subscription to their own channel",
                               field="gift_to", reason="gift_to_broadcaster")
    if await _banned(svc, channel.id, [user.id]):
        raise ValidationFailed(f"'{user.username}' is banned from this channel and cannot be gifted a subscription",
                               field="gift_to", reason="recipient_banned")
    if await svc.views.subscriptions.subscribed_among(channel.id, [user.id], now):
        raise Conflict(f"'{user.username}' is already subscribed to this channel", field="gift_to",
                       reason="recipient_subscribed")
    return user.id


async def _random_viewers(svc: Services, principal: Principal, channel: ChannelView, count: int, now: int) -> list[str]:
    since = now - int(svc.settings.subscriptions.gift_viewer_window_s * 1000)
    subs = svc.views.subscriptions
    seen = [u for u in await subs.recent_viewers(channel.id, since)
            if u not in (principal.user_id, channel.owner_user_id)]
    excluded = await _banned(svc, channel.id, seen) | await subs.subscribed_among(channel.id, seen, now)
    return pick_recipients([u for u in seen if u not in excluded], count, random.SystemRandom())


async def subscribe(request: Request) -> JSONResponse:
    svc = services(request)
    principal = await svc.user_principal(request)
    data = await json_body(request)
    v.only(data, {"channel_id", "tier", "gift_to", "gift_count", "message"})
    ref = v.string(data, "channel_id", max_length=64)
    assert ref is not None
    tier = parse_tier(data)
    cfg = svc.settings.subscriptions
    count = gift_count(data, cfg.gift_count_max)
    gift_ref = v.string(data, "gift_to", required=False, max_length=64)
    message = v.text(data, "message", required=False, max_length=MAX_MESSAGE_LENGTH)
    if gift_ref is not None and count is not None:
        raise ValidationFailed("give either 'gift_to' or 'gift_count', not both", field="gift_count")
    channel = await _channel(svc, ref)
    now = svc.now_ms()
    gifts: tuple[str, ...] = ()
    if gift_ref is not None:
        gifts = (await _gift_to(svc, principal, channel, gift_ref, now),)
    elif count is not None:
        gifts = tuple(await _random_viewers(svc, principal, channel, count, now))
    else:
        if channel.owner_user_id == principal.user_id:
            raise ValidationFailed("you cannot subscribe to your own channel", field="channel_id",
                                   reason="self_subscription")
        current = await svc.views.subscriptions.get(principal.user_id, channel.id)
        if current is not None and current.active(now):
            raise Conflict(f"you are already subscribed to '{channel.name}' until {current.expires_at_ms} (ms)",
                           reason="already_subscribed", expires_at_ms=current.expires_at_ms)
    periods = max(1, len(gifts))
    what = f"{len(gifts)} gifted tier {tier // 1000} subscription(s)" if gifts else f"Tier {tier // 1000} subscription"
    order = Order(order_id=str(uuid.uuid4()), user_id=principal.user_id, kind="subscription",
                  amount_minor=price(svc.settings.payments, tier) * periods, currency=svc.settings.payments.currency,
                  description=f"{what} to {channel.name}", channel_id=channel.id, tier=tier,
                  gift_to_user_ids=gifts, message=message)
    return await _checkout(svc, request, order, channel, gifts or (principal.user_id,))


async def _checkout(svc: Services, request: Request, order: Order, channel: ChannelView,
                    recipients: tuple[str, ...]) -> JSONResponse:
    """Order through the provider; once a sandbox payment completed, wait (bounded) for the views to hold it."""
    subs = svc.views.subscriptions
    before = {u: await subs.get(u, channel.id) for u in recipients}
    answer = await start_checkout(svc, request, order)
    if answer.get("status") == "completed":
        async def granted() -> bool:
            for user_id, old in before.items():
                now = await subs.get(user_id, channel.id)
                if now is None or (old is not None and now.seq == old.seq):
                    return False
            return True
        await svc.wait_for(granted)
    body = {**answer, "channel_id": channel.id, "tier": str(order.tier), "amount_minor": order.amount_minor,
            "currency": order.currency, "gift_to_user_ids": list(order.gift_to_user_ids)}
    return JSONResponse(body, status_code=201, headers={"Cache-Control": "no-store"})


async def _json(svc: Services, views: list[SubscriptionView], now: int) -> list[dict[str, Any]]:
    channels = [await svc.views.get_channel(s.channel_id) for s in views]
    return [{**s.public(now), "channel_name": c.name if c is not None else None} for s, c in zip(views, channels,
                                                                                                 strict=True)]


async def my_subscriptions(request: Request) -> JSONResponse:
    svc = services(request)
    principal = await svc.user_principal(request)
    params(request.query_params, set())
    now = svc.now_ms()
    found = await svc.views.subscriptions.of_user(principal.user_id, now)
    return JSONResponse({"total": len(found), "subscriptions": await _json(svc, found, now)},
                        headers={"Cache-Control": "no-store"})


async def _mine(svc: Services, principal: Principal, request: Request) -> tuple[ChannelView, SubscriptionView]:
    channel = await find_channel(svc, request.path_params["channel_id"])
    current = await svc.views.subscriptions.get(principal.user_id, channel.id)
    if current is None or not current.active(svc.now_ms()):
        raise NotFound(f"you are not subscribed to '{channel.name}'")
    return channel, current


async def cancel(request: Request) -> JSONResponse:
    """Cancel at period end: the subscription stays until expires_at, and no renewal is taken."""
    svc = services(request)
    principal = await svc.user_principal(request)
    channel, current = await _mine(svc, principal, request)
    # The provider first: a refusal there (503) records nothing, and a cancellation taken there but not
    # recorded here comes back as the provider's own event (Stripe's customer.subscription.updated).
    stop = await svc.payments.cancel_at_period_end(current.provider_subscription_ref)
    if not current.cancelled:
        event = SubscriptionCancelRequested(
            occurred_at=svc.now_ms(), subscription_id=current.subscription_id, user_id=principal.user_id,
            channel_id=channel.id, source="USER", expires_at=current.expires_at_ms,
            provider_subscription_ref=current.provider_subscription_ref)
        await svc.emit(event, f"{principal.user_id}:{channel.id}")

        async def cancelled() -> bool:
            now = await svc.views.subscriptions.get(principal.user_id, channel.id)
            return now is not None and now.cancelled
        await svc.wait_for(cancelled)
        current = await svc.views.subscriptions.get(principal.user_id, channel.id) or current
    return JSONResponse({**current.public(svc.now_ms()), "cancelled": True, "status": "cancelled",
                         "channel_name": channel.name, "provider": stop.provider, "sandbox": stop.sandbox,
                         "cancelled_at_provider": stop.at_provider}, headers={"Cache-Control": "no-store"})


async def sandbox_renewal(request: Request) -> JSONResponse:
    """The sandbox's stand-in for a provider's renewal charge: pay the period after the current one now."""
    svc = services(request)
    principal = await svc.user_principal(request)
    if not svc.payments.sandbox:
        raise Forbidden("renewals come from the payment provider; this stand-in exists only with the sandbox "
                        "provider", reason="not_sandbox")
    channel, current = await _mine(svc, principal, request)
    if current.cancelled:
        raise Conflict("this subscription is cancelled at period end: no renewal is taken", reason="cancelled")
    tier = {symbol: tier for tier, symbol in TIERS.items()}.get(current.tier, 1000)
    cfg = svc.settings.payments
    # The period it pays for names the order: a retried request is the same order, paid once.
    order_id = str(uuid.uuid5(RENEWAL_NAMESPACE, f"{current.subscription_id}:{current.expires_at_ms}"))
    order = Order(order_id=order_id, user_id=principal.user_id, kind="subscription",
                  amount_minor=price(cfg, tier), currency=cfg.currency,
                  description=f"Tier {tier // 1000} subscription to {channel.name} (sandbox renewal)",
                  channel_id=channel.id, tier=tier)
    return await _checkout(svc, request, order, channel, (principal.user_id,))


async def channel_subscriptions(request: Request) -> JSONResponse:
    """The owner's view of a channel's subscribers: who, which tier, how many, and the points."""
    svc = services(request)
    principal = await svc.user_principal(request)
    channel = await find_channel(svc, request.path_params["channel_id"])
    if channel.owner_user_id != principal.user_id:
        raise Forbidden("only the channel's owner may see its subscribers")
    count = limit(params(request.query_params, {"limit"}), PAGE_LIMIT, PAGE_MAX_LIMIT)
    now = svc.now_ms()
    every = await svc.views.subscriptions.of_channel(channel.id, now)
    by_tier = {str(t): sum(s.tier == symbol for s in every) for t, symbol in TIERS.items()}
    found = every[:count]
    users = [await svc.views.get_user(s.user_id) for s in found]
    days = await svc.ledger.bits_by_day(channel.id, now, REVENUE_DAYS)
    return JSONResponse({"channel_id": channel.id, "total": len(every), "points": points(every), "by_tier": by_tier,
                         "subscribers": [{**s.public(now), "username": u.username if u is not None else None}
                                         for s, u in zip(found, users, strict=True)],
                         "bits_by_day": [{"day": f"{d[:4]}-{d[4:6]}-{d[6:]}", "bits": bits} for d, bits in days]},
                        headers={"Cache-Control": "private, no-store"})


routes = [
    Route("/v1/subscriptions", subscribe, methods=["POST"]),
    Route("/v1/me/subscriptions", my_subscriptions, methods=["GET"]),
    Route("/v1/me/subscriptions/{channel_id}", cancel, methods=["DELETE"]),
    Route("/v1/me/subscriptions/{channel_id}/renewal", sandbox_renewal, methods=["POST"]),
    Route("/v1/channels/{channel_id}/subscriptions", channel_subscriptions, methods=["GET"]),
]

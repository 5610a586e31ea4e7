"""Bits: buying packs, the balance, and a channel's cheer leaderboard.

    POST /v1/bits/purchases                    {pack: "100"|"500"|...}   a checkout (gateways/payments/checkout.py)
    GET  /v1/me/bits                           {balance, owed, held, bought, spent, reversed, packs}
    GET  /v1/channels/{id}/bits/leaderboard?period=day|week|month|all&limit=

A balance is the fold of the user's ``billing.ledger`` events
(views/ledger.py), less the holds of cheers not yet folded: never a stored
number.  The packs and their prices are ``GLASSCAST_PAYMENTS_BIT_PACKS``.
A purchase with an ``Idempotency-Key`` header is one order however often it
is sent (its order id is derived from the user and the key); without one,
each request is a new order.  Periods are UTC calendar days, ISO weeks and
calendar months.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateways import validation as v
from gateways.channels import find_channel
from gateways.errors import BadRequest, ValidationFailed
from gateways.payments.checkout import start_checkout
from gateways.payments.provider import Order
from gateways.services import Services, json_body, services
from infra.settings import PaymentSettings
from views.ledger import derived_id
from views.ledger_store import PERIODS

LEADERBOARD_LIMIT, LEADERBOARD_MAX = 10, 100
IDEMPOTENCY_KEY_MAX = 255


def packs(cfg: PaymentSettings) -> dict[str, int]:
    """Pack name (its bits) -> price in minor units."""
    return {name: int(amount) for name, _, amount in (p.partition(":") for p in cfg.bit_packs)}


def order_id_for(request: Request, user_id: str, kind: str) -> str:
    """A new order id, or the one an ``Idempotency-Key`` header names for this user and kind of order."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return str(uuid.uuid4())
    if not 0 < len(key) <= IDEMPOTENCY_KEY_MAX or not key.isascii() or not key.isprintable():
        raise BadRequest(f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters")
    return derived_id("order", kind, user_id, key)


async def purchase(request: Request) -> JSONResponse:
    svc = services(request)
    principal = await svc.user_principal(request)
    data = await json_body(request)
    v.only(data, {"pack"})
    cfg = svc.settings.payments
    offered = packs(cfg)
    pack = data.get("pack")
    if isinstance(pack, int) and not isinstance(pack, bool) and 0 < pack < 10**9:
        pack = str(pack)
    if not isinstance(pack, str) or pack not in offered:
        shown = repr(pack[:32]) if isinstance(pack, str) else f"of type {type(pack).__name__}"
        raise ValidationFailed(f"unknown bit pack {shown}; packs: {', '.join(offered)}", field="pack",
                               reason="unknown_pack")
    order = Order(order_id=order_id_for(request, principal.user_id, "bits"), user_id=principal.user_id, kind="bits",
                  amount_minor=offered[pack], currency=cfg.currency, description=f"{pack} Bits", bits=int(pack))
    answer = await start_checkout(svc, request, order)
    return JSONResponse({**answer, "pack": pack, "bits": int(pack), "amount_minor": order.amount_minor,
                         "currency": order.currency}, status_code=201)


async def balance_json(svc: Services, user_id: str) -> dict[str, Any]:
    b = await svc.ledger.balance(user_id, svc.now_ms())
    cfg = svc.settings.payments
    return {"balance": b.balance, "owed": b.owed, "held": b.held, "bought": b.bought, "spent": b.spent,
            "reversed": b.reversed, "currency": cfg.currency, "provider": cfg.provider,
            "sandbox": svc.payments.sandbox,
            "packs": [{"pack": name, "bits": int(name), "amount_minor": amount} for name, amount in packs(cfg).items()]}


async def my_bits(request: Request) -> JSONResponse:
    svc = services(request)
    principal = await svc.user_principal(request)
    return JSONResponse(await balance_json(svc, principal.user_id))


async def leaderboard(request: Request) -> JSONResponse:
    svc = services(request)
    channel = await find_channel(svc, request.path_params["channel_id"])
    period = request.query_params.get("period") or "all"
    if period not in PERIODS:
        raise BadRequest(f"'period' must be one of {', '.join(PERIODS)}", field="period")
    limit = v.query_int(request.query_params.get("limit"), "limit", 1, LEADERBOARD_MAX, LEADERBOARD_LIMIT)
    rows = await svc.ledger.leaderboard(channel.id, period, svc.now_ms(), limit)
    entries = []
    for rank, (user_id, bits) in enumerate(rows, start=1):
        user = await svc.views.get_user(user_id)
        entries.append({"rank": rank, "user_id": user_id, "username": user.username if user else None,
                        "bits": bits})
    return JSONResponse({"channel_id": channel.id, "period": period, "entries": entries})


routes = [
    Route("/v1/bits/purchases", purchase, methods=["POST"]),
    Route("/v1/me/bits", my_bits, methods=["GET"]),
    Route("/v1/channels/{channel_id}/bits/leaderboard", leaderboard, methods=["GET"]),
]

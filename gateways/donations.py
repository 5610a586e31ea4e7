"""Donations: a tip with an amount and a message, through the payment provider.

    POST /v1/donations   {channel_id, amount_minor, currency?, message?}   a checkout (201)
    GET  /v1/channels/{id}/donations?limit=                                 the channel's last donations

Once paid, a donation is a ``DonationMade`` on the ledger topic (the ledger
worker, processors/ledger/) and a ``DONATION`` frame in the channel's chat
(gateways/payments/checkout.py).  The amount is bounded by
``GLASSCAST_PAYMENTS_DONATION_MIN_MINOR``/``_MAX_MINOR``, the currency is the
platform's, and donating to your own channel is refused; a refusal charges
nothing.  ``Idempotency-Key`` makes a retried request the same order
(gateways/bits.py).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateways import validation as v
from gateways.bits import order_id_for
from gateways.channels import find_channel
from gateways.errors import NotFound, ValidationFailed
from gateways.payments.checkout import start_checkout
from gateways.payments.provider import Order
from gateways.services import json_body, services

MESSAGE_MAX = 300  # characters, as Twitch's cheer messages
DONATIONS_LIMIT, DONATIONS_MAX = 20, 100


async def donate(request: Request) -> JSONResponse:
    svc = services(request)
    principal = await svc.user_principal(request)
    data = await json_body(request)
    v.only(data, {"channel_id", "amount_minor", "currency", "message"})
    cfg = svc.settings.payments
    ref = v.string(data, "channel_id", max_length=64)
    assert ref is not None
    try:
        channel = await find_channel(svc, ref)
    except NotFound as exc:
        raise ValidationFailed(exc.detail, field="channel_id") from None
    if channel.owner_user_id == principal.user_id:
        raise ValidationFailed("you cannot donate to your own channel", field="channel_id", reason="self_donation")
    amount = data.get("amount_minor")
    if not isinstance(amount, int) or isinstance(amount, bool) or not (
            cfg.donation_min_minor <= amount <= cfg.donation_max_minor):
        raise ValidationFailed(f"'amount_minor' must be a whole number from {cfg.donation_min_minor} to "
                               f"{cfg.donation_max_minor} ({cfg.currency} minor units)", field="amount_minor")
    currency = v.string(data, "currency", required=False, max_length=3)
    if currency is not None and currency.upper() != cfg.currency:
        raise ValidationFailed(f"donations are taken in {cfg.currency} only", field="currency")
    message = v.text(data, "message", required=False, max_length=MESSAGE_MAX)
    order = Order(order_id=order_id_for(request, principal.user_id, "donation"), user_id=principal.user_id,
                  kind="donation",
                  amount_minor=amount, currency=cfg.currency, description=f"Donation to {channel.name}",
                  channel_id=channel.id, message=message.strip() if message and message.strip() else None)
    answer = await start_checkout(svc, request, order)
    return JSONResponse({**answer, "channel_id": channel.id, "amount_minor": amount, "currency": cfg.currency,
                         "message": order.message}, status_code=201)


async def channel_donations(request: Request) -> JSONResponse:
    svc = services(request)
    channel = await find_channel(svc, request.path_params["channel_id"])
    limit = v.query_int(request.query_params.get("limit"), "limit", 1, DONATIONS_MAX, DONATIONS_LIMIT)
    return JSONResponse({"channel_id": channel.id, "donations": await svc.ledger.donations(channel.id, limit)})


routes = [
    Route("/v1/donations", donate, methods=["POST"]),
    Route("/v1/channels/{channel_id}/donations", channel_donations, methods=["GET"]),
]

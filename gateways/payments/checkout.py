"""Starting a checkout, and recording a payment: the one path every purchase takes.

``start_checkout`` records the order (``OrderPlaced`` on ``billing.payments``,
keyed by order id) before the provider hears of it, so no checkout exists
that the log does not know; then it opens the provider's checkout.  The
sandbox provider completes at once, and ``start_checkout`` then records the
``PaymentSucceeded`` itself before it answers.  Stripe reports the payment
later, by webhook (gateways/payments/webhook.py).

A first payment's event id is derived from the order, a renewal's or a
reversal's from the provider's event id (``payment_event_id``): however often
a payment is reported or recorded, consumers see one event id.

A donation is shown in its channel's chat (a ``DONATION`` frame) once its
payment is on the log.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request

from gateways.chat import frames
from gateways.chat.fanout import CONTROL
from gateways.payments.provider import Order
from gateways.services import Services
from schemas.records.billing import OrderPlaced, PaymentSucceeded
from views.errors import VALKEY_UNAVAILABLE
from views.ledger import derived_id

log = logging.getLogger("glasscast.payments")


def payment_event_id(order_id: str, provider_event_id: str, renewal: bool) -> str:
    """One event id per first payment of an order, and one per provider event for renewals."""
    return derived_id("renewal", provider_event_id) if renewal else derived_id("first", order_id)


def payment_of(order: Order, provider: str, provider_event_id: str, now_ms: int, renewal: bool = False,
               subscription_ref: str | None = None) -> PaymentSucceeded:
    """The ``PaymentSucceeded`` for an order's payment."""
    return PaymentSucceeded(
        event_id=payment_event_id(order.order_id, provider_event_id, renewal), occurred_at=now_ms,
        order_id=order.order_id, provider=provider, provider_event_id=provider_event_id, kind=order.payment_kind,
        user_id=order.user_id, channel_id=order.channel_id, tier=order.tier, bits=order.bits,
        gift_to_user_ids=order.gift_to_user_ids, message=order.message, amount_minor=order.amount_minor,
        currency=order.currency, renewal=renewal, provider_subscription_ref=subscription_ref)


async def record_payment(svc: Services, payment: PaymentSucceeded) -> None:
    """Put a payment on the log (acknowledged), then announce a donation in its channel's chat."""
    await svc.emit(payment, payment.order_id)
    if payment.kind == "DONATION" and payment.channel_id is not None and not payment.renewal:
        await announce_donation(svc, payment)


async def announce_donation(svc: Services, payment: PaymentSucceeded) -> None:
    """A DONATION frame in the channel's room (live only: the donation itself is on the ledger)."""
    user = await svc.views.get_user(payment.user_id)
    frame = frames.encode({
        "type": "DONATION", "id": payment.order_id, "channel_id": payment.channel_id,
        "user": {"id": payment.user_id, "username": user.username if user else None},
        "amount_minor": payment.amount_minor, "currency": payment.currency, "message": payment.message,
        "sandbox": payment.provider == "sandbox", "sent_at_ms": payment.occurred_at})
    try:
        await svc.chat.hub.publish(str(payment.channel_id), CONTROL, frame)
    except VALKEY_UNAVAILABLE as exc:
        log.warning("payments: donation %s recorded but not announced: %s", payment.order_id, exc)


async def start_checkout(svc: Services, request: Request, order: Order) -> dict[str, Any]:
    """Record the order, open the provider's checkout, and say where it stands."""
    provider = svc.payments
    now = svc.now_ms()
    await svc.emit(OrderPlaced(
        event_id=derived_id("order", order.order_id), occurred_at=now, order_id=order.order_id,
        provider=provider.name, kind=order.payment_kind, user_id=order.user_id, channel_id=order.channel_id,
        tier=order.tier, bits=order.bits, gift_to_user_ids=order.gift_to_user_ids, message=order.message,
        amount_minor=order.amount_minor, currency=order.currency, description=order.description,
        sandbox=provider.sandbox), order.order_id)
    return_url = f"{svc.settings.gateway_url}/?order={order.order_id}"
    checkout = await provider.checkout(order, return_url)
    if checkout.completed:
        await record_payment(svc, payment_of(order, provider.name, f"{provider.name}:{order.order_id}", now))
    return {"order_id": order.order_id, "provider": provider.name, "sandbox": provider.sandbox,
            "checkout_url": checkout.url, "status": "completed" if checkout.completed else "pending"}

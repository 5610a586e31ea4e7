"""``POST /v1/payments/stripe/webhook``: Stripe's events, verified, recorded once.

The body is checked against the ``Stripe-Signature`` header before anything
else (gateways/payments/stripe_provider.py); a bad or stale signature is a
400 and changes nothing.  A verified event is then idempotent by its Stripe
event id: once its outcome is on the log the id is remembered
(``payments:stripe-event:{id}``, kept ``SEEN_TTL_S``, longer than Stripe
retries), and a replay is answered 200 without producing anything.  The id is
remembered only after the log acknowledged the outcome, so a gateway that dies
in between is sent the event again by Stripe and produces it again under the
same derived event id, which consumers ignore.

Order does not matter (https://docs.stripe.com/webhooks#event-ordering):

* an order's first payment is recorded once however many events report it
  (``checkout.session.completed`` and ``async_payment_succeeded``);
* a renewal, a reversal or a cancellation carries its own Stripe event id; a
  cancellation (``customer.subscription.deleted``, or ``.updated`` with
  ``cancel_at_period_end``: one made in Stripe's portal, or the echo of our
  own) is a ``SubscriptionCancelRequested`` that the subscription processor
  applies once however often it comes;
* a refund or dispute names its order through the charge's metadata or the
  payment intent its checkout reported; one that arrives before that checkout
  is answered 503 (``payment_not_yet_known``), and Stripe delivers it again
  later, by which time the payment is known;
* the ledger applies a reversal that is logged before its payment once the
  payment is logged (views/ledger.py).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateways.errors import BadRequest, NotFound, PayloadTooLarge, Unavailable
from gateways.payments.checkout import payment_of, record_payment
from gateways.payments.stripe_events import Cancelled, Paid, Reversed, outcome_of
from gateways.payments.stripe_provider import SignatureInvalid, StripeProvider
from gateways.services import Services, services
from schemas.records.billing import PaymentReversed, SubscriptionCancelRequested
from views.ledger import derived_id

log = logging.getLogger("glasscast.payments")

SEEN_TTL_S = 30 * 86_400  # Stripe retries an undelivered event for up to three days
WEBHOOK_MAX_BYTES = 512 * 1024
# A user's subscription to a channel has one id for every period (processors/subscriptions/grants.py).
SUBSCRIPTION_NAMESPACE = uuid.UUID("0f6d1c2a-8a43-4c4e-9a55-3e1f7b0c9d21")


def _k(svc: Services, kind: str, ref: str) -> str:
    return f"{svc.settings.valkey.key_prefix}payments:{kind}:{ref}"


async def _body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > WEBHOOK_MAX_BYTES:
            raise PayloadTooLarge(f"webhook body over {WEBHOOK_MAX_BYTES} bytes")
    return bytes(body)


async def stripe_webhook(request: Request) -> JSONResponse:
    svc = services(request)
    provider = svc.payments
    if not isinstance(provider, StripeProvider) or not str(svc.settings.payments.stripe_webhook_secret):
        raise NotFound("Stripe webhooks are not configured on this platform", reason="stripe_not_configured")
    try:
        event = provider.verify(await _body(request), request.headers.get("stripe-signature"))
    except SignatureInvalid as exc:
        log.warning("payments: Stripe webhook refused: %s", exc)
        raise BadRequest(str(exc), reason="invalid_signature") from None
    event_id = str(event["id"])
    if await svc.redis.exists(_k(svc, "stripe-event", event_id)):
        return JSONResponse({"received": True, "duplicate": True, "type": event.get("type")})
    await handle_event(svc, event)
    await svc.redis.set(_k(svc, "stripe-event", event_id), "1", ex=SEEN_TTL_S)
    return JSONResponse({"received": True, "duplicate": False, "type": event.get("type")})


async def handle_event(svc: Services, event: dict[str, Any]) -> None:
    """Put what one verified event means on the log (acknowledged)."""
    event_id, now = str(event["id"]), svc.now_ms()
    outcome = outcome_of(event)
    if isinstance(outcome, Paid):
        if outcome.payment_intent:
            await svc.redis.set(_k(svc, "intent", outcome.payment_intent), outcome.order.order_id, ex=SEEN_TTL_S * 12)
        if not outcome.renewal and await svc.redis.exists(_k(svc, "paid", outcome.order.order_id)):
            return  # the order's first payment is on the log already (another event reported it)
        await record_payment(svc, payment_of(outcome.order, "stripe", event_id, now, outcome.renewal,
                                             outcome.subscription_ref))
        if not outcome.renewal:
            await svc.redis.set(_k(svc, "paid", outcome.order.order_id), event_id, ex=SEEN_TTL_S * 12)
        log.info("payments: Stripe %s for order %s recorded", event.get("type"), outcome.order.order_id)
    elif isinstance(outcome, Reversed):
        order_id = outcome.order_id
        if order_id is None and outcome.payment_intent:
            raw = await svc.redis.get(_k(svc, "intent", outcome.payment_intent))
            order_id = raw.decode() if isinstance(raw, bytes) else raw
        if order_id is None:
            raise Unavailable("the payment this event reverses is not known yet; deliver it again later",
                              reason="payment_not_yet_known", retry_after_s=60)
        await svc.emit(PaymentReversed(
            event_id=derived_id("reversed", event_id), occurred_at=now, order_id=order_id, provider="stripe",
            provider_event_id=event_id, kind=outcome.kind, amount_minor=outcome.amount_minor,
            currency=outcome.currency), order_id)
        log.info("payments: Stripe %s for order %s recorded", event.get("type"), order_id)
    elif isinstance(outcome, Cancelled):
        sub_id = str(uuid.uuid5(SUBSCRIPTION_NAMESPACE, f"{outcome.user_id}:{outcome.channel_id}"))
        await svc.emit(SubscriptionCancelRequested(
            event_id=derived_id("cancel", event_id), occurred_at=now, subscription_id=sub_id,
            user_id=outcome.user_id, channel_id=outcome.channel_id, source="PROVIDER", expires_at=outcome.ends_at_ms,
            provider_subscription_ref=outcome.subscription_ref), f"{outcome.user_id}:{outcome.channel_id}")
        log.info("payments: Stripe %s: subscription %s cancelled at period end", event.get("type"),
                 outcome.subscription_ref)


routes = [Route("/v1/payments/stripe/webhook", stripe_webhook, methods=["POST"])]

"""The Stripe provider's pure parts: the Checkout Session it asks for, the webhook check, and event mapping.

Webhooks here are signed exactly as Stripe signs them: ``Stripe-Signature:
t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the endpoint secret>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import pytest

from gateways.payments.provider import Order
from gateways.payments.stripe_events import Cancelled, Ignored, Paid, Reversed, order_metadata, outcome_of
from gateways.payments.stripe_provider import SignatureInvalid, StripeProvider
from infra.settings import PaymentSettings, Secret

SECRET = "whsec_test_" + "k" * 24
USER, CHANNEL = str(uuid.uuid4()), str(uuid.uuid4())


def sign(body: bytes, secret: str = SECRET, at: int | None = None) -> str:
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def provider(**changes: Any) -> StripeProvider:
    cfg = PaymentSettings(provider="stripe", stripe_secret_key=Secret("sk_test_x"),
                          stripe_webhook_secret=Secret(SECRET), **changes)
    return StripeProvider(cfg)


def order(**changes: Any) -> Order:
    base: dict[str, Any] = {"order_id": str(uuid.uuid4()), "user_id": USER, "kind": "bits", "amount_minor": 140,
                            "currency": "USD", "description": "100 Bits", "bits": 100}
    return Order(**{**base, **changes})


def event(kind: str, obj: dict[str, Any], event_id: str = "evt_1") -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": kind, "data": {"object": obj}}


def test_a_bit_pack_is_a_one_time_payment_carrying_the_order() -> None:
    o = order()
    params = provider().session_params(o, "http://x/return")
    assert params["mode"] == "payment" and params["client_reference_id"] == o.order_id
    assert params["line_items"] == [{"price_data": {"currency": "usd", "unit_amount": 140,
                                                    "product_data": {"name": "100 Bits"}}, "quantity": 1}]
    assert params["metadata"]["order_id"] == o.order_id == params["payment_intent_data"]["metadata"]["order_id"]


def test_a_subscription_is_monthly_and_a_named_price_is_used() -> None:
    o = order(kind="subscription", bits=None, tier=2000, channel_id=CHANNEL, amount_minor=999)
    params = provider(stripe_prices=("tier_2000=price_T2",)).session_params(o, "http://x/r")
    assert params["mode"] == "subscription" and params["line_items"] == [{"price": "price_T2", "quantity": 1}]
    assert params["subscription_data"]["metadata"]["channel_id"] == CHANNEL
    gifts = tuple(str(uuid.uuid4()) for _ in range(30))
    gift = provider().session_params(o.__class__(**{**o.__dict__, "gift_to_user_ids": gifts}), "http://x/r")
    assert gift["mode"] == "payment" and gift["line_items"][0]["quantity"] == 30
    assert all(len(v) <= 500 for v in gift["metadata"].values())


def test_metadata_round_trips_the_order() -> None:
    gifts = tuple(str(uuid.uuid4()) for _ in range(27))
    o = order(kind="subscription", bits=None, tier=1000, channel_id=CHANNEL, gift_to_user_ids=gifts, message="hi",
              amount_minor=27 * 499)
    obj = {"metadata": order_metadata(o), "amount_total": o.amount_minor, "currency": "usd", "payment_status": "paid",
           "payment_intent": "pi_1", "subscription": None}
    outcome = outcome_of(event("checkout.session.completed", obj))
    assert isinstance(outcome, Paid) and outcome.order == o and not outcome.renewal and outcome.payment_intent == "pi_1"


def test_webhook_signatures() -> None:
    p = provider()
    body = json.dumps(event("charge.refunded", {"payment_intent": "pi_1", "amount_refunded": 140,
                                                "currency": "usd"})).encode()
    assert p.verify(body, sign(body))["id"] == "evt_1"
    with pytest.raises(SignatureInvalid):
        p.verify(body.replace(b"140", b"999"), sign(body))  # tampered after signing
    with pytest.raises(SignatureInvalid):
        p.verify(body, sign(body, secret="whsec_other"))
    with pytest.raises(SignatureInvalid):
        p.verify(body, sign(body, at=int(time.time()) - 3600))  # a replay of an old delivery
    with pytest.raises(SignatureInvalid):
        p.verify(body, None)
    with pytest.raises(SignatureInvalid):
        p.verify(b"not json", sign(b"not json"))


def test_events_map_to_outcomes() -> None:
    o = order(kind="subscription", bits=None, tier=1000, channel_id=CHANNEL, amount_minor=499)
    meta = order_metadata(o)
    renewal = outcome_of(event("invoice.paid", {"billing_reason": "subscription_cycle", "amount_paid": 499,
                                                "currency": "usd", "subscription": "sub_1",
                                                "parent": {"subscription_details": {"metadata": meta}}}))
    assert isinstance(renewal, Paid) and renewal.renewal and renewal.subscription_ref == "sub_1"
    first = outcome_of(event("invoice.paid", {"billing_reason": "subscription_create", "subscription": "sub_1"}))
    assert isinstance(first, Ignored)
    unpaid = outcome_of(event("checkout.session.completed", {"metadata": meta, "payment_status": "unpaid"}))
    assert isinstance(unpaid, Ignored)
    gone = outcome_of(event("customer.subscription.deleted", {"id": "sub_1", "metadata": meta}))
    assert gone == Cancelled(USER, CHANNEL, "sub_1")
    dispute = outcome_of(event("charge.dispute.created", {"payment_intent": "pi_9", "amount": 140,
                                                          "currency": "usd"}))
    assert dispute == Reversed("CHARGEBACK", None, "pi_9", 140, "USD")
    assert isinstance(outcome_of(event("customer.created", {})), Ignored)
    assert isinstance(outcome_of({"type": "checkout.session.completed", "data": {"object": "x"}}), Ignored)


def test_secrets_stay_out_of_reprs() -> None:
    cfg = PaymentSettings(stripe_secret_key=Secret("sk_live_abc"), stripe_webhook_secret=Secret(SECRET))
    assert "sk_live_abc" not in repr(cfg) and SECRET not in repr(cfg)


def test_a_subscription_set_to_cancel_at_period_end_is_a_cancellation() -> None:
    meta = order_metadata(Order(order_id="o-2", user_id=USER, kind="subscription", amount_minor=499,
                                currency="USD", description="Tier 1", channel_id=CHANNEL, tier=1000))
    portal = outcome_of(event("customer.subscription.updated", {
        "id": "sub_2", "object": "subscription", "cancel_at_period_end": True, "cancel_at": 1_900_000_000,
        "metadata": meta}))
    assert portal == Cancelled(USER, CHANNEL, "sub_2", 1_900_000_000_000)
    for other in ({"cancel_at_period_end": False}, {}):  # another change, or a cancellation withdrawn
        obj = {"id": "sub_2", "object": "subscription", "metadata": meta, **other}
        assert isinstance(outcome_of(event("customer.subscription.updated", obj)), Ignored)
    not_ours = {"id": "sub_3", "object": "subscription", "cancel_at_period_end": True, "metadata": {}}
    assert isinstance(outcome_of(event("customer.subscription.updated", not_ours)), Ignored)

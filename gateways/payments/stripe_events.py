"""Stripe webhook events as typed outcomes: pure, over the JSON Stripe sent (already verified).

Stripe sends events at least once and in no particular order
(https://docs.stripe.com/webhooks#handle-duplicate-events,
https://docs.stripe.com/webhooks#event-ordering).  What we take from them:

    checkout.session.completed (paid) and checkout.session.async_payment_succeeded
                                        -> Paid: an order's first payment (its metadata is our order)
    invoice.paid, billing_reason subscription_cycle
                                        -> Paid(renewal=True): the subscription's order paid again
    customer.subscription.deleted       -> Cancelled: the recurring payment stopped
    customer.subscription.updated, cancel_at_period_end true
                                        -> Cancelled: set to end with its period (our own
                                           cancellation echoed, or one made in Stripe's portal)
    charge.refunded                     -> Reversed(REFUND)
    charge.dispute.created              -> Reversed(CHARGEBACK)

Everything else, and an invoice of a subscription's first period (its
Checkout Session already reported that payment), is ``Ignored``.  Our order
travels in the metadata of the session and of the payment intent or
subscription it creates (``order_metadata``); Stripe's metadata values are
limited to 500 characters (https://docs.stripe.com/metadata#data), so gift
recipients are spread over several keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateways.payments.provider import KINDS, Order, OrderKind
from schemas.records.billing import ReversalKind

METADATA_VALUE_MAX = 500
GIFTS_PER_KEY = 13  # 13 uuids and their commas fit in one metadata value


@dataclass(frozen=True)
class Paid:
    order: Order
    renewal: bool
    subscription_ref: str | None
    payment_intent: str | None


@dataclass(frozen=True)
class Reversed:
    kind: ReversalKind
    order_id: str | None  # from the charge's metadata, when it carries it
    payment_intent: str | None  # else the order is found through the payment intent
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class Cancelled:
    user_id: str
    channel_id: str
    subscription_ref: str
    ends_at_ms: int | None = None  # when Stripe ends it, if the event says


@dataclass(frozen=True)
class Ignored:
    type: str


Outcome = Paid | Reversed | Cancelled | Ignored


def order_metadata(order: Order) -> dict[str, str]:
    """The order as Stripe metadata (string values of at most 500 characters)."""
    meta = {"order_id": order.order_id, "user_id": order.user_id, "kind": order.kind,
            "description": order.description[:METADATA_VALUE_MAX]}
    if order.channel_id:
        meta["channel_id"] = order.channel_id
    if order.tier is not None:
        meta["tier"] = str(order.tier)
    if order.bits is not None:
        meta["bits"] = str(order.bits)
    if order.message:
        meta["message"] = order.message[:METADATA_VALUE_MAX]
    gifts = order.gift_to_user_ids
    for i in range(0, len(gifts), GIFTS_PER_KEY):
        meta[f"gift_to_{i // GIFTS_PER_KEY}"] = ",".join(gifts[i:i + GIFTS_PER_KEY])
    return meta


def order_from_metadata(meta: dict[str, Any], amount_minor: int, currency: str) -> Order | None:
    """Our order back from Stripe metadata; None when the object is not one of ours."""
    kind = meta.get("kind")
    if not meta.get("order_id") or not meta.get("user_id") or kind not in KINDS:
        return None
    gifts: list[str] = []
    i = 0
    while f"gift_to_{i}" in meta:
        gifts += [g for g in str(meta[f"gift_to_{i}"]).split(",") if g]
        i += 1
    kind_name: OrderKind = kind
    return Order(order_id=str(meta["order_id"]), user_id=str(meta["user_id"]), kind=kind_name,
                 amount_minor=amount_minor, currency=currency.upper(), description=str(meta.get("description", "")),
                 channel_id=meta.get("channel_id") or None, tier=_int(meta.get("tier")), bits=_int(meta.get("bits")),
                 gift_to_user_ids=tuple(gifts), message=meta.get("message") or None)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _id(value: Any) -> str | None:
    """An expandable field: an id, or the expanded object's id."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def outcome_of(event: dict[str, Any]) -> Outcome:
    """What one verified Stripe event means to us."""
    kind = str(event.get("type", ""))
    obj = (event.get("data") or {}).get("object") or {}
    if not isinstance(obj, dict):
        return Ignored(kind)
    if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        if kind == "checkout.session.completed" and obj.get("payment_status") not in ("paid", "no_payment_required"):
            return Ignored(kind)  # an async payment method: async_payment_succeeded follows
        order = order_from_metadata(obj.get("metadata") or {}, int(obj.get("amount_total") or 0),
                                    str(obj.get("currency") or ""))
        if order is None:
            return Ignored(kind)
        return Paid(order, renewal=False, subscription_ref=_id(obj.get("subscription")),
                    payment_intent=_id(obj.get("payment_intent")))
    if kind == "invoice.paid":
        if obj.get("billing_reason") != "subscription_cycle":
            return Ignored(kind)
        details = obj.get("subscription_details") or ((obj.get("parent") or {}).get("subscription_details")) or {}
        order = order_from_metadata(details.get("metadata") or {}, int(obj.get("amount_paid") or 0),
                                    str(obj.get("currency") or ""))
        sub_ref = _id(obj.get("subscription")) or _id(details.get("subscription"))
        if order is None:
            return Ignored(kind)
        return Paid(order, renewal=True, subscription_ref=sub_ref, payment_intent=_id(obj.get("payment_intent")))
    if kind in ("customer.subscription.deleted", "customer.subscription.updated"):
        meta = obj.get("metadata") or {}
        if not meta.get("user_id") or not meta.get("channel_id") or not _id(obj):
            return Ignored(kind)
        if kind == "customer.subscription.updated" and obj.get("cancel_at_period_end") is not True:
            return Ignored(kind)  # another change (or a cancellation withdrawn): nothing we act on
        ends = obj.get("cancel_at") or obj.get("ended_at")
        return Cancelled(str(meta["user_id"]), str(meta["channel_id"]), str(_id(obj)),
                         int(ends) * 1000 if isinstance(ends, int) and not isinstance(ends, bool) else None)
    if kind == "charge.refunded":
        return Reversed("REFUND", (obj.get("metadata") or {}).get("order_id") or None,
                        _id(obj.get("payment_intent")), int(obj.get("amount_refunded") or 0),
                        str(obj.get("currency") or "").upper())
    if kind == "charge.dispute.created":
        return Reversed("CHARGEBACK", (obj.get("metadata") or {}).get("order_id") or None,
                        _id(obj.get("payment_intent")), int(obj.get("amount") or 0),
                        str(obj.get("currency") or "").upper())
    return Ignored(kind)

"""The pure half of subscriptions: what a paid subscription payment, a cancellation or the clock does.

A ``PaymentSucceeded`` of kind SUBSCRIPTION grants one paid period to each
recipient: the payer, or every user of ``gift_to_user_ids``.  For a recipient
with no active subscription to the channel it is a ``SubscriptionStarted``
(months keep counting across a gap, as Twitch's cumulative months do); for one
whose subscription is still running it is a ``SubscriptionRenewed`` that adds
a period after the current one and one month (a Stripe renewal, a sandbox
renewal, a gift to a subscriber).  Money taken is never turned away: a payment
that arrives for a subscription cancelled at period end still buys its period.

A refund or chargeback (``PaymentReversed``) of a subscription order ends at
once (REFUNDED) the subscriptions that order paid for.

Every id is derived, so the same payment read twice decides the same thing:

* ``subscription_id``: from (user, channel), stable across renewals and gaps;
* the payment's ``dedupe_key``: the provider's event id for a renewal, the
  order id for a first payment (the contract produces each once per order);
* each event id: from the dedupe key and the recipient.

``SubState`` is the processor's own record of a subscription (not a view: the
decision is made, and written with its events, before they reach the log;
processors/subscriptions/state.py).  ``due_ms`` is when the expiry timer ends
it: at ``expires_at``, or ``renewal_grace_ms`` later for a subscription its
provider renews on its own (a Stripe subscription nobody cancelled), so a
renewal paid a little late does not end it first.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, replace
from typing import Any

from schemas.records.billing import (
    PaymentSucceeded,
    SubscriptionEnded,
    SubscriptionRenewed,
    SubscriptionStarted,
    SubscriptionTier,
)
from views.subscriptions import subscription_id

EVENT_NAMESPACE = uuid.UUID("6a2f5e1b-17c9-4b8e-a0d4-92c3f1e8b705")
TIER_SYMBOLS: dict[int, SubscriptionTier] = {1000: "TIER_1", 2000: "TIER_2", 3000: "TIER_3"}


def derived_id(*parts: str) -> str:
    """An event id derived from what caused the event."""
    return str(uuid.uuid5(EVENT_NAMESPACE, ":".join(parts)))


def dedupe_key(payment: PaymentSucceeded) -> str:
    """What makes a payment the same payment when it is read again."""
    if payment.renewal:
        return f"renewal:{payment.provider}:{payment.provider_event_id}"
    return f"order:{payment.order_id}"


def recipients(payment: PaymentSucceeded) -> tuple[str, ...]:
    """Who the payment's periods are for, each once, in the order given."""
    return tuple(dict.fromkeys(payment.gift_to_user_ids)) or (payment.user_id,)


@dataclass(frozen=True)
class SubState:
    """What the processor knows of one subscription."""

    subscription_id: str
    user_id: str
    channel_id: str
    tier: SubscriptionTier
    expires_at_ms: int
    months_total: int
    ended: bool = False
    cancelled: bool = False
    provider_subscription_ref: str | None = None

    def active(self, at_ms: int) -> bool:
        return not self.ended and self.expires_at_ms > at_ms

    def due_ms(self, renewal_grace_ms: int) -> int:
        """When the expiry timer ends it unless it is renewed first."""
        renews = self.provider_subscription_ref is not None and not self.cancelled
        return self.expires_at_ms + (renewal_grace_ms if renews else 0)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SubState:
        return cls(**data)


Grant = SubscriptionStarted | SubscriptionRenewed


class NotASubscriptionPayment(ValueError):
    """A payment that cannot buy a subscription (no channel, no known tier)."""


def grant(payment: PaymentSucceeded, recipient: str, state: SubState | None,
          period_ms: int) -> tuple[Grant, SubState]:
    """The event one recipient's period is, and the subscription after it."""
    if payment.channel_id is None:
        raise NotASubscriptionPayment(f"subscription payment {payment.order_id} names no channel")
    tier = TIER_SYMBOLS.get(payment.tier or 0)
    if tier is None:
        raise NotASubscriptionPayment(f"subscription payment {payment.order_id} has tier {payment.tier}")
    channel_id = payment.channel_id
    gift = recipient != payment.user_id
    sub_id = subscription_id(recipient, channel_id)
    event_id = derived_id(dedupe_key(payment), recipient)
    # A gift's recipient paid nothing; the payer's own period carries the payment (schemas/billing/*.avsc).
    amount = 0 if gift else payment.amount_minor
    ref = None if gift else payment.provider_subscription_ref
    gifted_by = payment.user_id if gift else None
    at = payment.occurred_at
    if state is not None and state.active(at):
        expires = state.expires_at_ms + period_ms
        months = state.months_total + 1
        renewed = SubscriptionRenewed(
            event_id=event_id, occurred_at=at, subscription_id=sub_id, user_id=recipient, channel_id=channel_id,
            tier=tier, expires_at=expires, months_total=months, amount_minor=amount, currency=payment.currency,
            payment_ref=payment.provider_event_id, is_gift=gift, gifted_by_user_id=gifted_by,
            message=None if gift else payment.message,
            provider_subscription_ref=ref or state.provider_subscription_ref)
        return renewed, replace(state, tier=tier, expires_at_ms=expires, months_total=months,
                                provider_subscription_ref=ref or state.provider_subscription_ref)
    months = (state.months_total if state is not None else 0) + 1
    started = SubscriptionStarted(
        event_id=event_id, occurred_at=at, subscription_id=sub_id, user_id=recipient, channel_id=channel_id,
        tier=tier, expires_at=at + period_ms, is_gift=gift, gifted_by_user_id=gifted_by, amount_minor=amount,
        currency=payment.currency, payment_ref=payment.provider_event_id, months_total=months,
        message=None if gift else payment.message, provider_subscription_ref=ref)
    return started, SubState(subscription_id=sub_id, user_id=recipient, channel_id=channel_id, tier=tier,
                             expires_at_ms=at + period_ms, months_total=months, provider_subscription_ref=ref)


def cancel(state: SubState) -> SubState | None:
    """The subscription cancelled at period end (None: nothing changes)."""
    if state.ended or state.cancelled:
        return None
    return replace(state, cancelled=True)


def revoke(state: SubState, reversal_event_id: str, at_ms: int) -> tuple[SubscriptionEnded, SubState] | None:
    """The end of a subscription whose payment was refunded or charged back, or None if it already ended."""
    if state.ended:
        return None
    ended = SubscriptionEnded(
        event_id=derived_id("reversed", reversal_event_id, state.subscription_id), occurred_at=at_ms,
        subscription_id=state.subscription_id, user_id=state.user_id, channel_id=state.channel_id,
        reason="REFUNDED")
    return ended, replace(state, ended=True)


def expire(state: SubState, now_ms: int, renewal_grace_ms: int) -> tuple[SubscriptionEnded, SubState] | None:
    """The end of a subscription whose period ran out unrenewed by ``now_ms``, or None if it is not due."""
    if state.ended or now_ms < state.due_ms(renewal_grace_ms):
        return None
    ended = SubscriptionEnded(
        event_id=derived_id("expired", state.subscription_id, str(state.expires_at_ms)),
        occurred_at=state.expires_at_ms, subscription_id=state.subscription_id, user_id=state.user_id,
        channel_id=state.channel_id, reason="EXPIRED")
    return ended, replace(state, ended=True)

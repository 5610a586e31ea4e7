"""What every payment provider offers: an ``Order`` in, a ``Checkout`` out.

A subscription cancelled by its subscriber is also cancelled at the provider
(``cancel_at_period_end``), so that a recurring payment the provider holds is
not charged again.

An order is ours: its ``order_id`` (a uuid4) is the key of ``billing.payments``
and the provider's idempotency key, so a retried checkout is the same checkout.
Providers live in their own modules (``sandbox_provider.py``, ``stripe_provider.py``)
and are chosen by name from ``GLASSCAST_PAYMENTS_PROVIDER`` (``open_provider``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from schemas.records.billing import PaymentKind

OrderKind = Literal["subscription", "bits", "donation"]

KINDS: dict[OrderKind, PaymentKind] = {"subscription": "SUBSCRIPTION", "bits": "BITS", "donation": "DONATION"}


@dataclass(frozen=True)
class Order:
    """One thing a user pays for once: a subscription (or gifts), a bit pack or a donation."""

    order_id: str
    user_id: str
    kind: OrderKind
    amount_minor: int
    currency: str
    description: str
    channel_id: str | None = None
    tier: int | None = None
    bits: int | None = None
    gift_to_user_ids: tuple[str, ...] = ()
    message: str | None = None

    @property
    def payment_kind(self) -> PaymentKind:
        return KINDS[self.kind]


@dataclass(frozen=True)
class Checkout:
    """Where the buyer pays: ``url`` to send them to, or ``completed`` when nothing is left to do."""

    provider: str
    checkout_id: str
    url: str | None
    completed: bool


@dataclass(frozen=True)
class RenewalStop:
    """A subscription set to end at its period's end at the provider: no renewal is charged after it.

    ``at_provider`` says whether the provider held a recurring subscription it was told about (a Stripe
    subscription id); a subscription without one (a gift, a sandbox one) has nothing to stop there.
    """

    provider: str
    sandbox: bool
    subscription_ref: str | None
    at_provider: bool


class PaymentProvider(Protocol):
    name: str
    sandbox: bool

    async def checkout(self, order: Order, return_url: str) -> Checkout:
        """Open the provider's checkout for ``order`` (idempotent by ``order.order_id``)."""
        ...

    async def cancel_at_period_end(self, subscription_ref: str | None) -> RenewalStop:
        """Have the provider stop renewing ``subscription_ref`` after its current period (idempotent)."""
        ...

    async def close(self) -> None:
        """Release the provider's connections."""
        ...

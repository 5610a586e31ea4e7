"""The payment provider a gateway uses, by name (``GLASSCAST_PAYMENTS_PROVIDER``)."""

from __future__ import annotations

from gateways.payments.provider import PaymentProvider
from gateways.payments.sandbox_provider import SandboxProvider
from gateways.payments.stripe_provider import StripeProvider
from infra.settings import PaymentSettings


def open_provider(cfg: PaymentSettings) -> PaymentProvider:
    """The sandbox, or Stripe with the configured keys."""
    return StripeProvider(cfg) if cfg.provider == "stripe" else SandboxProvider()

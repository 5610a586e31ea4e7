"""The sandbox provider: every checkout completes at once and no money moves.

It runs the embedded platform and the tests.  It says what it is wherever it
shows: API answers carry ``"sandbox": true`` (gateways/payments/checkout.py),
every checkout is logged with "SANDBOX", and the web app marks it.
"""

from __future__ import annotations

import logging

from gateways.payments.provider import Checkout, Order, RenewalStop

log = logging.getLogger("glasscast.payments")


class SandboxProvider:
    name = "sandbox"
    sandbox = True

    async def checkout(self, order: Order, return_url: str) -> Checkout:
        """Completed at once: the payment's event id is the order id, so a retry is the same payment."""
        log.info("payments: SANDBOX checkout for order %s (%s, %d %s): completed at once, no money moved",
                 order.order_id, order.kind, order.amount_minor, order.currency)
        return Checkout(provider=self.name, checkout_id=f"sandbox_{order.order_id}", url=None, completed=True)

    async def cancel_at_period_end(self, subscription_ref: str | None) -> RenewalStop:
        """Done at once: the sandbox charges no renewals of its own, so there is nothing to stop."""
        log.info("payments: SANDBOX cancellation at period end%s: done at once, no provider involved",
                 f" of {subscription_ref}" if subscription_ref else "")
        return RenewalStop(provider=self.name, sandbox=True, subscription_ref=subscription_ref, at_provider=True)

    async def close(self) -> None:
        return None

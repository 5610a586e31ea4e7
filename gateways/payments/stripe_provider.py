"""The Stripe provider: Checkout Sessions out, signed webhooks in (the official ``stripe`` SDK).

A subscription is a session in ``subscription`` mode (a monthly price); a bit
pack, a donation and gift subscriptions (paid once, as on Twitch) are
``payment`` mode.  The order id is the request's idempotency key
(https://docs.stripe.com/api/idempotent_requests), so a retried checkout is
the same session, and our order rides in the metadata of the session and of
the payment intent or subscription it makes (gateways/payments/stripe_events.py).
A price id from ``GLASSCAST_PAYMENTS_STRIPE_PRICES`` is used when one is
named, else the session carries the amount (``price_data``).

A subscription its subscriber cancels is set to cancel at period end at
Stripe (``cancel_at_period_end``: Stripe charges no further invoice and ends
it when the paid period runs out, https://docs.stripe.com/billing/subscriptions/cancel),
keyed ``cancel-at-period-end-<subscription id>`` so a retry is the same
request.  Stripe then reports it with ``customer.subscription.updated``, which
is folded into the same cancellation (gateways/payments/stripe_events.py).

Webhooks are verified with ``stripe.Webhook.construct_event``: the
``Stripe-Signature`` header's ``v1`` is HMAC-SHA256 of ``"<t>.<body>"`` under
the endpoint's secret, and ``t`` must be within the tolerance
(https://docs.stripe.com/webhooks#verify-events).  The secret key and the
webhook secret are never logged.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import stripe

from gateways.errors import Unavailable
from gateways.payments.provider import Checkout, Order, RenewalStop
from gateways.payments.stripe_events import order_metadata
from infra.settings import PaymentSettings

log = logging.getLogger("glasscast.payments")

REQUEST_TIMEOUT_S = 20.0
NETWORK_RETRIES = 2  # the SDK retries with the same idempotency key


class _HTTPXClient(stripe.HTTPXClient):
    """The SDK's httpx client, sending the encoded form as ``content``: httpx deprecates raw bytes as ``data``."""

    def _get_request_args_kwargs(self, method: str, url: str, headers: Any, post_data: Any) -> list[Any]:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        data = kwargs.pop("data", None)
        if isinstance(data, bytes | str):
            kwargs["content"] = data
        elif data:
            kwargs["data"] = data
        return [args, kwargs]


class SignatureInvalid(ValueError):
    """A webhook whose signature, timestamp or body does not check out."""


class StripeProvider:
    name = "stripe"
    sandbox = False

    def __init__(self, cfg: PaymentSettings) -> None:
        self.cfg = cfg
        self.prices = dict(item.partition("=")[::2] for item in cfg.stripe_prices)
        self.http = _HTTPXClient(timeout=REQUEST_TIMEOUT_S)
        self.client = stripe.StripeClient(
            str(cfg.stripe_secret_key), base_addresses={"api": cfg.stripe_api_base.rstrip("/")},
            http_client=self.http, max_network_retries=NETWORK_RETRIES)

    def session_params(self, order: Order, return_url: str) -> dict[str, Any]:
        """The Checkout Session for an order (pure: the tests compare it)."""
        recurring = order.kind == "subscription" and not order.gift_to_user_ids
        quantity = max(1, len(order.gift_to_user_ids))
        price_key = (f"tier_{order.tier}" if order.kind == "subscription"
                     else f"bits_{order.bits}" if order.kind == "bits" else "")
        item: dict[str, Any]
        if price_key in self.prices and (order.kind == "bits" or recurring):
            item = {"price": self.prices[price_key], "quantity": 1}
        else:
            data: dict[str, Any] = {"currency": order.currency.lower(), "unit_amount": order.amount_minor // quantity,
                                    "product_data": {"name": order.description}}
            if recurring:
                data["recurring"] = {"interval": "month"}
            item = {"price_data": data, "quantity": quantity}
        meta = order_metadata(order)
        params: dict[str, Any] = {
            "mode": "subscription" if recurring else "payment", "line_items": [item],
            "client_reference_id": order.order_id, "metadata": meta,
            "success_url": return_url, "cancel_url": return_url}
        if recurring:
            params["subscription_data"] = {"metadata": meta}
        else:
            params["payment_intent_data"] = {"metadata": meta}
        return params

    async def checkout(self, order: Order, return_url: str) -> Checkout:
        """Create (or, on a retry, find) the order's Checkout Session."""
        try:
            session = await self.client.v1.checkout.sessions.create_async(
                self.session_params(order, return_url),  # type: ignore[arg-type]
                {"idempotency_key": f"checkout-{order.order_id}"})
        except stripe.StripeError as exc:
            log.warning("payments: Stripe refused the checkout of order %s: %s (%s)", order.order_id,
                        type(exc).__name__, exc.code or exc.http_status)
            raise Unavailable("the payment provider did not open a checkout; nothing was charged, try again",
                              reason="payment_provider_unavailable") from exc
        log.info("payments: Stripe checkout %s for order %s", session.id, order.order_id)
        return Checkout(provider=self.name, checkout_id=session.id, url=session.url, completed=False)

    async def cancel_at_period_end(self, subscription_ref: str | None) -> RenewalStop:
        """Stop the Stripe subscription renewing after its current period; nothing to do without one."""
        if subscription_ref is None:
            return RenewalStop(provider=self.name, sandbox=False, subscription_ref=None, at_provider=False)
        try:
            await self.client.v1.subscriptions.update_async(
                subscription_ref, {"cancel_at_period_end": True},
                {"idempotency_key": f"cancel-at-period-end-{subscription_ref}"})
        except stripe.InvalidRequestError as exc:
            if exc.code != "resource_missing":
                raise self._refused(subscription_ref, exc) from exc
            # Stripe holds no such subscription (it ended there already): nothing is left to renew.
            log.info("payments: Stripe subscription %s is gone already; nothing to cancel there", subscription_ref)
            return RenewalStop(provider=self.name, sandbox=False, subscription_ref=subscription_ref,
                               at_provider=False)
        except stripe.StripeError as exc:
            raise self._refused(subscription_ref, exc) from exc
        log.info("payments: Stripe subscription %s set to cancel at period end", subscription_ref)
        return RenewalStop(provider=self.name, sandbox=False, subscription_ref=subscription_ref, at_provider=True)

    @staticmethod
    def _refused(subscription_ref: str, exc: stripe.StripeError) -> Unavailable:
        log.warning("payments: Stripe refused to cancel subscription %s at period end: %s (%s)", subscription_ref,
                    type(exc).__name__, exc.code or exc.http_status)
        return Unavailable("the payment provider did not take the cancellation; nothing changed, try again",
                           reason="payment_provider_unavailable")

    def verify(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """The webhook's event as JSON once its signature checks out, else ``SignatureInvalid``."""
        try:
            stripe.Webhook.construct_event(payload, signature, str(self.cfg.stripe_webhook_secret),
                                           tolerance=self.cfg.stripe_webhook_tolerance_s)
            event = json.loads(payload)
        except stripe.SignatureVerificationError as exc:
            raise SignatureInvalid(f"Stripe-Signature does not check out: {exc.user_message or exc}") from None
        except ValueError:
            raise SignatureInvalid("the body is not a JSON Stripe event") from None
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            raise SignatureInvalid("the body is not a Stripe event")
        return event

    async def close(self) -> None:
        await self.http.close_async()  # type: ignore[no-untyped-call]

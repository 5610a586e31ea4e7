"""The Stripe provider end to end, without Stripe: its outgoing calls go to a local HTTP server that stands in
for api.stripe.com (``GLASSCAST_PAYMENTS_STRIPE_API_BASE``), and its webhooks are payloads signed exactly
as Stripe signs them (``t=<time>,v1=<HMAC-SHA256 of "t.body">``): valid, tampered, stale, replayed and out
of order.  The gateway runs on a socket, the processors (the ledger worker) as a child.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateways.app import create_app
from infra.settings import Secret
from tests.conftest import Platform, wait_processors_assigned
from tests.factories import Backbone, platform_settings
from tests.integration.bits_client import User, _bits, _channel, _settled, _user, _ws
from tests.integration.chat_client import Client
from tests.servers import run_service, serve_app
from tests.waiting import eventually_async

pytestmark = pytest.mark.integration

WEBHOOK_SECRET = "whsec_test_" + uuid.uuid4().hex
API_KEY = "sk_test_" + uuid.uuid4().hex
WEBHOOK = "/v1/payments/stripe/webhook"


@dataclass
class StripeStandIn:
    """A stand-in for api.stripe.com's Checkout Sessions: it keeps what it was asked."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    sessions: dict[str, str] = field(default_factory=dict)  # idempotency key -> session id
    modified: list[dict[str, Any]] = field(default_factory=list)  # subscription updates, as sent

    async def create_session(self, request: Request) -> JSONResponse:
        form = {k: v[0] for k, v in urllib.parse.parse_qs((await request.body()).decode()).items()}
        key = request.headers.get("idempotency-key", "")
        self.requests.append({"form": form, "idempotency_key": key,
                              "authorization": request.headers.get("authorization")})
        sid = self.sessions.setdefault(key, f"cs_test_{uuid.uuid4().hex[:12]}")
        return JSONResponse({"id": sid, "object": "checkout.session", "mode": form.get("mode"),
                             "url": f"https://checkout.stripe.test/{sid}", "livemode": False})

    async def update_subscription(self, request: Request) -> JSONResponse:
        """Stripe's POST /v1/subscriptions/{id}; a ref starting ``sub_refused`` is refused as Stripe refuses."""
        ref = request.path_params["ref"]
        form = {k: v[0] for k, v in urllib.parse.parse_qs((await request.body()).decode()).items()}
        self.modified.append({"ref": ref, "form": form, "idempotency_key": request.headers.get("idempotency-key"),
                              "authorization": request.headers.get("authorization")})
        if ref.startswith("sub_refused"):
            return JSONResponse({"error": {"type": "invalid_request_error", "code": "parameter_invalid_empty",
                                           "message": "refused by the stand-in"}}, status_code=400)
        return JSONResponse({"id": ref, "object": "subscription", "status": "active", "livemode": False,
                             "cancel_at_period_end": form.get("cancel_at_period_end") == "true"})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/checkout/sessions", self.create_session, methods=["POST"]),
                                 Route("/v1/subscriptions/{ref}", self.update_subscription, methods=["POST"])])


@dataclass
class StripePlatform:
    platform: Platform
    stand_in: StripeStandIn


@pytest.fixture(scope="module")
def stripe_platform(backbone: Backbone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StripePlatform]:
    data = tmp_path_factory.mktemp("stripe")
    stand_in = StripeStandIn()
    with serve_app(stand_in.app()) as api:
        s = platform_settings(backbone, data, chat={"user_messages_per_window": 1000, "ml_filter": False},
                              payments={"provider": "stripe", "stripe_api_base": api,
                                        "stripe_secret_key": Secret(API_KEY),
                                        "stripe_webhook_secret": Secret(WEBHOOK_SECRET)})
        with run_service(s, "processors", data / "processors.log") as proc:
            wait_processors_assigned(s, proc, data / "processors.log")
            with serve_app(create_app(s), s.gateway.port) as url:
                yield StripePlatform(Platform(settings=s, url=url), stand_in)


@pytest.fixture
async def http(stripe_platform: StripePlatform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stripe_platform.platform.url, timeout=30) as client:
        yield client


def signed(event: dict[str, Any], secret: str = WEBHOOK_SECRET, at: int | None = None) -> tuple[bytes, str]:
    body = json.dumps(event).encode()
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={t},v1={mac}"


async def deliver(http: httpx.AsyncClient, event: dict[str, Any], **sign: Any) -> httpx.Response:
    body, header = signed(event, **sign)
    return await http.post(WEBHOOK, content=body, headers={"Stripe-Signature": header,
                                                           "Content-Type": "application/json"})


def evt(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"evt_{uuid.uuid4().hex[:16]}", "object": "event", "type": kind, "livemode": False,
            "created": int(time.time()), "data": {"object": obj}}


async def checkout(http: httpx.AsyncClient, stand_in: StripeStandIn, user: User, pack: str) -> dict[str, str]:
    """Buy a pack: the answer is pending, and the stand-in saw the session; its metadata back."""
    r = await http.post("/v1/bits/purchases", headers=user.auth, json={"pack": pack})
    assert r.status_code == 201, r.text
    answer = r.json()
    assert answer["status"] == "pending" and answer["provider"] == "stripe" and answer["sandbox"] is False
    assert answer["checkout_url"].startswith("https://checkout.stripe.test/cs_test_")
    sent = stand_in.requests[-1]
    assert sent["idempotency_key"] == f"checkout-{answer['order_id']}"
    assert sent["authorization"] == f"Bearer {API_KEY}"
    form = sent["form"]
    assert form["mode"] == "payment" and form["client_reference_id"] == answer["order_id"]
    assert form["payment_intent_data[metadata][order_id]"] == answer["order_id"]
    return {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")}


def completed(meta: dict[str, str], amount: int, intent: str) -> dict[str, Any]:
    return evt("checkout.session.completed", {
        "id": f"cs_{intent}", "object": "checkout.session", "payment_status": "paid", "metadata": meta,
        "amount_total": amount, "currency": "usd", "payment_intent": intent, "subscription": None})


async def test_stripe_checkout_webhooks_and_reversals(stripe_platform: StripePlatform, http: httpx.AsyncClient,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stand_in, platform = stripe_platform.stand_in, stripe_platform.platform
    owner, fan = await _user(http, "caster"), await _user(http)
    channel = await _channel(http, owner)
    meta = await checkout(http, stand_in, fan, "100")
    assert (await _bits(http, fan))["balance"] == 0  # nothing until Stripe says it is paid

    paid = completed(meta, 140, "pi_1")
    body, header = signed(paid)
    for bad in (body.replace(b'"amount_total": 140', b'"amount_total": 1'),  # tampered after signing
                body.replace(b'"pi_1"', b'"pi_X"')):
        r = await http.post(WEBHOOK, content=bad, headers={"Stripe-Signature": header})
        assert r.status_code == 400 and r.json()["reason"] == "invalid_signature", r.text
    r = await deliver(http, paid, secret="whsec_someone_else")
    assert r.status_code == 400
    r = await deliver(http, paid, at=int(time.time()) - 3600)  # an old delivery captured and replayed
    assert r.status_code == 400 and "timestamp" in r.json()["detail"].lower()
    r = await http.post(WEBHOOK, content=body)
    assert r.status_code == 400
    assert (await _bits(http, fan))["bought"] == 0

    r = await http.post(WEBHOOK, content=body, headers={"Stripe-Signature": header})
    assert r.status_code == 200 and r.json() == {"received": True, "duplicate": False,
                                                  "type": "checkout.session.completed"}
    r = await deliver(http, paid)  # Stripe delivering the same event again
    assert r.status_code == 200 and r.json()["duplicate"] is True
    again = completed(meta, 140, "pi_1")  # another event reporting the same first payment
    r = await deliver(http, again)
    assert r.status_code == 200 and r.json()["duplicate"] is False
    await _settled(http, fan, balance=100, bought=100)

    chat = await Client.open(_ws(platform, channel), fan.token)
    try:
        assert (await chat.say("cheer60 thanks"))["type"] == "ACK"
        await _settled(http, fan, balance=40, spent=60)
        r = await deliver(http, evt("charge.refunded", {"object": "charge", "payment_intent": "pi_1",
                                                        "amount_refunded": 140, "currency": "usd"}))
        assert r.status_code == 200, r.text
        b = await _settled(http, fan, reversed=100)
        assert b["balance"] == 0 and b["owed"] == 60  # the spent bits are owed
        refused = await chat.say("cheer1 still?")
        assert refused["type"] == "NOTICE" and refused["code"] == "insufficient_bits"
    finally:
        await chat.ws.close()

    # Out of order: a dispute before the payment it disputes.
    meta2 = await checkout(http, stand_in, fan, "500")
    dispute = evt("charge.dispute.created", {"object": "dispute", "payment_intent": "pi_2", "amount": 700,
                                             "currency": "usd", "metadata": {}})
    r = await deliver(http, dispute)
    assert r.status_code == 503 and r.json()["reason"] == "payment_not_yet_known"
    r = await deliver(http, completed(meta2, 700, "pi_2"))
    assert r.status_code == 200
    r = await deliver(http, dispute)  # Stripe's retry
    assert r.status_code == 200 and r.json()["duplicate"] is False
    await _settled(http, fan, bought=600, reversed=600, owed=60)

    # Out of order on the log: a refund that names its order, recorded before the payment.
    meta3 = await checkout(http, stand_in, fan, "1000")
    r = await deliver(http, evt("charge.refunded", {"object": "charge", "payment_intent": "pi_3",
                                                    "amount_refunded": 1000, "currency": "usd",
                                                    "metadata": {"order_id": meta3["order_id"]}}))
    assert r.status_code == 200
    r = await deliver(http, completed(meta3, 1000, "pi_3"))
    assert r.status_code == 200
    b = await _settled(http, fan, bought=1600, reversed=1600)
    assert b["owed"] == 60 and b["balance"] == 0

    r = await deliver(http, evt("customer.created", {"object": "customer"}))
    assert r.status_code == 200  # not ours to act on: acknowledged
    assert "payments: Stripe checkout cs_test_" in caplog.text  # the gateway's own log lines were captured
    assert API_KEY not in caplog.text and WEBHOOK_SECRET not in caplog.text


async def _stripe_subscriber(http: httpx.AsyncClient, stand_in: StripeStandIn, channel: str,
                             ref: str) -> tuple[User, dict[str, str]]:
    """A fan subscribed through a Stripe Checkout Session whose subscription is ``ref``; its metadata."""
    fan = await _user(http)
    r = await http.post("/v1/subscriptions", headers=fan.auth, json={"channel_id": channel, "tier": 1000})
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    form = stand_in.requests[-1]["form"]
    assert form["mode"] == "subscription"
    meta = {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")}
    r = await deliver(http, evt("checkout.session.completed", {
        "id": f"cs_{ref}", "object": "checkout.session", "payment_status": "paid", "metadata": meta,
        "amount_total": 499, "currency": "usd", "payment_intent": None, "subscription": ref}))
    assert r.status_code == 200, r.text
    await _subscription(http, fan, channel, lambda s: s["status"] == "active")
    return fan, meta


async def _subscription(http: httpx.AsyncClient, fan: User, channel: str,
                        ready: Any) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        r = await http.get("/v1/me/subscriptions", headers=fan.auth)
        assert r.status_code == 200, r.text
        mine = [s for s in r.json()["subscriptions"] if s["channel_id"] == channel]
        return mine[0] if mine and ready(mine[0]) else None
    sub: dict[str, Any] = await eventually_async(found, 30, "the subscription view")
    return sub


async def test_cancellation_at_period_end_reaches_stripe_and_comes_back(
        stripe_platform: StripePlatform, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stand_in = stripe_platform.stand_in
    owner = await _user(http, "caster")
    channel = await _channel(http, owner)

    # Cancelled here: Stripe is told to stop renewing, with the SDK's request and our idempotency key.
    fan, _ = await _stripe_subscriber(http, stand_in, channel, "sub_ours")
    r = await http.delete(f"/v1/me/subscriptions/{channel}", headers=fan.auth)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["cancelled"], answer["provider"], answer["sandbox"], answer["cancelled_at_provider"]) == (
        True, "stripe", False, True)
    sent = [m for m in stand_in.modified if m["ref"] == "sub_ours"]
    assert len(sent) == 1 and sent[0]["form"] == {"cancel_at_period_end": "true"}
    assert sent[0]["idempotency_key"] == "cancel-at-period-end-sub_ours"
    assert sent[0]["authorization"] == f"Bearer {API_KEY}"
    sub = await _subscription(http, fan, channel, lambda s: s["cancelled"])
    assert sub["status"] == "cancelled" and sub["active"] is True  # it runs to the end of its period
    # Stripe's echo of that cancellation (customer.subscription.updated) changes nothing more.
    echo = evt("customer.subscription.updated", {
        "id": "sub_ours", "object": "subscription", "status": "active", "cancel_at_period_end": True,
        "metadata": {"user_id": fan.id, "channel_id": channel, "kind": "subscription", "order_id": "x"}})
    r = await deliver(http, echo)
    assert r.status_code == 200 and r.json()["duplicate"] is False
    assert await _subscription(http, fan, channel, lambda s: True) == sub

    # Cancelled in Stripe's portal: the signed customer.subscription.updated cancels here too, once.
    fan2, meta2 = await _stripe_subscriber(http, stand_in, channel, "sub_portal")
    update = evt("customer.subscription.updated", {
        "id": "sub_portal", "object": "subscription", "status": "active", "cancel_at_period_end": True,
        "cancel_at": int(time.time()) + 30 * 86_400, "metadata": meta2})
    untouched = evt("customer.subscription.updated", {
        "id": "sub_portal", "object": "subscription", "status": "active", "cancel_at_period_end": False,
        "metadata": meta2})
    r = await deliver(http, untouched)  # another change to the subscription: acknowledged, not a cancellation
    assert r.status_code == 200 and r.json()["duplicate"] is False
    assert (await _subscription(http, fan2, channel, lambda s: True))["cancelled"] is False
    body, header = signed(update)
    r = await http.post(WEBHOOK, content=body.replace(b'"cancel_at_period_end": true', b'"cancel_at_period_end": 1'),
                        headers={"Stripe-Signature": header})
    assert r.status_code == 400  # tampered
    r = await http.post(WEBHOOK, content=body, headers={"Stripe-Signature": header})
    assert r.status_code == 200 and r.json() == {"received": True, "duplicate": False,
                                                  "type": "customer.subscription.updated"}
    cancelled = await _subscription(http, fan2, channel, lambda s: s["cancelled"])
    assert cancelled["status"] == "cancelled" and cancelled["active"] is True
    r = await deliver(http, update)  # Stripe delivering it again
    assert r.status_code == 200 and r.json()["duplicate"] is True
    assert await _subscription(http, fan2, channel, lambda s: True) == cancelled
    assert not [m for m in stand_in.modified if m["ref"] == "sub_portal"]  # nothing sent back to Stripe

    # Stripe refusing the cancellation: a 503, and nothing cancelled here.
    fan3, _ = await _stripe_subscriber(http, stand_in, channel, "sub_refused_1")
    r = await http.delete(f"/v1/me/subscriptions/{channel}", headers=fan3.auth)
    assert r.status_code == 503 and r.json()["reason"] == "payment_provider_unavailable", r.text
    assert (await _subscription(http, fan3, channel, lambda s: True))["cancelled"] is False
    assert API_KEY not in caplog.text and WEBHOOK_SECRET not in caplog.text

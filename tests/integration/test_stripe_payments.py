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

pytestmark = pytest.mark.integration

WEBHOOK_SECRET = "whsec_test_" + uuid.uuid4().hex
API_KEY = "sk_test_" + uuid.uuid4().hex
WEBHOOK = "/v1/payments/stripe/webhook"


@dataclass
class StripeStandIn:
    """A stand-in for api.stripe.com's Checkout Sessions: it keeps what it was asked."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    sessions: dict[str, str] = field(default_factory=dict)  # idempotency key -> session id

    async def create_session(self, request: Request) -> JSONResponse:
        form = {k: v[0] for k, v in urllib.parse.parse_qs((await request.body()).decode()).items()}
        key = request.headers.get("idempotency-key", "")
        self.requests.append({"form": form, "idempotency_key": key,
                              "authorization": request.headers.get("authorization")})
        sid = self.sessions.setdefault(key, f"cs_test_{uuid.uuid4().hex[:12]}")
        return JSONResponse({"id": sid, "object": "checkout.session", "mode": form.get("mode"),
                             "url": f"https://checkout.stripe.test/{sid}", "livemode": False})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/checkout/sessions", self.create_session, methods=["POST"])])


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

"""Bits, cheers and donations end to end with the sandbox provider: the gateway on a socket, the processors
as a `glasscast run processors` child (the ledger worker), the embedded broker and the session Valkey.

The module's gateway takes many chat messages a second per user, so the
cheers are refused for their balance, never for the chat's rate limit.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from gateways.app import create_app
from tests.conftest import Platform, wait_processors_assigned
from tests.factories import Backbone, platform_settings
from tests.integration.bits_client import User, _bits, _buy, _channel, _settled, _user, _ws
from tests.integration.chat_client import Client
from tests.servers import run_service, serve_app, service_env
from tests.waiting import eventually_async
from topics.runtime import make_serde
from topics.tools import read_topic
from views.ledger import cheer_id

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bits_platform(backbone: Backbone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    data = tmp_path_factory.mktemp("bits")
    s = platform_settings(backbone, data, chat={"user_messages_per_window": 1000, "ml_filter": False})
    with run_service(s, "processors", data / "processors.log") as proc:
        wait_processors_assigned(s, proc, data / "processors.log")
        with serve_app(create_app(s), s.gateway.port) as url:
            yield Platform(settings=s, url=url)


@pytest.fixture
async def http(bits_platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=bits_platform.url, timeout=30) as client:
        yield client


async def test_buying_packs_with_the_sandbox(http: httpx.AsyncClient) -> None:
    fan = await _user(http)
    assert (await _bits(http, fan))["balance"] == 0
    r = await http.post("/v1/bits/purchases", headers=fan.auth, json={"pack": "123"})
    assert r.status_code == 422 and r.json()["reason"] == "unknown_pack", r.text
    r = await http.post("/v1/bits/purchases", json={"pack": "100"})
    assert r.status_code == 401
    answer = await _buy(http, fan, "100", key="k-1")
    assert answer["status"] == "completed" and answer["sandbox"] is True and answer["provider"] == "sandbox"
    assert answer["checkout_url"] is None and answer["bits"] == 100
    again = await _buy(http, fan, "100", key="k-1")  # a retried request: the same order, credited once
    assert again["order_id"] == answer["order_id"]
    await _buy(http, fan, "500")
    b = await _settled(http, fan, balance=600, bought=600)
    assert b["owed"] == 0 and b["sandbox"] is True and {p["pack"] for p in b["packs"]} >= {"100", "500"}
    r = await http.post("/v1/payments/stripe/webhook", content=b"{}", headers={"Stripe-Signature": "t=1,v1=00"})
    assert r.status_code == 404 and r.json()["reason"] == "stripe_not_configured"


async def test_fifty_concurrent_cheers_with_a_balance_for_ten(bits_platform: Platform,
                                                             http: httpx.AsyncClient) -> None:
    owner, fan, viewer = await _user(http, "caster"), await _user(http), await _user(http)
    channel = await _channel(http, owner)
    await _buy(http, fan, "100")
    await _settled(http, fan, balance=100)
    sockets = [await Client.open(_ws(bits_platform, channel), fan.token) for _ in range(10)]
    watcher = await Client.open(_ws(bits_platform, channel), viewer.token)
    try:
        nonces = [f"c-{i}" for i in range(50)]
        # Every frame is on the wire before any answer is read: ten sockets, five cheers each, all at once.
        await asyncio.gather(*(sockets[i % 10].ws.send(json.dumps({"type": "send", "text": "cheer10 lets go",
                                                                  "nonce": n})) for i, n in enumerate(nonces)))
        answers = [await sockets[i % 10].next(lambda m, n=n: m["type"] in ("ACK", "NOTICE") and m.get("nonce") == n)
                   for i, n in enumerate(nonces)]
        acks = [a for a in answers if a["type"] == "ACK"]
        refused = [a for a in answers if a["type"] == "NOTICE"]
        assert len(acks) == 10 and len(refused) == 40
        assert all(a["duplicate"] is False and a["bits"] == 10 for a in acks)
        assert {n["code"] for n in refused} == {"insufficient_bits"}
        assert all("Nothing was charged" in n["reason"] for n in refused)
        shown = await watcher.next(lambda m: m["type"] == "MESSAGE" and m.get("bits") == 10)
        assert shown["text"] == "cheer10 lets go" and shown["user"]["id"] == fan.id
        b = await _settled(http, fan, spent=100)
        assert b["balance"] == 0 and b["bought"] == 100
        over = await sockets[0].say("cheer1 one more")
        assert over["type"] == "NOTICE" and over["code"] == "insufficient_bits"
    finally:
        for c in [*sockets, watcher]:
            await c.ws.close()
    r = await http.get(f"/v1/channels/{channel}/bits/leaderboard", params={"period": "week"})
    assert r.status_code == 200 and r.json()["entries"] == [
        {"rank": 1, "user_id": fan.id, "username": fan.name, "bits": 100}]
    r = await http.get(f"/v1/channels/{channel}/bits/leaderboard", params={"period": "year"})
    assert r.status_code == 400


async def test_a_retried_cheer_is_charged_once(bits_platform: Platform, http: httpx.AsyncClient) -> None:
    owner, fan = await _user(http, "caster"), await _user(http)
    channel = await _channel(http, owner)
    await _buy(http, fan, "100")
    await _settled(http, fan, balance=100)
    chat = await Client.open(_ws(bits_platform, channel), fan.token)
    try:
        first = await chat.say("cheer30 hi", nonce="n-1")
        again = await chat.say("cheer30 hi", nonce="n-1")
        assert first["type"] == again["type"] == "ACK" and again["duplicate"] is True and again["id"] == first["id"]
        await _settled(http, fan, balance=70, spent=30)
        later = await chat.say("cheer30 hi", nonce="n-1")  # after the fold too
        assert later["type"] == "ACK" and later["duplicate"] is True
        assert (await _settled(http, fan, spent=30))["balance"] == 70
    finally:
        await chat.ws.close()


def _crash(platform: Platform, step: str, channel: str, user: User, bits: int, nonce: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "tests.integration.cheer_crash", step, channel, user.id, user.name,
                           str(bits), nonce], env=service_env(platform.settings), capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-3000:]


async def test_a_gateway_killed_between_charge_and_message(bits_platform: Platform,
                                                           http: httpx.AsyncClient) -> None:
    owner, fan = await _user(http, "caster"), await _user(http)
    channel = await _channel(http, owner)
    await _buy(http, fan, "100")
    await _settled(http, fan, balance=100)
    await asyncio.to_thread(_crash, bits_platform, "after_log", channel, fan, 40, "crash-1")
    b = await _settled(http, fan, spent=40)  # the logged charge counts, once
    assert b["balance"] == 60
    chat = await Client.open(_ws(bits_platform, channel), fan.token)
    try:
        retry = await chat.say("cheer40 crash", nonce="crash-1")  # the client sends it again
        assert retry["type"] == "ACK" and retry["duplicate"] is True
        assert retry["id"] == cheer_id(fan.id, channel, "crash-1")
        assert (await _settled(http, fan, spent=40))["balance"] == 60
    finally:
        await chat.ws.close()

    s = bits_platform.settings
    serde = make_serde(s)
    try:
        def in_history() -> bool:
            return any(getattr(e.value, "message_id", None) == retry["id"] for e in read_topic(
                s.kafka, serde, "chat.messages", "beginning", exit_at_end=True) if e.key == channel)
        await eventually_async(lambda: asyncio.to_thread(in_history), 30, "the cheer's message in chat.messages")
    finally:
        serde.close()


async def test_a_gateway_killed_before_the_log_charges_nothing(bits_platform: Platform,
                                                               http: httpx.AsyncClient) -> None:
    owner, fan = await _user(http, "caster"), await _user(http)
    channel = await _channel(http, owner)
    await _buy(http, fan, "100")
    await _settled(http, fan, balance=100)
    await asyncio.to_thread(_crash, bits_platform, "before_log", channel, fan, 40, "crash-2")
    b = await _bits(http, fan)
    assert b["spent"] == 0 and b["held"] == 40 and b["balance"] == 60  # held until the hold expires
    chat = await Client.open(_ws(bits_platform, channel), fan.token)
    try:
        pending = await chat.say("cheer40 crash", nonce="crash-2")
        assert pending["type"] == "NOTICE" and pending["code"] == "cheer_pending"
        other = await chat.say("cheer60 still mine")
        assert other["type"] == "ACK"
        short = await chat.say("cheer1 over")
        assert short["type"] == "NOTICE" and short["code"] == "insufficient_bits"
    finally:
        await chat.ws.close()
    assert (await _bits(http, fan))["spent"] in (0, 60)


async def test_donations(bits_platform: Platform, http: httpx.AsyncClient) -> None:
    owner, fan = await _user(http, "caster"), await _user(http)
    channel = await _channel(http, owner)
    watcher = await Client.open(_ws(bits_platform, channel))
    try:
        for body, field in (({"channel_id": channel, "amount_minor": 0}, "amount_minor"),
                            ({"channel_id": channel, "amount_minor": 500, "currency": "EUR"}, "currency"),
                            ({"channel_id": str(uuid.uuid4()), "amount_minor": 500}, "channel_id")):
            r = await http.post("/v1/donations", headers=fan.auth, json=body)
            assert r.status_code == 422 and r.json()["field"] == field, r.text
        r = await http.post("/v1/donations", headers=owner.auth, json={"channel_id": channel, "amount_minor": 500})
        assert r.status_code == 422 and r.json()["reason"] == "self_donation"
        r = await http.post("/v1/donations", headers=fan.auth,
                            json={"channel_id": channel, "amount_minor": 500, "message": "keep it up"})
        assert r.status_code == 201 and r.json()["status"] == "completed" and r.json()["sandbox"] is True
        frame = await watcher.next(lambda m: m["type"] == "DONATION")
        assert frame["amount_minor"] == 500 and frame["message"] == "keep it up" and frame["user"]["id"] == fan.id
        assert frame["sandbox"] is True
    finally:
        await watcher.ws.close()

    async def listed() -> list[dict[str, Any]] | None:
        r = await http.get(f"/v1/channels/{channel}/donations")
        return list(r.json()["donations"]) or None
    donations = await eventually_async(listed, 30, "the donation on the ledger")
    assert len(donations) == 1 and donations[0]["user_id"] == fan.id and donations[0]["amount_minor"] == 500

"""Subscriptions end to end with the sandbox provider: the gateway on a socket, the processors as a
`glasscast run processors` child (the subscription processor is a task of it), the embedded broker and Valkey.

Periods are short here (``GLASSCAST_SUBSCRIPTIONS_PERIOD_S``) so a subscription
that is not renewed runs out during the test; the sandbox's renewal stand-in
(``POST /v1/me/subscriptions/{channel}/renewal``) pays the next period.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from gateways.app import create_app
from processors.subscriptions.grants import SubState, dedupe_key, grant
from processors.subscriptions.state import Outgoing, SubscriptionState, event_entry
from schemas.records.billing import OrderPlaced, PaymentReversed, PaymentSucceeded
from tests.conftest import Platform, wait_processors_assigned
from tests.factories import Backbone, platform_settings
from tests.integration.chat_client import Client
from tests.servers import run_service, serve_app
from tests.waiting import eventually_async
from topics.producer import EventProducer
from topics.runtime import make_serde
from topics.tools import read_topic
from views.subscriptions import Subscriptions, SubscriptionView

pytestmark = pytest.mark.integration

PERIOD_S = 30.0
WAIT_S = 120.0


@pytest.fixture(scope="module")
def subs_platform(backbone: Backbone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    data = tmp_path_factory.mktemp("subscriptions")
    s = platform_settings(backbone, data, chat={"user_messages_per_window": 100, "ml_filter": False},
                          subscriptions={"period_s": PERIOD_S, "expiry_check_s": 0.5},
                          payments={"provider": "sandbox"})
    with run_service(s, "processors", data / "processors.log") as proc:
        wait_processors_assigned(s, proc, data / "processors.log")
        with serve_app(create_app(s), s.gateway.port) as url:
            yield Platform(settings=s, url=url)


@pytest.fixture
async def http(subs_platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=subs_platform.url, timeout=60) as client:
        yield client


@pytest.fixture
async def subs(subs_platform: Platform) -> AsyncIterator[Subscriptions]:
    client = aioredis.Redis.from_url(subs_platform.settings.valkey.url)
    try:
        yield Subscriptions(client, subs_platform.settings.valkey.key_prefix)
    finally:
        await client.aclose()


class User:
    def __init__(self, user_id: str, name: str, token: str) -> None:
        self.id, self.name, self.token = user_id, name, token

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def _user(http: httpx.AsyncClient, prefix: str = "fan") -> User:
    name, password = f"{prefix}_{uuid.uuid4().hex[:10]}", "correct horse battery"
    r = await http.post("/v1/users", json={"username": name, "password": password})
    assert r.status_code == 201, r.text
    r = await http.post("/v1/auth/login", json={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return User(r.json()["user"]["id"], name, r.json()["access_token"])


async def _channel(http: httpx.AsyncClient, owner: User) -> str:
    r = await http.post("/v1/channels", headers=owner.auth, json={"name": f"ch_{uuid.uuid4().hex[:10]}"})
    assert r.status_code == 201, r.text
    channel = str(r.json()["id"])

    async def readable() -> bool:  # the answer waits for the view only so long; a busy machine may lag more
        return (await http.get(f"/v1/channels/{channel}")).status_code == 200
    await eventually_async(readable, WAIT_S, "the channel's view")
    return channel


def _ws(platform: Platform, channel: str) -> str:
    return platform.url.replace("http://", "ws://") + f"/v1/chat/ws?channel={channel}"


async def _moderate(http: httpx.AsyncClient, channel: str, owner: User, **body: Any) -> None:
    r = await http.post(f"/v1/chat/{channel}/moderate", headers=owner.auth, json=body)
    assert r.status_code == 200, r.text


async def _subscribe(http: httpx.AsyncClient, user: User, **body: Any) -> httpx.Response:
    return await http.post("/v1/subscriptions", headers=user.auth, json=body)


async def _view(subs: Subscriptions, user: User | str, channel: str, check: Any, what: str) -> SubscriptionView:
    user_id = user if isinstance(user, str) else user.id

    async def reached() -> SubscriptionView | None:
        view = await subs.get(user_id, channel)
        return view if view is not None and check(view) else None
    return await eventually_async(reached, WAIT_S, what)


async def _said(client: Client, text: str, code: str | None) -> dict[str, Any]:
    """Say ``text`` until the answer is an ACK (``code`` None) or a NOTICE of ``code``; the last answer."""
    async def answered() -> dict[str, Any] | None:
        answer = await client.say(text)
        ok = answer["type"] == "ACK" if code is None else answer.get("code") == code
        return answer if ok else None
    return await eventually_async(answered, WAIT_S, f"chat answering {code or 'ACK'}", every_s=0.2)


async def test_a_subscription_starts_renews_and_expires_and_chat_follows(
        subs_platform: Platform, http: httpx.AsyncClient, subs: Subscriptions) -> None:
    owner, fan, watcher = await _user(http, "caster"), await _user(http), await _user(http, "watcher")
    channel = await _channel(http, owner)
    fan_chat = await Client.open(_ws(subs_platform, channel), fan.token)
    room = await Client.open(_ws(subs_platform, channel), watcher.token)
    await _moderate(http, channel, owner, action="set_mode", subscribers_only=True)
    assert (await fan_chat.say("let me in"))["code"] == "subscribers_only"

    r = await _subscribe(http, fan, channel_id=channel, tier=2000, message="first!")
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["sandbox"] is True and order["provider"] == "sandbox" and order["status"] == "completed"
    assert order["amount_minor"] == 999 and order["tier"] == "2000"
    first = await _view(subs, fan, channel, lambda v: v.active(0), "the subscription view")
    assert (first.tier, first.months_total) == ("TIER_2", 1)
    announced = await room.next(lambda m: m["type"] == "SUBSCRIPTION")
    assert announced["kind"] == "sub" and announced["user"]["id"] == fan.id and announced["message"] == "first!"

    ack = await _said(fan_chat, "subscribed PogChamp", None)
    message = await room.next(lambda m: m["type"] == "MESSAGE" and m["id"] == ack["id"])
    assert message["user"]["badges"] == ["subscriber/2"] and message["user"]["badge_info"] == {"subscriber": 1}

    r = await _subscribe(http, fan, channel_id=channel, tier=1000)
    assert r.status_code == 409 and r.json()["reason"] == "already_subscribed"
    mine = (await http.get("/v1/me/subscriptions", headers=fan.auth)).json()
    assert [(s["channel_id"], s["tier"], s["status"]) for s in mine["subscriptions"]] == [(channel, "2000", "active")]
    r = await http.get(f"/v1/channels/{channel}/subscriptions", headers=owner.auth)
    assert r.status_code == 200, r.text
    assert (r.json()["total"], r.json()["points"], r.json()["by_tier"]) == (1, 2, {"1000": 0, "2000": 1, "3000": 0})
    assert (await http.get(f"/v1/channels/{channel}/subscriptions", headers=fan.auth)).status_code == 403

    # The sandbox's stand-in for the provider's next charge: one more period, one more month.
    renewal = f"/v1/me/subscriptions/{channel}/renewal"
    r = await http.post(renewal, headers=fan.auth)
    assert r.status_code == 201 and r.json()["status"] == "completed", r.text
    renewed = await _view(subs, fan, channel, lambda v: v.months_total == 2, "the renewal")
    assert renewed.expires_at_ms == first.expires_at_ms + int(PERIOD_S * 1000)
    assert (await room.next(lambda m: m["type"] == "SUBSCRIPTION"))["kind"] == "resub"
    ack = await _said(fan_chat, "two months", None)
    message = await room.next(lambda m: m["type"] == "MESSAGE" and m["id"] == ack["id"])
    assert message["user"]["badge_info"] == {"subscriber": 2}

    # Cancelled at period end: still subscribed, no renewal taken, then it runs out.
    r = await http.delete(f"/v1/me/subscriptions/{channel}", headers=fan.auth)
    assert r.status_code == 200 and r.json()["cancelled"] is True and r.json()["active"] is True, r.text
    assert r.json()["expires_at_ms"] == renewed.expires_at_ms
    r = await http.post(renewal, headers=fan.auth)
    assert r.status_code == 409 and r.json()["reason"] == "cancelled"
    ended = await _view(subs, fan, channel, lambda v: v.ended, "the expiry")
    assert ended.end_reason == "EXPIRED" and ended.months_total == 2
    assert (await _said(fan_chat, "gone?", "subscribers_only"))["code"] == "subscribers_only"
    assert (await http.get("/v1/me/subscriptions", headers=fan.auth)).json() == {"total": 0, "subscriptions": []}
    assert (await http.post(renewal, headers=fan.auth)).status_code == 404

    # Subscribing again starts a new run of periods; the months carry on.
    r = await _subscribe(http, fan, channel_id=channel, tier=1000)
    assert r.status_code == 201, r.text
    again = await _view(subs, fan, channel, lambda v: not v.ended, "the new subscription")
    assert again.months_total == 3 and again.subscription_id == first.subscription_id
    await fan_chat.ws.close()
    await room.ws.close()


async def _orders_of(platform: Platform, user_ids: set[str]) -> list[OrderPlaced]:
    serde = make_serde(platform.settings)
    try:
        events = await asyncio.to_thread(lambda: list(read_topic(
            platform.settings.kafka, serde, "billing.payments", "beginning", exit_at_end=True)))
    finally:
        serde.close()
    return [e.value for e in events if isinstance(e.value, OrderPlaced) and e.value.user_id in user_ids]


async def test_five_gifts_go_to_five_distinct_eligible_viewers_and_refusals_charge_nothing(
        subs_platform: Platform, http: httpx.AsyncClient, subs: Subscriptions) -> None:
    owner, gifter, subscriber, troll = (await _user(http, "caster"), await _user(http, "gifter"),
                                        await _user(http, "subbed"), await _user(http, "troll"))
    viewers = [await _user(http, "viewer") for _ in range(5)]
    channel = await _channel(http, owner)
    assert (await _subscribe(http, subscriber, channel_id=channel, tier=1000)).status_code == 201
    await _view(subs, subscriber, channel, lambda v: v.active(0), "the subscriber")
    chatters = [owner, gifter, subscriber, troll, *viewers]
    for user in chatters:  # chatting makes them recent viewers (the engagement index)
        client = await Client.open(_ws(subs_platform, channel), user.token)
        assert (await client.say(f"hello from {user.name}"))["type"] == "ACK"
        await client.ws.close()

    async def seen_all() -> bool:
        seen = await subs.recent_viewers(channel, 0)
        return {u.id for u in chatters} <= set(seen)
    await eventually_async(seen_all, WAIT_S, "the chatters in the engagement index")
    await _moderate(http, channel, owner, action="ban", user=troll.name, reason="spam")

    # Refusals: each a 4xx with a reason, and no order placed.
    refused = [
        (await _subscribe(http, gifter, channel_id=channel, tier=1500), 422, "unknown_tier"),
        (await _subscribe(http, gifter, channel_id=channel, tier="gold"), 422, "unknown_tier"),
        (await _subscribe(http, owner, channel_id=channel, tier=1000), 422, "self_subscription"),
        (await _subscribe(http, gifter, channel_id=channel, tier=1000, gift_to=troll.id), 422, "recipient_banned"),
        (await _subscribe(http, gifter, channel_id=channel, tier=1000, gift_to=owner.name), 422,
         "gift_to_broadcaster"),
        (await _subscribe(http, gifter, channel_id=channel, tier=1000, gift_count=6), 422, "not_enough_viewers"),
        (await _subscribe(http, gifter, channel_id=channel, tier=1000, gift_to=subscriber.id), 409,
         "recipient_subscribed"),
    ]
    for r, status, reason in refused:
        assert (r.status_code, r.json().get("reason")) == (status, reason), r.text
        assert r.headers["content-type"] == "application/problem+json" and r.json()["detail"]
    assert await _orders_of(subs_platform, {gifter.id, owner.id}) == []

    room = await Client.open(_ws(subs_platform, channel), owner.token)
    r = await _subscribe(http, gifter, channel_id=channel, tier=1000, gift_count=5)
    assert r.status_code == 201, r.text
    recipients = r.json()["gift_to_user_ids"]
    assert sorted(recipients) == sorted(u.id for u in viewers) and r.json()["amount_minor"] == 5 * 499
    for user in viewers:
        view = await _view(subs, user, channel, lambda v: v.active(0), "a gifted subscription")
        assert view.is_gift and view.gifted_by_user_id == gifter.id and view.tier == "TIER_1"
    announced = await room.next(lambda m: m["type"] == "SUBSCRIPTION")
    assert announced["kind"] == "submysterygift" and announced["count"] == 5
    assert sorted(u["id"] for u in announced["recipients"]) == sorted(recipients)
    assert len(await _orders_of(subs_platform, {gifter.id})) == 1
    assert await subs.get(troll.id, channel) is None and await subs.get(gifter.id, channel) is None

    # Everyone eligible has a subscription now: one more gift has nobody to go to.
    r = await _subscribe(http, gifter, channel_id=channel, tier=1000, gift_count=1)
    assert r.status_code == 422 and r.json()["reason"] == "not_enough_viewers"
    r = await http.get(f"/v1/channels/{channel}/subscriptions", headers=owner.auth)
    assert (r.json()["total"], r.json()["points"]) == (6, 6)
    await room.ws.close()


async def test_a_redelivered_payment_changes_nothing_and_a_refund_ends_it(
        subs_platform: Platform, http: httpx.AsyncClient, subs: Subscriptions) -> None:
    s = subs_platform.settings
    owner, fan = await _user(http, "caster"), await _user(http)
    channel = await _channel(http, owner)
    r = await _subscribe(http, fan, channel_id=channel, tier=1000)
    assert r.status_code == 201, r.text
    order_id = r.json()["order_id"]
    first = await _view(subs, fan, channel, lambda v: v.active(0), "the subscription")
    serde = make_serde(s)
    producer = EventProducer(s.kafka, serde)
    try:
        paid = [e.value for e in await asyncio.to_thread(lambda: list(read_topic(
            s.kafka, serde, "billing.payments", "beginning", exit_at_end=True)))
            if isinstance(e.value, PaymentSucceeded) and e.value.order_id == order_id]
        assert len(paid) == 1
        # The first payment again, and a provider's renewal delivered twice (a webhook replayed), then another.
        renewal = dataclasses.replace(paid[0], event_id=str(uuid.uuid4()), renewal=True, provider="stripe",
                                      provider_event_id=f"evt_{uuid.uuid4().hex}", provider_subscription_ref="sub_1")
        later = dataclasses.replace(renewal, event_id=str(uuid.uuid4()), provider_event_id=f"evt_{uuid.uuid4().hex}")
        for payment in (paid[0], renewal, renewal, later):
            await producer.send(payment, order_id)  # one key: read in this order
        last = await _view(subs, fan, channel,
                           lambda v: v.expires_at_ms > first.expires_at_ms + int(PERIOD_S * 1000), "both renewals")
        assert last.months_total == 3 and last.expires_at_ms == first.expires_at_ms + 2 * int(PERIOD_S * 1000)
        assert last.provider_subscription_ref == "sub_1"
        refund = PaymentReversed(occurred_at=last.started_at_ms + 1, order_id=order_id, provider="stripe",
                                 provider_event_id=f"evt_{uuid.uuid4().hex}", kind="REFUND", amount_minor=499,
                                 currency="USD", user_id=fan.id)
        for _ in range(2):
            await producer.send(refund, order_id)
    finally:
        await asyncio.to_thread(producer.close, 5.0)
        serde.close()
    ended = await _view(subs, fan, channel, lambda v: v.ended, "the refund")
    assert ended.end_reason == "REFUNDED" and ended.months_total == 3


async def test_a_decision_a_dead_worker_left_unsent_is_sent_by_the_timer(
        subs_platform: Platform, http: httpx.AsyncClient, subs: Subscriptions) -> None:
    s = subs_platform.settings
    owner, fan = await _user(http, "caster"), await _user(http)
    channel = await _channel(http, owner)
    now = int(time.time() * 1000)
    payment = PaymentSucceeded(occurred_at=now, order_id=str(uuid.uuid4()), provider="sandbox",
                               provider_event_id=f"sandbox:{uuid.uuid4()}", kind="SUBSCRIPTION", user_id=fan.id,
                               channel_id=channel, tier=3000, amount_minor=2499, currency="USD")
    pair = f"{fan.id}:{channel}"

    def plan(states: dict[str, SubState | None]) -> tuple[dict[str, SubState], list[Outgoing]]:
        event, after = grant(payment, fan.id, states[pair], int(PERIOD_S * 1000))
        return {pair: after}, [event_entry(event, pair)]

    # Decided and written a minute ago by a worker that died before producing anything.
    state = SubscriptionState(subs.r, s.valkey.key_prefix, 0)
    assert await state.decide([pair], plan, now - 60_000, done_key=dedupe_key(payment))
    assert await subs.get(fan.id, channel) is None
    view = await _view(subs, fan, channel, lambda v: v.active(0), "the outbox sent by the expiry timer")
    assert view.tier == "TIER_3" and view.months_total == 1
    assert await state.decide([pair], plan, now, done_key=dedupe_key(payment)) == []  # decided once

    async def outbox_empty() -> bool:
        return await state.stale(now + 60_000) == []
    await eventually_async(outbox_empty, WAIT_S, "an empty outbox")

"""``glasscast rebuild-views`` covers the money and community views: bits purchases (Stripe-signed webhooks),
cheers in chat, a refund, a donation, subscriptions (one cancelled), a raid that went ahead and one cancelled,
and a host, all made through the API; then the ledger's folded keys (balances, leaderboards, bits by day,
donations, with their expiries), the subscription views and chat entitlements, and the raid and host views
are snapshotted, ``rebuild_views`` drops and replays them while the processors keep running, and the result
is compared with the snapshot key for key.  The Stripe platform and its stand-in are
tests/integration/test_stripe_payments.py's.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, cast

import httpx
import pytest
import redis.asyncio as aioredis

from processors.rebuild import rebuild_views
from schemas.records.stream import StreamStarted
from tests.integration.bits_client import User, _channel, _settled, _user, _ws
from tests.integration.chat_client import Client
from tests.integration.test_stripe_payments import (  # noqa: F401 (the module's fixtures, used by name)
    StripePlatform,
    completed,
    deliver,
    evt,
    http,
    stripe_platform,
)
from tests.waiting import eventually_async
from topics.producer import EventProducer
from topics.runtime import make_serde
from views.store import ViewStore

pytestmark = pytest.mark.integration

#: The keys compared (after the key prefix): the ledger's folded side, and the money and community views.
COMPARED = ("ledger:acct:", "ledger:seen:", "ledger:board:", "ledger:day:", "ledger:donated:",
            "view:subscription:", "view:channel-subscribers:", "view:user-subscriptions:", "view:subs:",
            "view:raid:", "view:raid-active:", "view:raids-due", "view:host:", "view:hosted-by:")


async def snapshot(client: aioredis.Redis, prefix: str) -> dict[str, Any]:
    """Every compared key: its value (JSON documents parsed, so field order does not matter) and its expiry."""
    out: dict[str, Any] = {}
    async for raw_key in client.scan_iter(match=f"{prefix}*", count=1000):
        key = raw_key.decode()
        if not key[len(prefix):].startswith(COMPARED):
            continue
        kind = (await client.type(key)).decode()
        value: Any
        if kind == "hash":
            value = {k.decode(): v.decode() for k, v in (await client.hgetall(key)).items()}
        elif kind == "set":
            value = sorted(m.decode() for m in await client.smembers(key))
        elif kind == "zset":
            value = [(m.decode(), s) for m, s in await client.zrange(key, 0, -1, withscores=True)]
        else:
            text = cast(bytes, await client.get(key)).decode()
            value = json.loads(text) if text.startswith("{") else text
        out[key] = (value, await client.pexpiretime(key))
    return dict(sorted(out.items()))


async def _chat(platform: StripePlatform, channel: str, user: User) -> Client:
    return await Client.open(_ws(platform.platform, channel), user.token)


async def _cheer(chat: Client, text: str) -> None:
    nonce = uuid.uuid4().hex

    async def sent() -> bool:  # the room's rate limit may ask for a moment; the same nonce is one cheer
        answer = await chat.say(text, nonce=nonce)
        assert answer["type"] == "ACK" or answer.get("code") == "rate_limited", answer
        return answer["type"] == "ACK"
    await eventually_async(sent, 30, f"the cheer {text!r}")


async def _paid(http: httpx.AsyncClient, platform: StripePlatform, user: User, path: str, body: dict[str, Any],  # noqa: F811
                intent: str, subscription: str | None = None) -> None:
    """Order through the API, then Stripe's signed checkout.session.completed for it."""
    r = await http.post(path, headers=user.auth, json=body)
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    form = platform.stand_in.requests[-1]["form"]
    meta = {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")}
    assert meta["order_id"] == r.json()["order_id"]
    event = completed(meta, int(r.json()["amount_minor"]), intent)
    event["data"]["object"]["subscription"] = subscription
    if subscription is not None:
        event["data"]["object"]["payment_intent"] = None
    assert (await deliver(http, event)).status_code == 200


async def test_rebuild_views_gives_the_money_views_again(stripe_platform: StripePlatform,  # noqa: F811
                                                         http: httpx.AsyncClient) -> None:  # noqa: F811
    s = stripe_platform.platform.settings
    owner, star, fan, fan2 = (await _user(http, "caster"), await _user(http, "star"), await _user(http),
                              await _user(http))
    channel, target, hosting = await _channel(http, owner), await _channel(http, star), await _channel(http, owner)
    tag = uuid.uuid4().hex[:8]

    # Bits: two packs for the fan (one refunded later), one for the second fan; cheers in two channels.
    await _paid(http, stripe_platform, fan, "/v1/bits/purchases", {"pack": "500"}, f"pi_{tag}_a")
    await _paid(http, stripe_platform, fan, "/v1/bits/purchases", {"pack": "100"}, f"pi_{tag}_b")
    await _paid(http, stripe_platform, fan2, "/v1/bits/purchases", {"pack": "100"}, f"pi_{tag}_c")
    await _settled(http, fan, balance=600)
    await _settled(http, fan2, balance=100)
    chats = [await _chat(stripe_platform, channel, fan), await _chat(stripe_platform, target, fan),
             await _chat(stripe_platform, channel, fan2)]
    try:
        await _cheer(chats[0], "cheer100 first")
        await _cheer(chats[1], "cheer50 over here")
        await _cheer(chats[0], "cheer25 again")
        await _cheer(chats[2], "cheer30 me too")
    finally:
        for chat in chats:
            await chat.ws.close()
    await _settled(http, fan, spent=175)
    await _settled(http, fan2, spent=30)
    r = await deliver(http, evt("charge.refunded", {"object": "charge", "payment_intent": f"pi_{tag}_b",
                                                    "amount_refunded": 140, "currency": "usd"}))
    assert r.status_code == 200, r.text
    await _settled(http, fan, balance=325, reversed=100)
    await _paid(http, stripe_platform, fan2, "/v1/donations",
                {"channel_id": channel, "amount_minor": 500, "message": "keep going"}, f"pi_{tag}_d")

    # Subscriptions: one running, one cancelled at period end (at Stripe too).
    await _paid(http, stripe_platform, fan2, "/v1/subscriptions", {"channel_id": channel, "tier": 1000},
                f"pi_{tag}_e", subscription=f"sub_{tag}_1")
    await _paid(http, stripe_platform, fan, "/v1/subscriptions", {"channel_id": target, "tier": 2000},
                f"pi_{tag}_f", subscription=f"sub_{tag}_2")

    async def subscribed(user: User, channel_id: str) -> bool:
        r = await http.get("/v1/me/subscriptions", headers=user.auth)
        return any(x["channel_id"] == channel_id for x in r.json()["subscriptions"])
    await eventually_async(lambda: subscribed(fan2, channel), 30, "the first subscription")
    await eventually_async(lambda: subscribed(fan, target), 30, "the second subscription")
    r = await http.delete(f"/v1/me/subscriptions/{target}", headers=fan.auth)
    assert r.status_code == 200 and r.json()["cancelled"] is True, r.text

    # A raid cancelled, a raid that went ahead (Raid Now), and a host of the live target.
    serde = make_serde(s)
    producer = EventProducer(s.kafka, serde)
    try:
        await producer.send(StreamStarted(occurred_at=int(time.time() * 1000), stream_id=str(uuid.uuid4()),
                                          channel_id=target, title="live", ingest_host="ingest-test"), target)
    finally:
        producer.close(10.0)
    client = aioredis.Redis.from_url(s.valkey.url)
    prefix = s.valkey.key_prefix
    await eventually_async(lambda: ViewStore(client, prefix).live_stream_of(target), 30, "the target live")
    raid = {"from_broadcaster_id": channel, "to_broadcaster_id": target}
    r = await http.post("/v1/raids", headers=owner.auth, json=raid)
    assert r.status_code == 200, r.text
    r = await http.delete("/v1/raids", headers=owner.auth, params={"broadcaster_id": channel})
    assert r.status_code == 204, r.text
    r = await http.post("/v1/raids", headers=owner.auth, json=raid)
    assert r.status_code == 200, r.text
    r = await http.post(f"/v1/raids/{r.json()['data'][0]['id']}/go", headers=owner.auth)
    assert r.status_code == 200 and r.json()["data"][0]["status"] == "completed", r.text
    r = await http.post(f"/v1/channels/{hosting}/host", headers=owner.auth, json={"target_channel_id": target})
    assert r.status_code in (200, 201), r.text

    try:
        async def settled() -> dict[str, Any] | None:
            """The views once the processors have folded everything (two reads in a row agree)."""
            first = await snapshot(client, prefix)
            keys = "".join(first)
            wanted = (f"view:raid-active:{channel}" not in keys and f"view:host:{hosting}" in keys
                      and f"ledger:donated:{channel}" in keys and f"view:subscription:{fan.id}:{target}" in keys
                      and first[f"{prefix}view:subscription:{fan.id}:{target}"][0]["cancelled"])
            return first if wanted and first == await snapshot(client, prefix) else None
        before = await eventually_async(settled, 30, "the processors to fold everything")
        assert before[f"{prefix}ledger:acct:{fan.id}"][0] == {"bought": "600", "spent": "175", "reversed": "100"}
        today = time.strftime("%Y%m%d", time.gmtime())
        day, expires = before[f"{prefix}ledger:day:{channel}:{today}"]
        assert day == "155" and expires > time.time() * 1000 + 30 * 86_400_000
        # (The session's raids topic also holds other tests' raids: this test's are those of its channel.)
        raids = [v for k, (v, _) in before.items() if ":view:raid:" in k and v.get("from_channel_id") == channel]
        assert sorted(r["status"] for r in raids) == ["cancelled", "completed"]
        assert next(r for r in raids if r["status"] == "completed")["early"] is True

        report = await rebuild_views(s, serde)
        assert report.events > 0 and report.dropped_keys >= len(before)
        after = await snapshot(client, prefix)
        # The session's topics also hold other tests' money and raids, which this namespace's processors folded
        # while catching up on two topics at once; this test's own keys must come back exactly.
        ids = (channel, target, hosting, owner.id, star.id, fan.id, fan2.id)

        def mine(snap: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in snap.items() if any(i in k or i in json.dumps(v[0]) for i in ids)}
        differ = {k: (mine(before).get(k), mine(after).get(k)) for k in mine(before).keys() | mine(after).keys()
                  if mine(before).get(k) != mine(after).get(k)}
        assert not differ, differ
        assert len(mine(before)) >= 10
        r = await http.get(f"/v1/channels/{channel}/subscriptions", headers=owner.auth)
        assert r.json()["bits_by_day"][-1] == {"day": f"{today[:4]}-{today[4:6]}-{today[6:]}", "bits": 155}
        assert r.json()["by_tier"]["1000"] == 1
    finally:
        await client.aclose()
        serde.close()

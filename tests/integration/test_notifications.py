"""Go-live notifications end to end: follows and engagement folded by a real ``glasscast run processors``
child, the fan-out on ``notifications``, delivery to the in-app feed, an open notification WebSocket and a
real SMTP server (aiosmtpd, in process), and the gateway's feed routes over a real socket.

Follows and heartbeats are produced straight to the log with EventProducer (this part does not depend on the
follow API); the later tier's delay is shrunk to 1-2 s.  "Not again" is observed without sleeping: a start
after the cool-down, on the same channel (the same partition, planned in order), is the sentinel that the
reconnect and the start inside the cool-down were planned before it.

The pure parts (``plan.py``, ``pending.py``) are checked first, without services.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.message import Message
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from aiosmtpd.controller import Controller
from websockets.asyncio.client import ClientConnection, connect

from gateways.auth import issue_token
from infra.embedded.process import free_port
from infra.embedded.valkey import ValkeyProcess
from infra.settings import Settings
from processors.notifications.index import NotifyIndex
from processors.notifications.pending import PendingWindow
from processors.notifications.plan import (
    LATER_TOPIC,
    NOW_TOPIC,
    FanoutPolicy,
    GoLive,
    LastNotified,
    ids,
    plan_first,
    plan_later,
    queued,
    queued_values,
    should_notify,
    spread_ms,
    topic_of,
)
from schemas.records.notification import NotificationQueued
from schemas.records.social import Followed, Unfollowed
from schemas.records.stream import StreamReconnected, StreamStarted
from schemas.records.viewer import Heartbeat
from tests.conftest import own_backbone, wait_processors_assigned
from tests.factories import platform_settings
from tests.waiting import eventually_async
from topics.producer import EventProducer
from topics.runtime import make_serde
from topics.serde import AvroSerde
from topics.tools import read_topic
from views.notifications import FeedItem, NotificationFeed

pytestmark = pytest.mark.integration

DELAY_MIN_S, DELAY_MAX_S, COOLDOWN_S = 1.0, 2.0, 600.0
POLICY = FanoutPolicy(delay_min_ms=60_000, delay_max_ms=120_000, cooldown_ms=600_000, max_start_age_ms=300_000)


# -- the pure parts -------------------------------------------------------------------------------------------

def test_a_start_notifies_once_per_broadcast_and_not_within_the_cooldown() -> None:
    t = 1_790_000_000_000
    assert should_notify(None, "s1", t, t + 50, POLICY)
    assert not should_notify(LastNotified("s1", t), "s1", t, t + 50, POLICY)  # a repeat or redelivery
    assert not should_notify(LastNotified("s1", t), "s2", t + 599_999, t + 600_000, POLICY)  # cool-down
    assert should_notify(LastNotified("s1", t), "s3", t + 600_000, t + 600_050, POLICY)
    assert not should_notify(None, "s4", t, t + 300_001, POLICY)  # a replay of old history


def test_the_later_tier_is_spread_evenly_over_the_configured_range_in_read_order() -> None:
    users = [str(uuid.UUID(int=i)) for i in range(2000)]
    delays = [spread_ms(i, len(users), POLICY) for i in range(len(users))]
    assert delays[0] == 60_000 and delays[-1] == 120_000 and delays == sorted(delays)
    per_10s = Counter(d // 10_000 for d in delays[:-1])
    assert sorted(per_10s) == list(range(6, 12)) and max(per_10s.values()) - min(per_10s.values()) <= 1
    assert spread_ms(5000, 2000, POLICY) == 120_000 and spread_ms(0, 1, POLICY) == 60_000  # more than counted
    first = plan_first("stream", users[:2], 5_000)
    later = plan_later("stream", users[2:50], 100, 2000, 5_000, POLICY)
    assert all(p.first_tier and p.due_ms == 5_000 for p in first)
    assert all(not p.first_tier and p.due_ms >= 65_000 for p in later)
    assert [p.due_ms for p in later] == sorted(p.due_ms for p in later)
    planned = first + later
    assert len({p.notification_id for p in planned} | {p.event_id for p in planned}) == 2 * 50
    assert ids("stream", users[7]) == (planned[7].notification_id, planned[7].event_id)  # the same on a re-plan
    assert ids("other", users[7]) != ids("stream", users[7])
    assert all(uuid.UUID(p.notification_id).version == 8 for p in planned)
    live = GoLive("c", "stream", "chan", "title", "https://x/c/chan")
    assert queued(first[0], live, 5_000).due_at is None and queued(later[0], live, 5_000).due_at == later[0].due_ms
    assert list(queued_values(planned, live, 5_000)) == [queued(p, live, 5_000).to_avro() for p in planned]


def test_the_deliverer_commits_only_up_to_its_lowest_undelivered_record() -> None:
    window: PendingWindow[int, str] = PendingWindow()
    for offset, due in ((10, 500), (11, 100), (12, 0)):
        window.read(0, offset)
        window.hold(0, offset, due, f"n{offset}")
    window.read(0, 13)
    window.done(0, 13)  # a NotificationDelivered: nothing to deliver
    assert window.commits() == {0: 10}
    assert [o for _, o, _ in window.take_due(200, 10)] == [12, 11]
    window.done(0, 12)
    window.done(0, 11)
    assert window.commits() == {}  # 10 is still undelivered
    assert [o for _, o, _ in window.take_due(500, 10)] == [10]
    window.done(0, 10)
    assert window.commits() == {0: 14} and len(window) == 0


# -- end to end ------------------------------------------------------------------------------------------------

class Inbox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if m["To"] == address]


@dataclass
class NotifyPlatform:
    settings: Settings
    url: str
    inbox: Inbox


@pytest.fixture(scope="module")
def notify_platform(valkey: ValkeyProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotifyPlatform]:
    """Processors as a child, the gateway on a real socket in a thread, an SMTP server in process.

    Its own broker: other modules' platforms leave later-tier notifications due minutes ahead on the
    session's topics, and this platform's new delivery group, reading from the start, would hold their
    partitions until then (the deliverer's bounded read-ahead), in front of this module's own records.
    """
    from gateways.app import create_app
    from tests.servers import run_service, serve_app

    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    data = tmp_path_factory.mktemp("notifications")
    try:
        with own_backbone(data.parent / f"{data.name}-services", valkey) as backbone:
            s = platform_settings(backbone, data, notifications={
                "delay_min_s": DELAY_MIN_S, "delay_max_s": DELAY_MAX_S, "cooldown_s": COOLDOWN_S,
                "sockets_per_user": 2, "smtp_host": "127.0.0.1", "smtp_port": smtp.port})
            with run_service(s, "processors", data / "processors.log") as proc:
                wait_processors_assigned(s, proc, data / "processors.log")
                with serve_app(create_app(s), s.gateway.port) as url:
                    yield NotifyPlatform(s, url, inbox)
    finally:
        smtp.stop()


@dataclass
class User:
    id: str
    name: str
    email: str | None
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def _sign_up(http: httpx.AsyncClient, s: Settings, name: str, with_email: bool = True) -> User:
    username = f"{name}_{uuid.uuid4().hex[:8]}"
    address = f"{username}@example.test" if with_email else None
    body = {"username": username, "password": "correct horse battery", **({"email": address} if address else {})}
    r = await http.post("/v1/users", json=body)
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    token = issue_token(str(s.auth.jwt_secret), s.auth.jwt_issuer, user_id, username, int(time.time()), 3600)
    return User(user_id, username, address, token)


async def _feed(http: httpx.AsyncClient, user: User) -> dict[str, Any]:
    r = await http.get("/v1/me/notifications", headers=user.auth)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def _next_frame(ws: ClientConnection, frame_type: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
        return frame if frame["type"] == frame_type else None

    return await eventually_async(found, 30, f"a {frame_type} frame", ignore=(TimeoutError,))


def _queued_for(s: Settings, serde: AvroSerde, channel_id: str) -> dict[str, dict[str, str]]:
    """stream id -> {user id: topic} of every NotificationQueued about ``channel_id`` on the log."""
    out: dict[str, dict[str, str]] = {}
    for ev in read_topic(s.kafka, serde, [NOW_TOPIC, LATER_TOPIC], start="beginning", exit_at_end=True):
        if isinstance(ev.value, NotificationQueued) and ev.value.channel_id == channel_id:
            out.setdefault(ev.value.stream_id or "", {})[ev.value.user_id] = ev.topic
    return out


@dataclass
class LogTools:
    serde: AvroSerde
    producer: EventProducer
    index: NotifyIndex


@pytest.fixture
async def tools(notify_platform: NotifyPlatform) -> AsyncIterator[LogTools]:
    """A producer straight to the log and a view of the processor's index, closed after the test."""
    s = notify_platform.settings
    serde = make_serde(s)
    producer = EventProducer(s.kafka, serde)
    index = NotifyIndex(aioredis.Redis.from_url(s.valkey.url), s.valkey.key_prefix)
    try:
        yield LogTools(serde, producer, index)
    finally:
        producer.close()
        serde.close()
        await index.r.aclose()


async def test_a_stream_start_notifies_exactly_the_followers_who_asked_once(notify_platform: NotifyPlatform,
                                                                            tools: LogTools) -> None:
    s, inbox = notify_platform.settings, notify_platform.inbox
    serde, producer, index = tools.serde, tools.producer, tools.index
    async with httpx.AsyncClient(base_url=notify_platform.url, timeout=30) as http:
        streamer = await _sign_up(http, s, "streamer")
        engaged = await _sign_up(http, s, "engaged")  # follows, watched recently: the first tier
        later = await _sign_up(http, s, "later")  # follows, not engaged: the later tier
        no_mail = await _sign_up(http, s, "nomail", with_email=False)  # follows; in-app only
        muted = await _sign_up(http, s, "muted")  # follows with notifications off (a PATCH)
        gone = await _sign_up(http, s, "gone")  # followed, then unfollowed
        r = await http.post("/v1/channels", json={"name": f"ch{uuid.uuid4().hex[:10]}"}, headers=streamer.auth)
        assert r.status_code == 201, r.text
        channel_id = r.json()["id"]

        now = int(time.time() * 1000)
        for user in (engaged, later, no_mail, muted, gone):
            producer.send_sync(Followed(occurred_at=now, follower_id=user.id, channel_id=channel_id),
                               f"{user.id}:{channel_id}")
        producer.send_sync(Followed(occurred_at=now + 1, follower_id=muted.id, channel_id=channel_id,
                                    notifications_enabled=False), f"{muted.id}:{channel_id}")
        producer.send_sync(Unfollowed(occurred_at=now + 1, follower_id=gone.id, channel_id=channel_id),
                           f"{gone.id}:{channel_id}")
        producer.send_sync(Heartbeat(occurred_at=now, channel_id=channel_id, session_id=uuid.uuid4().hex,
                                     user_id=engaged.id, rendition="source", buffer_health_s=3.0,
                                     bitrate_kbps=3000), channel_id)

        async def indexed() -> bool:
            followers = {u for batch in [b async for b in index.followers(channel_id, 100)] for u in batch}
            return followers == {engaged.id, later.id, no_mail.id} and bool(await index.engaged(channel_id, 0))

        await eventually_async(indexed, 30, "the follower and engagement index")

        ws_url = notify_platform.url.replace("http://", "ws://") + "/v1/me/notifications/ws"
        async with connect(ws_url) as ws:
            await ws.send(json.dumps({"type": "auth", "token": engaged.token}))
            hello = await _next_frame(ws, "AUTHENTICATED")
            assert hello["user"]["id"] == engaged.id and hello["unread_count"] == 0

            first = str(uuid.uuid4())
            started_at = int(time.time() * 1000)
            producer.send_sync(StreamStarted(occurred_at=started_at, stream_id=first, channel_id=channel_id,
                                             title="Any% practice", ingest_host="test"), channel_id)
            push = await _next_frame(ws, "NOTIFICATION")
            assert push["notification"]["stream_id"] == first and push["notification"]["kind"] == "GO_LIVE"
            assert push["notification"]["body"] == "Any% practice" and push["unread_count"] == 1

        # E-mail to the followers who asked and have an address; in-app for every follower who asked.
        await eventually_async(lambda: inbox.to(engaged.email or "") and inbox.to(later.email or ""), 30,
                               "the go-live e-mails")
        mail = inbox.to(later.email or "")[0]
        assert "is live" in mail["Subject"] and "Any% practice" in mail.get_payload()

        async def feeds() -> dict[str, dict[str, Any]] | None:
            got = {u.name: await _feed(http, u) for u in (engaged, later, no_mail, muted, gone)}
            ready = all(len(got[u.name]["notifications"]) == 1 for u in (engaged, later, no_mail))
            return got if ready else None

        got = await eventually_async(feeds, 30, "the in-app feeds")
        assert got[muted.name]["notifications"] == [] and got[gone.name]["notifications"] == []
        mine = got[engaged.name]["notifications"][0]
        assert got[engaged.name]["unread_count"] == 1 and mine["read"] is False
        # Tiers: the engaged follower is delivered first; the later tier not before its delay.
        for other in (later, no_mail):
            theirs = got[other.name]["notifications"][0]
            assert mine["delivered_at_ms"] <= theirs["delivered_at_ms"]  # the same batch under load
            assert theirs["delivered_at_ms"] - theirs["queued_at_ms"] >= DELAY_MIN_S * 1000

        r = await http.post("/v1/me/notifications/read", json={"ids": [mine["id"]]}, headers=engaged.auth)
        assert r.status_code == 200 and r.json() == {"unread_count": 0}
        assert (await _feed(http, engaged))["notifications"][0]["read"] is True
        r = await http.post("/v1/me/notifications/read", json={"all": True}, headers=later.auth)
        assert r.status_code == 200 and r.json() == {"unread_count": 0}
        r = await http.post("/v1/me/notifications/read", json={"ids": "all"}, headers=later.auth)
        assert r.status_code == 422 and "ids" in r.json()["detail"]
        assert (await http.get("/v1/me/notifications")).status_code == 401

        # The encoder reconnects, the start is redelivered, the channel restarts within the cool-down: silent.
        producer.send_sync(StreamReconnected(occurred_at=started_at + 5000, stream_id=first, channel_id=channel_id,
                                             gap_ms=3000, reconnect_count=1, ingest_host="test", next_gop_seq=9),
                           channel_id)
        producer.send_sync(StreamStarted(occurred_at=started_at, stream_id=first, channel_id=channel_id,
                                         title="Any% practice", ingest_host="test"), channel_id)
        inside = str(uuid.uuid4())
        producer.send_sync(StreamStarted(occurred_at=started_at + 60_000, stream_id=inside, channel_id=channel_id,
                                         title="again", ingest_host="test"), channel_id)
        # A start after the cool-down notifies again; it is planned after everything above.
        after = str(uuid.uuid4())
        producer.send_sync(StreamStarted(occurred_at=started_at + int(COOLDOWN_S * 1000) + 1, stream_id=after,
                                         channel_id=channel_id, title="later that day", ingest_host="test"),
                           channel_id)

        async def second_round() -> bool:
            counts = [len((await _feed(http, u))["notifications"]) for u in (engaged, later, no_mail)]
            return counts == [2, 2, 2]

        await eventually_async(second_round, 30, "the notifications of the start after the cool-down")
        queued = await asyncio.to_thread(_queued_for, s, serde, channel_id)
        # Once each, the engaged follower on the topic of notifications due now, the rest on the later tier's.
        tiers = {engaged.id: NOW_TOPIC, later.id: LATER_TOPIC, no_mail.id: LATER_TOPIC}
        assert queued == {first: tiers, after: tiers}
        await eventually_async(lambda: len(inbox.to(later.email or "")) == 2, 30, "the second e-mail")
        assert len(inbox.to(engaged.email or "")) == 2
        assert not inbox.to(muted.email or "") and not inbox.to(gone.email or "")
        feed = await _feed(http, engaged)
        assert [n["stream_id"] for n in feed["notifications"]] == [after, first] and feed["unread_count"] == 1

        # A follower deletes their account: their follow is withdrawn (the count, the go-live index) and the
        # processor erases their in-app feed.
        feed_keys = [f"{s.valkey.key_prefix}notif:{kind}:{later.id}" for kind in ("feed", "item", "unread")]
        assert await index.r.exists(*feed_keys) == 3
        assert (await http.get(f"/v1/channels/{channel_id}", headers=streamer.auth)).json()["followers"] == 4
        r = await http.request("DELETE", "/v1/me", headers=later.auth, json={"password": "correct horse battery"})
        assert r.status_code == 204, r.text

        async def erased() -> bool:
            followers = {u for batch in [b async for b in index.followers(channel_id, 100)] for u in batch}
            return followers == {engaged.id, no_mail.id} and await index.r.exists(*feed_keys) == 0

        await eventually_async(erased, 30, "the deleted follower's follow and feed gone")
        assert (await http.get(f"/v1/channels/{channel_id}", headers=streamer.auth)).json()["followers"] == 3


async def test_the_notification_socket_signs_in_with_a_first_frame(notify_platform: NotifyPlatform) -> None:
    ws_url = notify_platform.url.replace("http://", "ws://") + "/v1/me/notifications/ws"
    async with connect(ws_url + "?token=abc") as ws:
        assert (await _next_frame(ws, "ERROR"))["code"] == "token_in_url"
        await ws.wait_closed()
        assert ws.close_code == 4400
    async with connect(ws_url) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert (await _next_frame(ws, "ERROR"))["code"] == "unauthorized"
        await ws.wait_closed()
        assert ws.close_code == 4401
    async with connect(ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": "not.a.jwt"}))
        assert (await _next_frame(ws, "ERROR"))["code"] == "unauthorized"
        await ws.wait_closed()
        assert ws.close_code == 4401


async def test_notification_sockets_share_one_pubsub_connection_and_are_bounded_per_account(
        notify_platform: NotifyPlatform, tools: LogTools) -> None:
    s = notify_platform.settings
    ws_url = notify_platform.url.replace("http://", "ws://") + "/v1/me/notifications/ws"
    feed = NotificationFeed(tools.index.r, s.valkey.key_prefix)

    async def pubsub_clients() -> int:
        return sum(1 for c in await tools.index.r.client_list() if "P" in c.get("flags", ""))

    async with httpx.AsyncClient(base_url=notify_platform.url, timeout=30) as http:
        alice, bob = await _sign_up(http, s, "alice"), await _sign_up(http, s, "bob")
    others = await pubsub_clients()  # the chat fan-out, the doorbell, ...: not this gateway's sockets
    async with contextlib.AsyncExitStack() as stack:
        sockets = []
        for user in (alice, alice, bob):
            ws = await stack.enter_async_context(connect(ws_url))
            await ws.send(json.dumps({"type": "auth", "token": user.token}))
            assert (await _next_frame(ws, "AUTHENTICATED"))["user"]["id"] == user.id
            sockets.append(ws)
        assert await pubsub_clients() == others + 1  # three sockets, two accounts, one gateway: one connection
        async with connect(ws_url) as third:  # alice's third socket on this gateway
            await third.send(json.dumps({"type": "auth", "token": alice.token}))
            assert (await _next_frame(third, "ERROR"))["code"] == "too_many_sockets"
            await third.wait_closed()
            assert third.close_code == 1013
        item = FeedItem(id=str(uuid.uuid4()), kind="SYSTEM", title="hello", body="", url=None, channel_id=None,
                        stream_id=None, queued_at_ms=1, delivered_at_ms=int(time.time() * 1000))
        assert await feed.add([(alice.id, item)]) == [True]
        for ws in sockets[:2]:
            assert (await _next_frame(ws, "NOTIFICATION"))["notification"]["id"] == item.id
        await sockets[0].close()
        async with connect(ws_url) as again:  # a closed socket frees its place
            await again.send(json.dumps({"type": "auth", "token": alice.token}))
            assert (await _next_frame(again, "AUTHENTICATED"))["user"]["id"] == alice.id


async def test_a_pending_spread_never_holds_back_a_notification_due_now(notify_platform: NotifyPlatform,
                                                                          tools: LogTools) -> None:
    """One follower: in the later tier of broadcast A, whose notification is due in a minute, and in the first
    tier of broadcast B, which starts meanwhile.  Both are keyed by the follower, so on one topic they would
    share a partition, and the deliverer holds a partition at a record due beyond its read-ahead: B's
    notification would wait behind A's for a minute.  The planner puts each tier on its own topic.

    Last in this module: the held record of A keeps its partition of the later topic held for that minute.
    """
    s = notify_platform.settings
    async with httpx.AsyncClient(base_url=notify_platform.url, timeout=30) as http:
        fan = await _sign_up(http, s, "fan", with_email=False)
        now = int(time.time() * 1000)
        policy = FanoutPolicy(delay_min_ms=60_000, delay_max_ms=60_000, cooldown_ms=0, max_start_age_ms=60_000)
        a = GoLive(str(uuid.uuid4()), str(uuid.uuid4()), "a_channel", "A's stream", "http://a.example")
        b = GoLive(str(uuid.uuid4()), str(uuid.uuid4()), "b_channel", "B's stream", "http://b.example")
        spread = plan_later(a.stream_id, [fan.id], 0, 1, now, policy)
        first = plan_first(b.stream_id, [fan.id], now + 1)
        for p, live in ((spread[0], a), (first[0], b)):
            await tools.producer.send(queued(p, live, now), fan.id, topic=topic_of(p))

        async def delivered() -> list[dict[str, Any]] | None:
            items: list[dict[str, Any]] = (await _feed(http, fan))["notifications"]
            return items or None

        items = await eventually_async(delivered, 30, "the first tier's notification of broadcast B")
        assert [n["stream_id"] for n in items] == [b.stream_id], items  # A's is still a minute away

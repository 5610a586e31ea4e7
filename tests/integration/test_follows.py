"""Follows end to end: the gateway on a socket, the processors as a `glasscast run processors` child,
the embedded broker and the session Valkey.

A follow is a ``Followed`` on ``social.follows`` (key ``follower_id:channel_id``)
that the processors fold into the follow view (views/follows.py) and the chat
rooms (views/chat_rooms.py); the API answers once both hold it.  The module's
gateway takes many chat messages a second per user, so the followers-only test
does not wait out the default rate limit of one.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from gateways.app import create_app
from gateways.follows import FOLLOW_CHANGES_PER_HOUR
from processors.rebuild import rebuild_views
from schemas.records.social import Followed, Unfollowed
from schemas.records.stream import StreamEnded, StreamStarted
from tests.conftest import Platform, wait_processors_assigned
from tests.factories import Backbone, platform_settings
from tests.integration.chat_client import Client
from tests.servers import run_service, serve_app
from tests.waiting import eventually_async
from topics.producer import EventProducer
from topics.runtime import make_serde
from topics.tools import read_topic
from views.fold import Applied
from views.follows import FollowState
from views.store import ViewStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def follows_platform(backbone: Backbone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The conftest ``platform`` (gateway in a thread, processors as a child), with a relaxed chat rate limit."""
    data = tmp_path_factory.mktemp("follows")
    s = platform_settings(backbone, data, chat={"user_messages_per_window": 100, "ml_filter": False})
    with run_service(s, "processors", data / "processors.log") as proc:
        wait_processors_assigned(s, proc, data / "processors.log")
        with serve_app(create_app(s), s.gateway.port) as url:
            yield Platform(settings=s, url=url)


@pytest.fixture
async def http(follows_platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=follows_platform.url, timeout=30) as client:
        yield client


@pytest.fixture
async def views(follows_platform: Platform) -> AsyncIterator[ViewStore]:
    client = aioredis.Redis.from_url(follows_platform.settings.valkey.url)
    try:
        yield ViewStore(client, follows_platform.settings.valkey.key_prefix)
    finally:
        await client.aclose()


class User:
    def __init__(self, user_id: str, name: str, token: str) -> None:
        self.id, self.name, self.token = user_id, name, token

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def follows(self, channel: str | None = None) -> str:
        return f"/v1/users/{self.id}/follows" + (f"/{channel}" if channel else "")


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
    return str(r.json()["id"])


async def _follow(http: httpx.AsyncClient, fan: User, channel: str, **body: Any) -> httpx.Response:
    return await http.post(fan.follows(), headers=fan.auth, json={"channel_id": channel, **body})


async def _followers(http: httpx.AsyncClient, channel: str) -> int:
    r = await http.get(f"/v1/channels/{channel}")
    assert r.status_code == 200, r.text
    return int(r.json()["followers"])


async def test_follow_unfollow_and_counts(follows_platform: Platform, http: httpx.AsyncClient) -> None:
    s = follows_platform.settings
    owner, fan, other = await _user(http, "caster"), await _user(http), await _user(http)
    channel = await _channel(http, owner)
    assert await _followers(http, channel) == 0

    r = await _follow(http, fan, channel)
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["channel_id"] == channel and first["notifications"] is True and first["user_id"] == fan.id
    assert await _followers(http, channel) == 1
    r = await _follow(http, fan, channel)  # idempotent: 200, nothing new
    assert r.status_code == 200 and r.json()["followed_at_ms"] == first["followed_at_ms"]
    assert await _followers(http, channel) == 1

    r = await http.patch(fan.follows(channel), headers=fan.auth, json={"notifications": False})
    assert r.status_code == 200, r.text
    assert r.json()["notifications"] is False and r.json()["followed_at_ms"] == first["followed_at_ms"]
    listed = (await http.get(fan.follows(), headers=fan.auth)).json()
    assert listed["total"] == 1 and [(f["channel_id"], f["notifications"]) for f in listed["follows"]] == [
        (channel, False)]
    assert await _followers(http, channel) == 1

    assert (await _follow(http, other, channel, notifications=False)).status_code == 201
    assert await _followers(http, channel) == 2
    r = await http.delete(fan.follows(channel), headers=fan.auth)
    assert r.status_code == 204
    assert await _followers(http, channel) == 1
    assert (await http.delete(fan.follows(channel), headers=fan.auth)).status_code == 204  # idempotent
    assert await _followers(http, channel) == 1
    assert (await http.get(fan.follows(), headers=fan.auth)).json() == {"total": 0, "follows": [],
                                                                         "next_cursor": None}
    r = await _follow(http, fan, channel)  # following again is a new follow
    assert r.status_code == 201 and r.json()["followed_at_ms"] >= first["followed_at_ms"]
    assert await _followers(http, channel) == 2

    # What the log holds: the pair's events, keyed as the catalogue says, in order.
    serde = make_serde(s)
    try:
        def pair_events() -> list[tuple[str, Any]]:
            return [(e.key, e.value) for e in read_topic(s.kafka, serde, "social.follows", "beginning",
                                                         exit_at_end=True)
                    if e.key == f"{fan.id}:{channel}"]
        events = await asyncio.to_thread(pair_events)
    finally:
        serde.close()
    kinds = [(type(v).__name__, getattr(v, "notifications_enabled", None)) for _, v in events]
    assert kinds == [("Followed", True), ("Followed", False), ("Unfollowed", None), ("Followed", True)]
    assert events[1][1].occurred_at == first["followed_at_ms"]  # the bell keeps the follow's time


async def test_repeated_events_never_count_twice(follows_platform: Platform, http: httpx.AsyncClient,
                                                 views: ViewStore) -> None:
    s = follows_platform.settings
    owner, fan = await _user(http, "caster"), await _user(http)
    channel = await _channel(http, owner)
    producer = EventProducer(s.kafka, serde := make_serde(s))
    key = f"{fan.id}:{channel}"
    try:
        now = int(time.time() * 1000)
        for _ in range(3):  # three Followed for one pair (a retried command, a second gateway)
            ack = await producer.send(Followed(occurred_at=now, follower_id=fan.id, channel_id=channel), key)
        await _state_reaches(views, fan.id, channel, ack.offset)
        assert await _followers(http, channel) == 1 and await views.follows.following_count(fan.id) == 1
        for _ in range(2):
            ack = await producer.send(Unfollowed(occurred_at=now + 1, follower_id=fan.id, channel_id=channel), key)
        await _state_reaches(views, fan.id, channel, ack.offset)
        assert await _followers(http, channel) == 0 and await views.follows.following_count(fan.id) == 0
    finally:
        await asyncio.to_thread(producer.close, 5.0)
        serde.close()
    # A redelivered (older) Followed after the Unfollowed changes nothing.
    assert not await views.follows.apply(Applied(ack.offset - 2, Followed(
        occurred_at=now, follower_id=fan.id, channel_id=channel)))
    assert await _followers(http, channel) == 0


async def _state_reaches(views: ViewStore, user_id: str, channel: str, offset: int) -> FollowState:
    async def reached() -> FollowState | None:
        state = await views.follows.state(user_id, channel)
        return state if state is not None and state.seq >= offset else None
    return await eventually_async(reached, 30, f"the follow view at offset {offset}")


async def test_pages_of_follows_and_followers(http: httpx.AsyncClient) -> None:
    owner, fan = await _user(http, "caster"), await _user(http)
    channels = [await _channel(http, owner) for _ in range(5)]
    for channel in channels:
        assert (await _follow(http, fan, channel)).status_code == 201

    seen: list[str] = []
    cursor: str | None = None
    for size in (2, 2, 1):
        query: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = await http.get(fan.follows(), headers=fan.auth, params=query)
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["total"] == 5 and len(page["follows"]) == size
        seen += [f["channel_id"] for f in page["follows"]]
        cursor = page["next_cursor"]
    assert cursor is None and seen == channels[::-1]  # newest follow first, each once

    channel = channels[0]
    fans = [fan] + [await _user(http) for _ in range(4)]
    for f in fans[1:]:
        assert (await _follow(http, f, channel)).status_code == 201
    listed: list[str] = []
    cursor = None
    while True:
        r = await http.get(f"/v1/channels/{channel}/followers", headers=owner.auth,
                           params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        assert r.json()["total"] == 5
        listed += [f["username"] for f in r.json()["followers"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert listed == [f.name for f in fans[::-1]]
    # Anyone else (or nobody) sees the count only.
    for headers in (fan.auth, {}):
        r = await http.get(f"/v1/channels/{channel}/followers", headers=headers)
        assert r.status_code == 200 and r.json() == {"channel_id": channel, "total": 5}
    # A cursor from the other list, or a made-up one, is a 400 that names the parameter.
    page_cursor = (await http.get(fan.follows(), headers=fan.auth, params={"limit": 1})).json()["next_cursor"]
    for bad in (page_cursor, "bm90LW91cnM"):
        r = await http.get(f"/v1/channels/{channel}/followers", headers=owner.auth, params={"cursor": bad})
        assert r.status_code == 400 and r.json()["field"] == "cursor", r.text
    assert (await http.get(fan.follows(), headers=fan.auth, params={"cursor": page_cursor})).status_code == 200


async def test_live_only_lists_live_channels_with_their_stream(follows_platform: Platform, http: httpx.AsyncClient,
                                                                views: ViewStore) -> None:
    s = follows_platform.settings
    owner, fan = await _user(http, "caster"), await _user(http)
    channels = [await _channel(http, owner) for _ in range(3)]
    for channel in channels:
        assert (await _follow(http, fan, channel)).status_code == 201
    live_channel, stream_id = channels[1], str(uuid.uuid4())
    producer = EventProducer(s.kafka, serde := make_serde(s))
    try:
        now = int(time.time() * 1000)
        await producer.send(StreamStarted(occurred_at=now, stream_id=stream_id, channel_id=live_channel,
                                          title="live now", ingest_host="ingest-test"), live_channel)
        await eventually_async(lambda: views.live_stream_of(live_channel), 30, "the stream to be live")
        r = await http.get(fan.follows(), headers=fan.auth, params={"live": "true"})
        assert r.status_code == 200, r.text
        assert [(f["channel_id"], f["live_stream_id"]) for f in r.json()["follows"]] == [(live_channel, stream_id)]
        assert r.json()["next_cursor"] is None and r.json()["total"] == 3
        everything = (await http.get(fan.follows(), headers=fan.auth)).json()["follows"]
        assert {f["channel_id"]: f["live_stream_id"] for f in everything} == {
            channels[0]: None, live_channel: stream_id, channels[2]: None}
        await producer.send(StreamEnded(occurred_at=now + 1, stream_id=stream_id, channel_id=live_channel,
                                        started_at=now, duration_ms=1, reason="PUBLISHER_STOPPED"), live_channel)
        await eventually_async(lambda: _not(views.live_stream_of(live_channel)), 30, "the stream to end")
        assert (await http.get(fan.follows(), headers=fan.auth, params={"live": "1"})).json()["follows"] == []
    finally:
        await asyncio.to_thread(producer.close, 5.0)
        serde.close()


async def _not(value: Any) -> bool:
    return await value is None


async def test_refusals(follows_platform: Platform, http: httpx.AsyncClient, views: ViewStore) -> None:
    owner, fan, other = await _user(http, "caster"), await _user(http), await _user(http)
    channel = await _channel(http, owner)

    def problem(r: httpx.Response, status: int, field: str | None = None) -> None:
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/problem+json") and r.json()["detail"]
        if field is not None:
            assert r.json().get("field") == field, r.text

    problem(await http.post(fan.follows(), json={"channel_id": channel}), 401)
    # Another user's path: 403, whatever the method.
    problem(await http.post(other.follows(), headers=fan.auth, json={"channel_id": channel}), 403)
    problem(await http.get(other.follows(), headers=fan.auth), 403)
    problem(await http.patch(other.follows(channel), headers=fan.auth, json={"notifications": False}), 403)
    problem(await http.delete(other.follows(channel), headers=fan.auth), 403)
    # Self-follow, a missing channel, bad bodies.
    problem(await _follow(http, owner, channel), 422, "channel_id")
    problem(await _follow(http, fan, str(uuid.uuid4())), 422, "channel_id")
    problem(await _follow(http, fan, "no_such_channel_here"), 422, "channel_id")
    problem(await http.post(fan.follows(), headers=fan.auth, json={}), 422, "channel_id")
    problem(await http.post(fan.follows(), headers=fan.auth, json={"channel_id": 7}), 422, "channel_id")
    problem(await _follow(http, fan, channel, notifications="yes"), 422, "notifications")
    problem(await _follow(http, fan, channel, colour="red"), 422, "colour")
    problem(await http.post(fan.follows(), headers=fan.auth, content=b"[1, 2"), 400)
    problem(await http.post(fan.follows(), headers=fan.auth, json=["not", "an", "object"]), 400)
    problem(await http.patch(fan.follows(channel), headers=fan.auth, json={"notifications": False}), 404)
    problem(await http.patch(fan.follows(str(uuid.uuid4())), headers=fan.auth, json={"notifications": True}), 404)
    problem(await http.get(fan.follows(), headers=fan.auth, params={"live": "maybe"}), 400, "live")
    problem(await http.get(fan.follows(), headers=fan.auth, params={"limit": "0"}), 400, "limit")
    problem(await http.get(fan.follows(), headers=fan.auth, params={"sort": "x"}), 400, "sort")
    problem(await http.get(f"/v1/channels/{uuid.uuid4()}/followers"), 404)
    problem(await http.get(f"/v1/channels/{channel}/followers", headers={"Authorization": "Bearer nope"}), 401)
    assert await _followers(http, channel) == 0

    assert (await _follow(http, fan, channel)).status_code == 201
    problem(await http.patch(fan.follows(channel), headers=fan.auth, json={}), 422, "notifications")
    problem(await http.patch(fan.follows(channel), headers=fan.auth, json={"notifications": 1}), 422, "notifications")
    # Follow changes are bounded per user: a full hour's window is a 429 with Retry-After, and no event.
    prefix = follows_platform.settings.valkey.key_prefix
    now_ms = int(time.time() * 1000)
    await views.r.zadd(f"{prefix}follows:rate:changes:{fan.id}",
                       {f"filled-{i}": now_ms for i in range(FOLLOW_CHANGES_PER_HOUR)})
    r = await http.delete(fan.follows(channel), headers=fan.auth)
    problem(r, 429)
    assert 1 <= int(r.headers["retry-after"]) <= 3600
    assert (await _follow(http, fan, channel)).status_code == 200  # a follow that changes nothing is free
    assert await _followers(http, channel) == 1


async def test_followers_only_chat_takes_a_follower_after_the_follow(follows_platform: Platform,
                                                                     http: httpx.AsyncClient,
                                                                     views: ViewStore) -> None:
    owner, fan = await _user(http, "caster"), await _user(http)
    channel = await _channel(http, owner)
    r = await http.post(f"/v1/chat/{channel}/moderate", headers=owner.auth,
                        json={"action": "set_mode", "followers_only_min": 0})
    assert r.status_code == 200, r.text
    ws_url = follows_platform.url.replace("http://", "ws://") + f"/v1/chat/ws?channel={channel}"
    chat = await Client.open(ws_url, fan.token)
    try:
        assert (await chat.say("hello?"))["code"] == "followers_only"
        assert (await _follow(http, fan, channel)).status_code == 201
        assert (await chat.say("following now"))["type"] == "ACK"  # the answer came after the chat room had it
        followed_at = (await views.chat_rooms.chatter(channel, fan.id)).followed_at_ms
        # The bell does not reset the follow age the mode checks.
        r = await http.patch(fan.follows(channel), headers=fan.auth, json={"notifications": False})
        assert r.status_code == 200, r.text
        assert (await views.chat_rooms.chatter(channel, fan.id)).followed_at_ms == followed_at
        assert (await chat.say("bell off"))["type"] == "ACK"
        assert (await http.delete(fan.follows(channel), headers=fan.auth)).status_code == 204
        assert (await chat.say("still here?"))["code"] == "followers_only"
    finally:
        await chat.ws.close()


async def test_rebuild_views_rebuilds_the_follow_graph(follows_platform: Platform, http: httpx.AsyncClient,
                                                       views: ViewStore) -> None:
    s = follows_platform.settings
    owner, fans = await _user(http, "caster"), [await _user(http) for _ in range(3)]
    channel = await _channel(http, owner)
    for fan in fans:
        assert (await _follow(http, fan, channel)).status_code == 201
    assert (await http.patch(fans[0].follows(channel), headers=fans[0].auth,
                             json={"notifications": False})).status_code == 200
    assert (await http.delete(fans[1].follows(channel), headers=fans[1].auth)).status_code == 204

    def follow_keys(dump: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in dump.items() if ":view:follow" in k}

    before = follow_keys(await views.dump())
    assert before[f"{s.valkey.key_prefix}view:followers:{channel}"] and len(before) >= 4
    serde = make_serde(s)
    try:
        await rebuild_views(s, serde)
    finally:
        serde.close()
    assert follow_keys(await views.dump()) == before
    assert await _followers(http, channel) == 2

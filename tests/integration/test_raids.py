"""Raids and host mode end to end: the gateway on a socket, the processors as a `glasscast run processors` child
(whose raid worker runs the countdowns), the embedded broker and the session Valkey.

Channels are made live by producing ``StreamStarted`` (no media is needed to
raid or host).  The module's countdown is 2 s (GLASSCAST_GATEWAY_RAID_COUNTDOWN_S)
so the test of a countdown that runs out waits for it, not for Twitch's 90 s.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis.asyncio as aioredis

from gateways.app import create_app
from gateways.raids import RAIDS_PER_WINDOW
from schemas.records.raid import RaidCancelled, RaidCompleted, RaidStarted
from schemas.records.stream import StreamEnded, StreamStarted
from tests.conftest import Platform, wait_processors_assigned
from tests.factories import Backbone, platform_settings
from tests.integration.chat_client import Client
from tests.servers import run_service, serve_app
from tests.waiting import eventually_async
from topics.producer import EventProducer
from topics.runtime import make_serde
from topics.tools import read_topic
from views.hosting import Hosts
from views.store import ViewStore

pytestmark = pytest.mark.integration

COUNTDOWN_S = 2.0


@pytest.fixture(scope="module")
def raids_platform(backbone: Backbone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    data = tmp_path_factory.mktemp("raids")
    s = platform_settings(backbone, data, chat={"ml_filter": False}, gateway={"raid_countdown_s": COUNTDOWN_S})
    with run_service(s, "processors", data / "processors.log") as proc:
        wait_processors_assigned(s, proc, data / "processors.log")
        with serve_app(create_app(s), s.gateway.port) as url:
            yield Platform(settings=s, url=url)


@pytest.fixture
async def http(raids_platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=raids_platform.url, timeout=30) as client:
        yield client


@pytest.fixture
async def views(raids_platform: Platform) -> AsyncIterator[ViewStore]:
    client = aioredis.Redis.from_url(raids_platform.settings.valkey.url)
    try:
        yield ViewStore(client, raids_platform.settings.valkey.key_prefix)
    finally:
        await client.aclose()


@pytest.fixture
async def producer(raids_platform: Platform) -> AsyncIterator[EventProducer]:
    s = raids_platform.settings
    serde = make_serde(s)
    p = EventProducer(s.kafka, serde)
    try:
        yield p
    finally:
        p.close(10.0)
        serde.close()


class User:
    def __init__(self, user_id: str, token: str) -> None:
        self.id, self.token = user_id, token

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def _user(http: httpx.AsyncClient, prefix: str = "caster") -> User:
    name, password = f"{prefix}_{uuid.uuid4().hex[:10]}", "correct horse battery"
    assert (await http.post("/v1/users", json={"username": name, "password": password})).status_code == 201

    async def login() -> httpx.Response | None:
        r = await http.post("/v1/auth/login", json={"username": name, "password": password})
        return r if r.status_code == 200 else None

    r = await eventually_async(login, 30, "the new account to sign in")
    return User(r.json()["user"]["id"], r.json()["access_token"])


async def _channel(http: httpx.AsyncClient, owner: User) -> str:
    r = await http.post("/v1/channels", headers=owner.auth, json={"name": f"ch_{uuid.uuid4().hex[:10]}"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _go_live(producer: EventProducer, views: ViewStore, channel: str) -> str:
    stream_id = str(uuid.uuid4())
    await producer.send(StreamStarted(occurred_at=int(time.time() * 1000), stream_id=stream_id, channel_id=channel,
                                      title="live now", ingest_host="ingest-test"), channel)
    await eventually_async(lambda: views.live_stream_of(channel), 30, "the stream to be live")
    return stream_id


async def _end(producer: EventProducer, views: ViewStore, channel: str, stream_id: str) -> None:
    now = int(time.time() * 1000)
    await producer.send(StreamEnded(occurred_at=now, stream_id=stream_id, channel_id=channel, started_at=now - 1000,
                                    duration_ms=1000), channel)

    async def offline() -> bool | None:
        return await views.live_stream_of(channel) is None or None

    await eventually_async(offline, 30, "the stream to end")


def _ws(platform: Platform, channel: str) -> str:
    return platform.url.replace("http://", "ws://") + f"/v1/chat/ws?channel={channel}"


def _raids_of(platform: Platform, channel: str) -> list[object]:
    """The channel's raid records on the log, each event once (other platforms' raid workers on this shared
    broker may produce a completion again, with the same event id)."""
    s = platform.settings
    seen: dict[str, object] = {}
    serde = make_serde(s)
    try:
        for e in read_topic(s.kafka, serde, "raids", start="beginning", exit_at_end=True):
            if isinstance(e.value, RaidStarted | RaidCancelled | RaidCompleted) and e.value.from_channel_id == channel:
                seen.setdefault(e.value.event_id, e.value)
    finally:
        serde.close()
    return list(seen.values())


async def test_raid_refusals(raids_platform: Platform, http: httpx.AsyncClient, views: ViewStore,
                             producer: EventProducer) -> None:
    raider, other = await _user(http), await _user(http)
    mine, offline, live = await _channel(http, raider), await _channel(http, other), await _channel(http, other)
    await _go_live(producer, views, live)

    async def raid(user: User, source: str, target: str) -> httpx.Response:
        return await http.post("/v1/raids", headers=user.auth,
                               json={"from_broadcaster_id": source, "to_broadcaster_id": target})

    r = await raid(raider, mine, offline)
    assert r.status_code == 422 and r.json()["reason"] == "target_offline", r.text
    r = await raid(raider, mine, mine)
    assert r.status_code == 422 and r.json()["reason"] == "self_raid", r.text
    r = await raid(raider, live, mine)  # not the caller's channel
    assert r.status_code == 403 and r.json()["reason"] == "not_owner", r.text
    r = await http.post("/v1/raids", json={"from_broadcaster_id": mine, "to_broadcaster_id": live})
    assert r.status_code == 401
    r = await raid(raider, mine, str(uuid.uuid4()))
    assert r.status_code == 422 and r.json()["reason"] == "unknown_target", r.text
    r = await http.post("/v1/raids", headers=raider.auth, json={"from_broadcaster_id": mine, "to": live})
    assert r.status_code == 422 and r.json()["field"] == "to", r.text
    assert _raids_of(raids_platform, mine) == []  # nothing refused was recorded

    r = await raid(raider, mine, live)
    assert r.status_code == 200, r.text
    assert (await raid(raider, mine, live)).json()["reason"] == "raid_in_progress"  # one at a time
    for n in range(RAIDS_PER_WINDOW - 1):  # started and cancelled: each counts against the window
        assert (await http.delete("/v1/raids", headers=raider.auth, params={"broadcaster_id": mine})).status_code == 204
        assert (await raid(raider, mine, live)).status_code == 200, n
    assert (await http.delete("/v1/raids", headers=raider.auth, params={"broadcaster_id": mine})).status_code == 204
    r = await raid(raider, mine, live)
    assert r.status_code == 429 and r.json()["reason"] == "raids_rate_limited", r.text
    assert 1 <= int(r.headers["retry-after"]) <= 600
    r = await http.delete("/v1/raids", headers=raider.auth, params={"broadcaster_id": mine})
    assert r.status_code == 404 and r.json()["reason"] == "no_raid"


async def test_countdown_runs_out_and_viewers_move(raids_platform: Platform, http: httpx.AsyncClient,
                                                   views: ViewStore, producer: EventProducer) -> None:
    raider, target_owner = await _user(http), await _user(http)
    source, target = await _channel(http, raider), await _channel(http, target_owner)
    await _go_live(producer, views, source)
    await _go_live(producer, views, target)
    viewer = await Client.open(_ws(raids_platform, source))
    audience = await Client.open(_ws(raids_platform, target))
    try:
        r = await http.post("/v1/raids", headers=raider.auth,
                            json={"from_broadcaster_id": source, "to_broadcaster_id": target})
        assert r.status_code == 200, r.text
        raid = r.json()["data"][0]
        assert raid["status"] == "pending" and raid["to_broadcaster_id"] == target and raid["is_mature"] is False
        assert raid["deadline_at_ms"] - raid["created_at_ms"] == COUNTDOWN_S * 1000
        countdown = await viewer.next(lambda m: m["type"] == "RAID")
        assert countdown["kind"] == "countdown" and countdown["target"]["id"] == target
        r = await http.get("/v1/raids", headers=raider.auth, params={"broadcaster_id": source})
        assert r.status_code == 200 and r.json()["data"][0]["id"] == raid["id"]
        # Nobody says "go": the processors' raid worker sends the viewers on at the deadline.
        moved = await viewer.next(lambda m: m["type"] == "RAID" and m["kind"] == "outgoing", timeout_s=30)
        assert moved["target"]["id"] == target and moved["raider"]["id"] == source and moved["id"] == raid["id"]
        assert moved["target"]["name"] and moved["viewers"] == 0
        announced = await audience.next(lambda m: m["type"] == "RAID" and m["kind"] == "incoming")
        assert announced["raider"]["id"] == source and announced["channel_id"] == target
    finally:
        await viewer.ws.close()
        await audience.ws.close()
    def completions() -> list[RaidCompleted] | None:
        return [e for e in _raids_of(raids_platform, source) if isinstance(e, RaidCompleted)] or None

    records = await eventually_async(completions, 30, "RaidCompleted on the log")
    assert len(records) == 1 and isinstance(records[0], RaidCompleted) and records[0].early is False
    assert [type(e) for e in _raids_of(raids_platform, source)] == [RaidStarted, RaidCompleted]
    r = await http.get("/v1/raids", headers=raider.auth, params={"broadcaster_id": source})
    assert r.status_code == 404  # over: a new one may start
    r = await http.post(f"/v1/raids/{raid['id']}/go", headers=raider.auth)
    assert r.status_code == 409 and r.json()["reason"] == "raid_completed"


async def test_raid_now_and_cancel(raids_platform: Platform, http: httpx.AsyncClient, views: ViewStore,
                                   producer: EventProducer) -> None:
    raider, target_owner = await _user(http), await _user(http)
    source, target = await _channel(http, raider), await _channel(http, target_owner)
    await _go_live(producer, views, target)
    body = {"from_broadcaster_id": source, "to_broadcaster_id": target}
    viewer = await Client.open(_ws(raids_platform, source))
    try:
        first = (await http.post("/v1/raids", headers=raider.auth, json=body)).json()["data"][0]
        r = await http.delete("/v1/raids", headers=raider.auth, params={"broadcaster_id": source})
        assert r.status_code == 204
        cancelled = await viewer.next(lambda m: m["type"] == "RAID" and m["kind"] == "cancelled")
        assert cancelled["id"] == first["id"]
        r = await http.post(f"/v1/raids/{first['id']}/go", headers=raider.auth)
        assert r.status_code == 409 and r.json()["reason"] == "raid_cancelled"

        second = (await http.post("/v1/raids", headers=raider.auth, json=body)).json()["data"][0]
        r = await http.post(f"/v1/raids/{second['id']}/go", headers=target_owner.auth)
        assert r.status_code == 403
        r = await http.post(f"/v1/raids/{second['id']}/go", headers=raider.auth)
        assert r.status_code == 200, r.text
        assert r.json()["data"][0]["status"] == "completed"
        moved = await viewer.next(lambda m: m["type"] == "RAID" and m["kind"] == "outgoing")
        assert moved["id"] == second["id"]
        r = await http.delete("/v1/raids", headers=raider.auth, params={"broadcaster_id": source})
        assert r.status_code == 404  # nothing left to cancel
    finally:
        await viewer.ws.close()
    await eventually_async(lambda: len(_raids_of(raids_platform, source)) >= 4 or None, 30, "the raid events")
    kinds = [(type(e).__name__, getattr(e, "raid_id", None)) for e in _raids_of(raids_platform, source)]
    assert kinds == [("RaidStarted", first["id"]), ("RaidCancelled", first["id"]),
                     ("RaidStarted", second["id"]), ("RaidCompleted", second["id"])]
    done = _raids_of(raids_platform, source)[3]
    assert isinstance(done, RaidCompleted) and done.early is True
    assert isinstance(_raids_of(raids_platform, source)[1], RaidCancelled)
    # Well past the module's countdown: the cancelled raid never went ahead.
    await viewer_quiet(raids_platform, source)


async def viewer_quiet(platform: Platform, source: str) -> None:
    later = await Client.open(_ws(platform, source))
    try:
        await later.messages(COUNTDOWN_S + 1)
        assert [m for m in later.inbox if m["type"] == "RAID"] == []
    finally:
        await later.ws.close()


async def test_host_mode_until_the_hosted_stream_ends(raids_platform: Platform, http: httpx.AsyncClient,
                                                      views: ViewStore, producer: EventProducer) -> None:
    host_owner, target_owner = await _user(http), await _user(http)
    hosting, target, offline = (await _channel(http, host_owner), await _channel(http, target_owner),
                                await _channel(http, target_owner))
    stream_id = await _go_live(producer, views, target)
    path = f"/v1/channels/{hosting}/host"
    assert (await http.get(path)).json() == {"channel_id": hosting, "hosting": None}
    r = await http.post(path, headers=host_owner.auth, json={"target_channel_id": offline})
    assert r.status_code == 422 and r.json()["reason"] == "target_offline"
    r = await http.post(path, headers=host_owner.auth, json={"target_channel_id": hosting})
    assert r.status_code == 422 and r.json()["reason"] == "self_host"
    r = await http.post(path, headers=target_owner.auth, json={"target_channel_id": target})
    assert r.status_code == 403

    r = await http.post(path, headers=host_owner.auth, json={"target_channel_id": target})
    assert r.status_code == 200, r.text
    hosted = r.json()["hosting"]
    assert hosted["channel_id"] == target and hosted["live_stream_id"] == stream_id and hosted["channel_name"]
    assert (await http.get(path)).json()["hosting"]["channel_id"] == target
    assert (await http.delete(path, headers=host_owner.auth)).status_code == 204
    assert (await http.get(path)).json()["hosting"] is None

    assert (await http.post(path, headers=host_owner.auth, json={"target_channel_id": target})).status_code == 200
    hosts = Hosts(views.r, raids_platform.settings.valkey.key_prefix)
    await _end(producer, views, target, stream_id)
    assert (await http.get(path)).json()["hosting"] is None  # the read checks the target is live

    async def dropped() -> bool | None:
        return await hosts.get(hosting) is None or None

    await eventually_async(dropped, 30, "the host view to drop the ended stream")


async def test_a_target_that_went_offline_cancels_the_raid(raids_platform: Platform, http: httpx.AsyncClient,
                                                           views: ViewStore, producer: EventProducer) -> None:
    raider, target_owner = await _user(http), await _user(http)
    source, target = await _channel(http, raider), await _channel(http, target_owner)
    stream_id = await _go_live(producer, views, target)
    r = await http.post("/v1/raids", headers=raider.auth,
                        json={"from_broadcaster_id": source, "to_broadcaster_id": target})
    assert r.status_code == 200, r.text
    raid_id = r.json()["data"][0]["id"]
    await _end(producer, views, target, stream_id)
    r = await http.post(f"/v1/raids/{raid_id}/go", headers=raider.auth)
    assert r.status_code == 409 and r.json()["reason"] == "target_offline", r.text
    records = _raids_of(raids_platform, source)
    assert [type(e) for e in records] == [RaidStarted, RaidCancelled]
    assert isinstance(records[1], RaidCancelled) and records[1].reason == "TARGET_OFFLINE"
    assert (await http.get("/v1/raids", headers=raider.auth, params={"broadcaster_id": source})).status_code == 404

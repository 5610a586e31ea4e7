"""Recommendations end to end: ``GET /v1/recommendations`` on a real gateway, over real views and a real store.

The views are the real Valkey ones, written by the processors' own folds
(``ViewStore.apply``: channels, users, live streams and their viewer counts,
follows, chat bans); the watch history is heartbeats inserted straight into the
gateway's own analytics store (chDB in this process), whose materialised view
makes the heartbeat sessions the co-watching SQL reads.  Three taste clusters
of channels, each with its own audience; the viewer follows one channel of the
``games`` cluster and watched another, so games' live channels rank first,
even though the ``music`` channels have far more viewers right now.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from gateways.app import create_app
from gateways.auth import issue_token
from gateways.services import Services
from infra.embedded.threaded import serve_app
from infra.settings import Settings
from schemas.record import Record
from schemas.records.channel import ChannelCreated
from schemas.records.chat import UserBanned
from schemas.records.social import Followed
from schemas.records.stream import StreamStarted
from schemas.records.user import UserRegistered
from schemas.records.viewer import ViewerCountUpdated
from views.analytics.tables import HEARTBEATS
from views.fold import Applied
from views.store import ViewStore

pytestmark = pytest.mark.integration

CLUSTERS = {"games": 5, "music": 5, "cooking": 4}
BEAT_MS = 10_000


@dataclass
class World:
    """A gateway, and helpers that write views (with a Valkey client of the test's own event loop) and
    heartbeats (into the gateway's own analytics store) behind it."""

    settings: Settings
    svc: Services
    views: ViewStore
    http: httpx.AsyncClient
    offset: int = 0
    channels: dict[str, str] = field(default_factory=dict)  # name -> channel id
    streams: dict[str, str] = field(default_factory=dict)  # channel name -> live stream id
    heartbeats: list[list[object]] = field(default_factory=list)

    async def apply(self, *events: Record) -> None:
        for event in events:
            self.offset += 1
            await self.views.apply(Applied(self.offset, event))

    async def user(self, name: str) -> tuple[str, dict[str, str]]:
        """A registered user (in the user view) and a bearer token for them."""
        user_id = str(uuid.uuid4())
        await self.apply(UserRegistered(occurred_at=now_ms(), user_id=user_id, username=name))
        auth = self.settings.auth
        token = issue_token(str(auth.jwt_secret), auth.jwt_issuer, user_id, name, int(time.time()), 3600)
        return user_id, {"Authorization": f"Bearer {token}"}

    async def channel(self, name: str, owner: str, category: str, live: bool = True, viewers: int = 0) -> str:
        channel_id = str(uuid.uuid4())
        self.channels[name] = channel_id
        now = now_ms()
        await self.apply(ChannelCreated(occurred_at=now, channel_id=channel_id, owner_user_id=owner, name=name,
                                        title=f"{name} stream", category=category,
                                        stream_key_hash=uuid.uuid4().hex))
        if live:
            stream_id = str(uuid.uuid4())
            self.streams[name] = stream_id
            await self.apply(StreamStarted(occurred_at=now, stream_id=stream_id, channel_id=channel_id,
                                           title=f"{name} live", category=category, ingest_host="test"),
                             ViewerCountUpdated(occurred_at=now, channel_id=channel_id, stream_id=stream_id,
                                                viewers=viewers, window_s=60, bucket_s=15))
        return channel_id

    def watch(self, user_id: str, name: str, beats: int = 12, minutes_ago: int = 60) -> None:
        """One LIVE heartbeat session of ``user_id`` on channel ``name``."""
        session = str(uuid.uuid4())
        start = now_ms() - minutes_ago * 60_000
        for n in range(beats):
            self.heartbeats.append([start + n * BEAT_MS, self.channels[name], self.streams.get(name, "past"),
                                    session, user_id, "720p", 4.0, 3000, 2500, 0, "LIVE", "", 0,
                                    len(self.heartbeats)])

    async def load_heartbeats(self) -> None:
        await self.svc.analytics.insert(HEARTBEATS.name, HEARTBEATS.columns, self.heartbeats)
        self.heartbeats = []

    async def recommend(self, auth: dict[str, str], **params: Any) -> dict[str, Any]:
        r = await self.http.get("/v1/recommendations", headers=auth, params=params)
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "private, no-store"
        return r.json()  # type: ignore[no-any-return]


@pytest.fixture
def gateway(settings_factory: Callable[..., Settings]) -> Iterator[tuple[Settings, Services, str]]:
    settings = settings_factory()
    app = create_app(settings)
    with serve_app(app, settings.gateway.port) as url:
        yield settings, app.state.services, url


@pytest.fixture
async def world(gateway: tuple[Settings, Services, str]) -> AsyncIterator[World]:
    settings, svc, url = gateway
    from views.analytics.tables import ddl
    for statement in ddl(settings.analytics.retention_days):
        await svc.analytics.query(statement)
    client = aioredis.Redis.from_url(settings.valkey.url)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield World(settings, svc, ViewStore(client, settings.valkey.key_prefix), http)
    finally:
        await client.aclose()


def now_ms() -> int:
    return int(time.time() * 1000)


def names(body: dict[str, Any]) -> list[str]:
    return [r["channel_name"] for r in body["recommendations"]]


async def test_a_viewer_in_a_taste_cluster_gets_that_clusters_live_channels_first(world: World) -> None:
    creator, _ = await world.user("creator")
    me, my_auth = await world.user("viewer_me")
    # Three clusters of channels; music is the most watched right now, games the least.
    popularity = {"games": 3, "music": 900, "cooking": 40}
    for cluster, size in CLUSTERS.items():
        for i in range(size):
            await world.channel(f"{cluster}_{i}", creator, cluster.title(), viewers=popularity[cluster] + i)
    await world.channel("games_offline", creator, "Games", live=False)
    my_own = await world.channel("my_own_games", me, "Games", viewers=1)
    # Each cluster's audience watches (almost) only that cluster.
    for cluster, size in CLUSTERS.items():
        for v in range(12):
            viewer = f"{cluster}-fan-{v}"
            for i in range(size):
                if (v + i) % 4 != 0:  # not every fan watches every channel
                    world.watch(viewer, f"{cluster}_{i}")
            world.watch(viewer, "games_offline" if cluster == "games" else f"{cluster}_0", beats=3)
    world.watch("games-fan-0", "my_own_games")
    # The viewer follows games_0, watched games_1 (not followed) a while, and is banned from games_4's chat.
    world.watch(me, "games_1", beats=40)
    await world.load_heartbeats()
    await world.apply(Followed(occurred_at=now_ms(), follower_id=me, channel_id=world.channels["games_0"],
                               notifications_enabled=True),
                      UserBanned(occurred_at=now_ms(), channel_id=world.channels["games_4"], user_id=me,
                                 moderator_user_id=creator))

    body = await world.recommend(my_auth, limit=50)
    listed = names(body)
    assert body["personalized"] is True
    # The games cluster's live channels first (games_1 too: watched, not followed), then the rest by popularity.
    assert set(listed[:3]) == {"games_1", "games_2", "games_3"}
    assert all(r["reason"] == "cowatch" for r in body["recommendations"][:3])
    assert listed[3:] == [*(f"music_{i}" for i in reversed(range(5))), *(f"cooking_{i}" for i in reversed(range(4)))]
    # Never: the followed channel, the one that banned the viewer, their own, an offline one, or any twice.
    assert not {"games_0", "games_4", "my_own_games", "games_offline"} & set(listed)
    assert len(listed) == len(set(listed))
    assert my_own not in {r["channel_id"] for r in body["recommendations"]}
    first = body["recommendations"][0]
    assert first["stream_id"] == world.streams[first["channel_name"]] and first["viewers"] >= 3
    assert first["thumbnail_url"] == f"/thumbs/{first['stream_id']}.jpg" and first["score"] > 0

    # A music fan's list starts with music, whatever the viewer counts say.
    fan, fan_auth = await world.user("music_fan")
    world.watch(fan, "music_3", beats=30)
    await world.load_heartbeats()
    fan_list = names(await world.recommend(fan_auth, limit=4))
    assert set(fan_list) == {"music_0", "music_1", "music_2", "music_4"}

    # Cold start: no history, no follows: by category popularity and viewers (music's are the most watched).
    _, new_auth = await world.user("newcomer")
    cold = await world.recommend(new_auth, limit=6)
    assert names(cold) == ["music_4", "music_3", "music_2", "music_1", "music_0", "cooking_3"]
    assert {r["reason"] for r in cold["recommendations"]} == {"popular"}


async def test_recommendations_need_a_signed_in_viewer_and_check_their_parameters(world: World) -> None:
    r = await world.http.get("/v1/recommendations")
    assert r.status_code == 401
    assert (await world.http.get("/v1/recommendations", headers={"Authorization": "Bearer nope"})).status_code == 401
    _, auth = await world.user("viewer_params")
    for bad in ({"limit": "0"}, {"limit": "51"}, {"limit": "x"}, {"page": "2"}):
        r = await world.http.get("/v1/recommendations", headers=auth, params=bad)
        assert r.status_code == 400, (bad, r.text)
    assert (await world.recommend(auth))["recommendations"] == []  # nothing is live in this namespace


async def test_without_an_answer_from_the_analytics_store_the_list_is_the_cold_start_one(world: World) -> None:
    creator, _ = await world.user("creator_cold")
    _, auth = await world.user("viewer_cold")
    await world.channel("small_one", creator, "Crafts", viewers=2)
    await world.channel("big_one", creator, "Crafts", viewers=20)
    # The table co-watching reads is gone: the store refuses the statement.
    await world.svc.analytics.query("DROP TABLE watch_sessions_mv")
    await world.svc.analytics.query("DROP TABLE watch_sessions")
    body = await world.recommend(auth)
    assert body["personalized"] is False
    assert names(body) == ["big_one", "small_one"]
    assert {r["reason"] for r in body["recommendations"]} == {"popular"}


async def test_each_viewer_is_bounded_in_recommendation_requests(world: World) -> None:
    from gateways.recommendations import REQUESTS_PER_MINUTE

    _, auth = await world.user("viewer_bounded")
    for _ in range(REQUESTS_PER_MINUTE):
        assert (await world.http.get("/v1/recommendations", headers=auth)).status_code == 200
    r = await world.http.get("/v1/recommendations", headers=auth)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1, r.text
    _, other = await world.user("viewer_unbounded")
    assert (await world.http.get("/v1/recommendations", headers=other)).status_code == 200

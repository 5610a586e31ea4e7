"""Discovery end to end: events on the embedded broker, the processors as a real `glasscast run
processors` child folding them into Valkey, and the gateway answering the directory, categories and
search from those views.

Viewer counts are produced as ViewerCountUpdated events here (the count reporter's timer is slowed
to an hour so that it does not report 0 for these heartbeat-less streams in between); the path from
heartbeats to those events is tests/integration/test_viewer_counts.py's.  Names, categories and
search words carry a per-run tag, because the broker's topics are shared by the whole session.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from infra.embedded.valkey import ValkeyProcess
from processors.rebuild import rebuild_views
from schemas.record import Record
from schemas.records.channel import ChannelCreated, ChannelUpdated
from schemas.records.stream import StreamEnded, StreamStarted, StreamUpdated
from schemas.records.viewer import ViewerCountUpdated
from tests.conftest import Platform, wait_processors_assigned
from tests.factories import Backbone, platform_settings
from tests.waiting import eventually_async
from topics.producer import EventProducer
from topics.runtime import make_serde
from views.fold import Applied
from views.store import ViewStore

pytestmark = pytest.mark.integration

T0 = 1_790_000_000_000


@pytest.fixture(scope="module")
def discovery_platform(backbone: Backbone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The conftest ``platform`` with the count reporter slowed down (see the module docstring)."""
    from gateways.app import create_app
    from infra.embedded.threaded import serve_app
    from tests.servers import run_service

    data = tmp_path_factory.mktemp("directory")
    s = platform_settings(backbone, data, viewers={"snapshot_interval_s": 3600.0})
    with run_service(s, "processors", data / "processors.log") as proc:
        wait_processors_assigned(s, proc, data / "processors.log")
        with serve_app(create_app(s), s.gateway.port) as url:
            yield Platform(settings=s, url=url)


class World:
    """Channels through the API, stream and count events straight onto their topics."""

    def __init__(self, platform: Platform, http: httpx.AsyncClient, producer: EventProducer) -> None:
        self.s = platform.settings
        self.http = http
        self.producer = producer
        self.user_id = ""
        self.auth: dict[str, str] = {}
        self.live: dict[str, str] = {}  # stream id -> channel id, until ended

    async def sign_up(self) -> None:
        """A real account: a token for a user that does not exist is refused."""
        user = {"username": f"creator_{uuid.uuid4().hex[:8]}", "password": "correct horse battery"}
        r = await self.http.post("/v1/users", json=user)
        assert r.status_code == 201, r.text
        login = await self.http.post("/v1/auth/login", json=user)
        assert login.status_code == 200, login.text
        self.user_id = str(r.json()["id"])
        self.auth = {"Authorization": f"Bearer {login.json()['access_token']}"}

    async def channel(self, name: str, **fields: Any) -> str:
        r = await self.http.post("/v1/channels", headers=self.auth, json={"name": name, **fields})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def start(self, channel_id: str, title: str, category: str | None, started_at_ms: int,
                    tags: list[str] | None = None) -> str:
        stream_id = str(uuid.uuid4())
        await self.producer.send(StreamStarted(
            occurred_at=started_at_ms, stream_id=stream_id, channel_id=channel_id, title=title, category=category,
            tags=tuple(tags or ()), ingest_host="test"), channel_id)
        self.live[stream_id] = channel_id
        return stream_id

    async def update(self, channel_id: str, stream_id: str, title: str | None = None, category: str | None = None,
                     tags: list[str] | None = None) -> None:
        await self.producer.send(StreamUpdated(
            occurred_at=T0 + 50_000, stream_id=stream_id, channel_id=channel_id, updated_by_user_id=self.user_id,
            title=title, category=category, tags=None if tags is None else tuple(tags)), channel_id)

    async def end(self, channel_id: str, stream_id: str) -> None:
        self.live.pop(stream_id, None)
        await self.producer.send(StreamEnded(
            occurred_at=T0 + 60_000, stream_id=stream_id, channel_id=channel_id, started_at=T0, duration_ms=60_000,
            reason="PUBLISHER_STOPPED"), channel_id)

    async def count(self, channel_id: str, stream_id: str, viewers: int) -> None:
        await self.producer.send(ViewerCountUpdated(
            occurred_at=int(time.time() * 1000), channel_id=channel_id, stream_id=stream_id, viewers=viewers,
            window_s=60, bucket_s=15), channel_id)

    async def get(self, path: str, **params: Any) -> Any:
        r = await self.http.get(path, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    async def pages(self, size: int, **params: Any) -> list[dict[str, Any]]:
        """Every page of the directory, following next_cursor."""
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            body = await self.get("/v1/directory/streams", limit=size, **params,
                                  **({"cursor": cursor} if cursor else {}))
            assert len(body["streams"]) <= size
            out += body["streams"]
            cursor = body["next_cursor"]
            if cursor is None:
                return out


@pytest.fixture
async def world(discovery_platform: Platform) -> AsyncIterator[World]:
    serde = make_serde(discovery_platform.settings)
    producer = EventProducer(discovery_platform.settings.kafka, serde)
    try:
        async with httpx.AsyncClient(base_url=discovery_platform.url, timeout=30) as http:
            w = World(discovery_platform, http, producer)
            await w.sign_up()
            yield w
            # Other modules' processors replay the shared log: leave no stream of ours live in it.
            for stream_id, channel_id in list(w.live.items()):
                await w.end(channel_id, stream_id)
    finally:
        await asyncio.to_thread(producer.close, 10)
        serde.close()


def tagged() -> str:
    return uuid.uuid4().hex[:6]


async def test_directory_pages_exactly_across_ties_and_filters_by_category(world: World) -> None:
    tag = tagged()
    games, art = f"Speedrun {tag}", f"Art {tag}"
    # 12 streams in one category, most with 0 viewers and several starting in the same millisecond.
    streams: dict[str, dict[str, Any]] = {}
    for i in range(14):
        cat = games if i < 12 else art
        channel_id = await world.channel(f"d{tag}_{i:02d}")
        started = T0 + (i // 4) * 1000  # four streams per start time
        stream_id = await world.start(channel_id, f"stream {i}", cat, started, ["speedrun"])
        streams[stream_id] = {"channel_id": channel_id, "name": f"d{tag}_{i:02d}", "category": cat,
                              "started": started, "viewers": 0}
    ids = list(streams)
    for stream_id, viewers in [(ids[0], 50), (ids[5], 50), (ids[9], 7), (ids[12], 30)]:
        await world.count(streams[stream_id]["channel_id"], stream_id, viewers)
        streams[stream_id]["viewers"] = viewers

    async def settled() -> bool:
        listed = await world.pages(100, category=games)
        return len(listed) == 12 and {s["stream_id"]: s["viewers"] for s in listed} == {
            k: v["viewers"] for k, v in streams.items() if v["category"] == games}
    await eventually_async(settled, 30, "12 live streams with their counts", every_s=0.1)

    in_games = [k for k, v in streams.items() if v["category"] == games]
    by_viewers = sorted(in_games, key=lambda k: (-streams[k]["viewers"], -streams[k]["started"], k))
    by_recent = sorted(in_games, key=lambda k: (-streams[k]["started"], k))
    for size in (1, 3, 5, 12, 24):
        assert [s["stream_id"] for s in await world.pages(size, category=games)] == by_viewers
    assert [s["stream_id"] for s in await world.pages(5, category=games, sort="recent")] == by_recent
    # The category filter compares case-insensitively.
    assert [s["stream_id"] for s in await world.pages(7, category=games.upper())] == by_viewers

    first = (await world.get("/v1/directory/streams", category=games, limit=2))
    top = first["streams"][0]
    assert top == {"stream_id": by_viewers[0], "channel_id": streams[by_viewers[0]]["channel_id"],
                   "channel_name": streams[by_viewers[0]]["name"], "title": top["title"], "category": games,
                   "tags": ["speedrun"], "viewers": 50, "started_at_ms": streams[by_viewers[0]]["started"],
                   "thumbnail_url": f"/thumbs/{by_viewers[0]}.jpg"}
    assert first["next_cursor"] is not None

    # Every category, default sort and limit: ours appear in viewer order among whatever else is live.
    everything = await world.pages(100)
    mine = [s["stream_id"] for s in everything if s["stream_id"] in streams]
    assert mine == sorted(streams, key=lambda k: (-streams[k]["viewers"], -streams[k]["started"], k))
    assert len((await world.get("/v1/directory/streams"))["streams"]) <= 24

    rows = {r["name"]: r for r in (await world.get("/v1/categories"))["categories"]}
    assert rows[games] == {"name": games, "live_streams": 12, "viewers": 107}
    assert rows[art] == {"name": art, "live_streams": 2, "viewers": 30}
    listed = [r["name"] for r in (await world.get("/v1/categories"))["categories"]]
    assert listed.index(games) < listed.index(art)


async def test_bad_directory_queries_are_400_problems(world: World) -> None:
    channel_id = await world.channel(f"b{tagged()}_x")
    for at in (T0, T0 + 1):  # two live streams, so that a one-stream page has a cursor
        await world.start(channel_id, "bad queries", None, at)
    await eventually_async(lambda: _listed_at_least(world, 2), 30, "two live streams", every_s=0.1)
    recent_cursor = (await world.get("/v1/directory/streams", sort="recent", limit=1))["next_cursor"]
    assert recent_cursor is not None
    bad: list[tuple[str, dict[str, Any], str]] = [
        ("/v1/directory/streams", {"sort": "hot"}, "sort"),
        ("/v1/directory/streams", {"limit": "0"}, "limit"),
        ("/v1/directory/streams", {"limit": "101"}, "limit"),
        ("/v1/directory/streams", {"limit": "ten"}, "limit"),
        ("/v1/directory/streams", {"cursor": "not-a-cursor!"}, "cursor"),
        ("/v1/directory/streams", {"cursor": "dmlld2Vyc3xub3BlOm5vcGU"}, "cursor"),
        ("/v1/directory/streams", {"category": "x" * 65}, "category"),
        ("/v1/directory/streams", {"page": "2"}, "page"),
        ("/v1/categories", {"sort": "name"}, "sort"),
        ("/v1/search", {}, "q"),
        ("/v1/search", {"q": "   "}, "q"),
        ("/v1/search", {"q": "x" * 101}, "q"),
        ("/v1/search", {"q": "?!"}, "q"),
        ("/v1/search", {"q": "speedy", "live_only": "maybe"}, "live_only"),
        ("/v1/search", {"q": "speedy", "limit": "101"}, "limit"),
        ("/v1/directory/streams", {"cursor": recent_cursor}, "cursor"),  # a sort=recent cursor; the default is viewers
    ]
    for path, params, field in bad:
        r = await world.http.get(path, params=params)
        assert r.status_code == 400, (path, params, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["field"] == field and problem["status"] == 400 and problem["detail"], problem


async def test_streams_move_with_their_category_and_leave_when_they_end(world: World) -> None:
    tag = tagged()
    games, art, music = f"Games {tag}", f"Art {tag}", f"Music {tag}"
    ch_a = await world.channel(f"m{tag}_a")
    ch_b = await world.channel(f"m{tag}_b", category=music)  # a category used only by a channel
    a = await world.start(ch_a, "Blind run", games, T0)
    b = await world.start(ch_b, "Other", games, T0 + 1)
    await world.count(ch_a, a, 40)
    await world.count(ch_b, b, 2)

    async def rows() -> dict[str, Any]:
        return {r["name"]: r for r in (await world.get("/v1/categories"))["categories"]}

    async def listed(category: str) -> list[str]:
        return [s["stream_id"] for s in await world.pages(10, category=category)]

    async def counted() -> bool:
        return (await rows()).get(games) == {"name": games, "live_streams": 2, "viewers": 42}
    await eventually_async(counted, 30, "two live streams in the category", every_s=0.1)
    assert (await rows())[music] == {"name": music, "live_streams": 0, "viewers": 0}

    await world.update(ch_a, a, title="Now painting", category=art, tags=["watercolour"])

    async def moved() -> bool:
        return await listed(art) == [a] and await listed(games) == [b]
    await eventually_async(moved, 30, "the stream moving to its new category", every_s=0.1)
    shown = (await world.get("/v1/directory/streams", category=art))["streams"][0]
    assert (shown["title"], shown["category"], shown["tags"], shown["viewers"]) == (
        "Now painting", art, ["watercolour"], 40)
    r = await rows()
    assert r[games] == {"name": games, "live_streams": 1, "viewers": 2}
    assert r[art] == {"name": art, "live_streams": 1, "viewers": 40}

    await world.end(ch_a, a)
    await world.count(ch_a, a, 99)  # a snapshot that raced the end

    async def gone() -> bool:
        return await listed(art) == [] and (await rows())[art] == {"name": art, "live_streams": 0, "viewers": 0}
    await eventually_async(gone, 30, "the ended stream leaving the directory", every_s=0.1)
    await world.count(ch_b, b, 3)  # a later event on the same partition: everything before it is applied
    await eventually_async(lambda: _viewers_of(world, b, 3), 30, "the next count", every_s=0.1)
    assert a not in [s["stream_id"] for s in await world.pages(100)]
    assert (await rows())[art] == {"name": art, "live_streams": 0, "viewers": 0}


async def _listed_at_least(world: World, n: int) -> bool:
    return len((await world.get("/v1/directory/streams", limit=n))["streams"]) >= n


async def _viewers_of(world: World, stream_id: str, viewers: int) -> bool:
    return any(s["stream_id"] == stream_id and s["viewers"] == viewers for s in await world.pages(100))


async def test_search_matches_tokens_and_prefixes_and_boosts_live_channels(world: World) -> None:
    word, other = f"zq{tagged()}", f"yq{tagged()}"
    ch_alpha = await world.channel(f"{word}_alpha", title="Cozy Pokémon", tags=["chill"], category="Games")
    ch_beta = await world.channel(f"{word}_beta", title="Late night")
    ch_gamma = await world.channel(f"{word}_gamma", title="Offline for now")
    alpha = await world.start(ch_alpha, f"Pokémon {other} nuzlocke", "Games", T0, ["nuzlocke"])
    beta = await world.start(ch_beta, "Just chatting", None, T0)
    await world.count(ch_alpha, alpha, 5)
    await world.count(ch_beta, beta, 100)

    async def search(q: str, **params: Any) -> list[dict[str, Any]]:
        return list((await world.get("/v1/search", q=q, **params))["results"])

    async def ready() -> bool:
        found = {r["channel_id"]: r["viewers"] for r in await search(word)}
        return found == {ch_alpha: 5, ch_beta: 100, ch_gamma: 0}
    await eventually_async(ready, 30, "three channels indexed with their audiences", every_s=0.1)

    results = await search(word)
    assert [r["channel_id"] for r in results] == [ch_beta, ch_alpha, ch_gamma]  # live, more viewers first
    assert results[0] == {"channel_id": ch_beta, "channel_name": f"{word}_beta", "title": "Just chatting",
                          "category": None, "tags": [], "live": True, "stream_id": beta, "viewers": 100,
                          "score": results[0]["score"]}
    assert results[2]["live"] is False and results[2]["stream_id"] is None and results[2]["title"] == "Offline for now"
    assert results[0]["score"] > results[1]["score"] > results[2]["score"]
    # A prefix matches, below a whole token; case and accents do not matter.
    assert [r["channel_id"] for r in await search(word[:-1].upper())] == [ch_beta, ch_alpha, ch_gamma]
    assert (await search(word[:-1]))[0]["score"] < results[0]["score"]
    assert [r["channel_id"] for r in await search(f"{word} GAMMA")] == [ch_gamma]
    assert [r["channel_id"] for r in await search(f"pokemon {word}")] == [ch_alpha]
    assert [r["channel_id"] for r in await search(f"{other} NUZL")] == [ch_alpha]  # the live stream's title and tags
    assert [r["channel_id"] for r in await search(word, live_only="true")] == [ch_beta, ch_alpha]
    assert len(await search(word, limit=1)) == 1
    assert await search(f"{word} nomatch{tagged()}") == []

    # The stream ends: its title leaves the index, the channel's own stays; the channel shows offline.
    await world.end(ch_alpha, alpha)
    await eventually_async(lambda: _no_results(search, other), 30, "the ended stream's words leaving the index",
                           every_s=0.1)
    found = await search(f"{word} alpha")
    assert [(r["channel_id"], r["live"], r["title"]) for r in found] == [(ch_alpha, False, "Cozy Pokémon")]
    assert [r["channel_id"] for r in await search(word, live_only="true")] == [ch_beta]

    # The owner retitles the offline channel: the old words go, the new ones come.
    r = await world.http.patch(f"/v1/channels/{ch_gamma}", headers=world.auth, json={"title": f"Back {other}"})
    assert r.status_code == 200, r.text
    await eventually_async(lambda: _has(search, other, ch_gamma), 30, "the new title indexed", every_s=0.1)
    assert await search(f"{word} offline") == []


async def _no_results(search: Callable[[str], Awaitable[list[dict[str, Any]]]], q: str) -> bool:
    return await search(q) == []


async def _has(search: Callable[[str], Awaitable[list[dict[str, Any]]]], q: str, channel_id: str) -> bool:
    return [r["channel_id"] for r in await search(q)] == [channel_id]


async def test_rebuilt_discovery_views_equal_the_processors_own(world: World,
                                                                 discovery_platform: Platform) -> None:
    tag = tagged()
    channel_id = await world.channel(f"r{tag}_one", category=f"Rebuild {tag}")
    stream_id = await world.start(channel_id, f"rebuild {tag}", f"Rebuild {tag}", T0)
    await world.count(channel_id, stream_id, 12)
    await eventually_async(lambda: _viewers_of(world, stream_id, 12), 30, "the stream listed", every_s=0.1)
    s = discovery_platform.settings
    rebuilt = s.with_section("valkey", key_prefix=f"{s.valkey.key_prefix}rebuilt:")
    client = aioredis.Redis.from_url(s.valkey.url)
    serde = make_serde(s)
    try:
        report = await rebuild_views(rebuilt, serde)
        assert report.events > 0
        original = await ViewStore(client, s.valkey.key_prefix).dump()
        again = await ViewStore(client, rebuilt.valkey.key_prefix).dump()
    finally:
        serde.close()
        await client.aclose()

    def discovery(dump: dict[str, Any], prefix: str) -> dict[str, Any]:
        return {k[len(prefix):]: v for k, v in dump.items()
                if k.startswith((f"{prefix}view:directory:", f"{prefix}view:search:"))}
    mine = discovery(original, s.valkey.key_prefix)
    assert f"view:directory:stream:{stream_id}" in mine and f"view:search:doc:{channel_id}" in mine
    assert discovery(again, rebuilt.valkey.key_prefix) == mine


def _history() -> list[tuple[str, Applied[Record]]]:
    """A small log per topic: (topic, event) in the order the processors saw it."""
    ch1, ch2, ch3, s1, s2, s3, s4 = (str(uuid.uuid4()) for _ in range(7))

    def channel(offset: int, channel_id: str, name: str, category: str) -> tuple[str, Applied[Record]]:
        return "channels", Applied(offset, ChannelCreated(
            occurred_at=T0, channel_id=channel_id, owner_user_id="u1", name=name, title=f"{name} title",
            category=category, tags=("chill",), stream_key_hash=name * 4))

    def lifecycle(record: Callable[..., Record], offset: int, stream_id: str, channel_id: str,
                  **v: Any) -> tuple[str, Applied[Record]]:
        return "stream.lifecycle", Applied(offset, record(
            occurred_at=T0 + offset, stream_id=stream_id, channel_id=channel_id, **v))

    def count(offset: int, stream_id: str, channel_id: str, viewers: int) -> tuple[str, Applied[Record]]:
        return "viewer.counts", Applied(offset, ViewerCountUpdated(
            occurred_at=T0 + offset, channel_id=channel_id, stream_id=stream_id, viewers=viewers, window_s=60,
            bucket_s=15))

    return [
        channel(0, ch1, "first", "Games"), channel(1, ch2, "second", "Art"),
        lifecycle(StreamStarted, 0, s1, ch1, title="Run one", category="Games", tags=("speedrun",),
                  ingest_host="test"),
        count(0, s1, ch1, 10),
        lifecycle(StreamStarted, 1, s2, ch2, title="Paint", category="Art", tags=(), ingest_host="test"),
        count(1, s1, ch1, 12), count(2, s2, ch2, 4),
        lifecycle(StreamUpdated, 2, s1, ch1, updated_by_user_id="u1", title="Run two", category="art", tags=None),
        ("channels", Applied(2, ChannelUpdated(
            occurred_at=T0 + 5, channel_id=ch2, updated_by_user_id="u1", title="New title", category=None,
            tags=("paint",)))),
        lifecycle(StreamEnded, 3, s2, ch2, reason="PUBLISHER_STOPPED", started_at=T0 + 1, duration_ms=2),
        count(3, s2, ch2, 6),  # raced the end
        count(4, s1, ch1, 15),
        # A channel whose second start came before the first stream's end: both are listed, both named.
        lifecycle(StreamStarted, 4, s3, ch3, title="Set one", category=None, tags=(), ingest_host="test"),
        lifecycle(StreamStarted, 5, s4, ch3, title="Set two", category=None, tags=(), ingest_host="test"),
        channel(3, ch3, "third", "Music"),
    ]


def _interleave(history: list[tuple[str, Applied[Record]]], rng: random.Random) -> list[Applied[Record]]:
    """The same events, each topic's in its own order, the topics shuffled together (as a replay reads them)."""
    queues: dict[str, list[Applied[Record]]] = {}
    for topic, event in history:
        queues.setdefault(topic, []).append(event)
    out = []
    while any(queues.values()):
        topic = rng.choice([t for t, q in queues.items() if q])
        out.append(queues[topic].pop(0))
    return out


async def test_discovery_folds_are_idempotent_and_independent_of_topic_interleaving(valkey: ValkeyProcess) -> None:
    client = aioredis.Redis.from_url(valkey.url)
    history = _history()
    prefix = f"dv{uuid.uuid4().hex[:6]}:"
    store = ViewStore(client, prefix)

    async def dump(s: ViewStore) -> dict[str, Any]:
        return {k[len(s.prefix):]: v for k, v in (await s.dump()).items()
                if k.startswith((f"{s.prefix}view:directory:", f"{s.prefix}view:search:"))}
    try:
        for _, event in history:
            await store.apply(event)
        once = await dump(store)
        # The final state: s1 live in "art" with 15 viewers, s2 gone, s3 and s4 live under the third channel's
        # name; every channel's category kept.
        live = sorted(json.loads(v)["channel_name"] for k, v in once.items() if k.startswith("view:directory:stream:"))
        assert live == ["first", "third", "third"]
        assert sum(v.count('"viewers": 15') for k, v in once.items() if k.startswith("view:directory:stream:")) == 1
        assert once["view:directory:category-live"] == {"art": "1", "games": "0"}
        assert once["view:directory:category-viewers"] == {"art": "15", "games": "0"}
        assert once["view:directory:category-names"] == ["Art", "Games", "Music", "art"]
        assert [await store.apply(e) for _, e in history] == [False] * len(history)
        assert await dump(store) == once
        for seed in range(8):
            other = ViewStore(client, f"{prefix}{seed}:")
            for event in _interleave(history, random.Random(seed)):
                await other.apply(event)
            assert await dump(other) == once, seed
    finally:
        await client.aclose()

"""Issue 13, viewer counts: heartbeats that try to inflate them, against a running platform.

A ``glasscast run gateway`` child and a ``glasscast run processors`` child on
the session broker and Valkey; the count checked is the one the ladder reads
(``view:viewers:{channel}``, from the HyperLogLog buckets).  Each test plays
another client by binding its sockets to its own loopback address (127.0.0.x),
so the per-client limits of one test do not touch another's.

That nothing forged was counted is shown from the log: after the flood a
legitimate "marker" beat is sent, and once it is on ``viewer.heartbeats``
everything produced before it is too (one producer, one partition per
channel), so the records before it are exactly what was accepted.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from gateways.playback_token import PlaybackClaims, derive_secret, sign
from infra.settings import Settings
from schemas.records.stream import StreamStarted
from tests.conftest import Platform, wait_processors_assigned
from tests.factories import Backbone, platform_settings
from tests.servers import run_service, wait_healthy
from tests.waiting import eventually_async
from topics.runtime import make_serde
from topics.tools import read_topic
from views.fold import Applied
from views.store import ViewStore
from views.viewers import ViewerCounts

pytestmark = pytest.mark.integration

BUCKET_S, WINDOW_S = 5, 40
HEARTBEAT_INTERVAL_S = 20.0  # replays in a test come well inside it
SESSIONS_PER_CLIENT = 4
ISSUES_PER_MINUTE = 30
FLOOD = 10_000
FLOOD_CONCURRENCY = 16


@pytest.fixture(scope="module")
def beat_platform(backbone: Backbone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    data = tmp_path_factory.mktemp("heartbeats")
    s = platform_settings(backbone, data, viewers={
        "bucket_s": BUCKET_S, "window_s": WINDOW_S, "snapshot_interval_s": 0.5, "batch_within_s": 0.05,
        "heartbeat_interval_s": HEARTBEAT_INTERVAL_S, "sessions_per_client": SESSIONS_PER_CLIENT,
        "session_issues_per_minute": ISSUES_PER_MINUTE})
    with run_service(s, "processors", data / "processors.log") as proc:
        wait_processors_assigned(s, proc, data / "processors.log")
        with run_service(s, "gateway", data / "gateway.log") as gateway:
            url = f"http://127.0.0.1:{s.gateway.port}"
            wait_healthy(url, gateway, data / "gateway.log")
            yield Platform(settings=s, url=url)


def client_at(platform: Platform, address: str) -> httpx.AsyncClient:
    """A client whose connections come from ``address`` (a loopback address: another client to the gateway)."""
    return httpx.AsyncClient(base_url=platform.url, timeout=30,
                             transport=httpx.AsyncHTTPTransport(local_address=address))


async def go_live(s: Settings) -> tuple[str, str]:
    """A new channel with a live stream, straight into the stream view."""
    client = aioredis.Redis.from_url(s.valkey.url)
    channel_id, stream_id = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        await ViewStore(client, s.valkey.key_prefix).apply(Applied(1, StreamStarted(
            occurred_at=int(time.time() * 1000), stream_id=stream_id, channel_id=channel_id,
            title="heartbeats", category=None, ingest_host="ingest-test")))
    finally:
        await client.aclose()
    return channel_id, stream_id


async def playback(http: httpx.AsyncClient, stream_id: str) -> dict[str, Any]:
    r = await http.get(f"/v1/streams/{stream_id}/playback")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def beat(session_id: str, token: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"session_id": session_id, "rendition": "720p30", "buffer_health_s": 4.5,
                            "bitrate_kbps": 3000}
    return body if token is None else body | {"token": token}


async def send(http: httpx.AsyncClient, stream_id: str, answer: dict[str, Any]) -> httpx.Response:
    return await http.post(f"/v1/streams/{stream_id}/heartbeat", json=beat(answer["session_id"], answer["token"]))


async def shown(s: Settings, channel_id: str, expected: int) -> int:
    """The channel's displayed count once it is ``expected`` (fails with the last value if it never is)."""
    client = aioredis.Redis.from_url(s.valkey.url)
    counts = ViewerCounts(client, s.valkey.key_prefix, BUCKET_S, WINDOW_S)
    try:
        async def reached() -> bool:
            return await counts.shown(channel_id) == expected
        await eventually_async(reached, 30, f"a displayed count of {expected}")
        return await counts.shown(channel_id)
    finally:
        await client.aclose()


async def logged_sessions(s: Settings, stream_id: str, marker: str) -> list[str]:
    """Session ids of the stream's Heartbeat records, once the marker session's record is in the log."""
    serde = make_serde(s)
    try:
        async def with_marker() -> list[str]:
            records = await asyncio.to_thread(lambda: list(read_topic(
                s.kafka, serde, "viewer.heartbeats", start="beginning", exit_at_end=True)))
            sessions = [e.value.session_id for e in records if str(e.value.stream_id) == stream_id]
            return sessions if marker in sessions else []
        return await eventually_async(with_marker, 30, "the marker beat in viewer.heartbeats")
    finally:
        serde.close()


async def test_forged_sessions_are_refused_with_a_reason(beat_platform: Platform) -> None:
    s = beat_platform.settings
    channel_id, stream_id = await go_live(s)
    secret = derive_secret(str(s.auth.jwt_secret), str(s.auth.playback_secret))
    async with client_at(beat_platform, "127.0.0.2") as http:
        real = await playback(http, stream_id)
        assert real["heartbeat_interval_s"] == HEARTBEAT_INTERVAL_S and len(real["session_id"]) == 32
        url = f"/v1/streams/{stream_id}/heartbeat"
        forged = uuid.uuid4().hex
        later = int(time.time()) + 600
        for body, reason in [
            (beat(forged, None), "missing playback token"),
            (beat(forged, real["token"]), "not the session"),  # a real token, another session
            (beat(forged, sign(b"not the platform's secret", PlaybackClaims(channel_id, later, forged, True))),
             "signature"),
            (beat(forged, sign(secret, PlaybackClaims(str(uuid.uuid4()), later, forged, True))), "another channel"),
            # A client-chosen session, as ?session= once put in tokens: signed, but never issued.
            (beat(forged, sign(secret, PlaybackClaims(channel_id, later, forged))), "not the session"),
            (beat(real["session_id"], sign(secret, PlaybackClaims(channel_id, 1000, real["session_id"], True))),
             "expired"),
            (beat(forged, "x" * 5000), "longer than"),
        ]:
            r = await http.post(url, json=body)
            assert r.status_code in (403, 422), (reason, r.text)
            assert r.headers["content-type"] == "application/problem+json" and reason in r.json()["detail"]
        # ?session= no longer chooses the session; a refresh keeps the issued one and issues one for a legacy token.
        chosen = await http.get(f"/v1/streams/{stream_id}/playback", params={"session": "attacker-chosen"})
        assert chosen.status_code == 200 and chosen.json()["session_id"] != "attacker-chosen"
        refreshed = await http.post(f"/v1/streams/{stream_id}/playback/refresh-token", json={"token": real["token"]})
        assert refreshed.json()["session_id"] == real["session_id"]
        legacy = sign(secret, PlaybackClaims(channel_id, later, "attacker-chosen"))
        refreshed = await http.post(f"/v1/streams/{stream_id}/playback/refresh-token", json={"token": legacy})
        assert refreshed.status_code == 200 and refreshed.json()["session_id"] != "attacker-chosen"


async def test_ten_thousand_random_session_heartbeats_move_the_count_by_0(beat_platform: Platform) -> None:
    s = beat_platform.settings
    channel_id, stream_id = await go_live(s)
    secret = derive_secret(str(s.auth.jwt_secret), str(s.auth.playback_secret))
    async with client_at(beat_platform, "127.0.0.3") as http:
        viewer = await playback(http, stream_id)
        assert (await send(http, stream_id, viewer)).status_code == 204
    assert await shown(s, channel_id, 1) == 1

    statuses: collections.Counter[int] = collections.Counter()
    tokens = [None, viewer["token"], "not.a-token"]

    async def attacker(worker: int) -> None:
        # Every kind of token an unauthenticated client can come by, each with a random session id.
        async with client_at(beat_platform, "127.0.0.4") as http:
            for i in range(worker, FLOOD, FLOOD_CONCURRENCY):
                session_id = uuid.uuid4().hex
                legacy = sign(secret, PlaybackClaims(channel_id, int(time.time()) + 600, session_id))
                token = (*tokens, legacy)[i % 4]
                r = await http.post(f"/v1/streams/{stream_id}/heartbeat", json=beat(session_id, token))
                statuses[r.status_code] += 1
    await asyncio.gather(*[attacker(w) for w in range(FLOOD_CONCURRENCY)])
    assert statuses == {403: FLOOD}, statuses

    async with client_at(beat_platform, "127.0.0.3") as http:
        # The viewer beats on (429: its last beat is recent, and still counted), then the marker joins.
        assert (await send(http, stream_id, viewer)).status_code in (204, 429)
        marker = await playback(http, stream_id)
        assert marker["session_id"] != viewer["session_id"]
        assert (await send(http, stream_id, marker)).status_code == 204
    assert set(await logged_sessions(s, stream_id, marker["session_id"])) == {
        viewer["session_id"], marker["session_id"]}
    assert await shown(s, channel_id, 2) == 2  # the viewer and the marker: the flood added 0


async def test_a_session_counts_once_however_fast_it_is_replayed(beat_platform: Platform) -> None:
    s = beat_platform.settings
    channel_id, stream_id = await go_live(s)
    async with client_at(beat_platform, "127.0.0.5") as http:
        viewer = await playback(http, stream_id)
        replays = await asyncio.gather(*[send(http, stream_id, viewer) for _ in range(50)])
        assert sorted(r.status_code for r in replays) == [204] + [429] * 49
        refused = next(r for r in replays if r.status_code == 429)
        assert refused.json()["reason"] == "heartbeat_too_soon"
        assert 0 < int(refused.headers["retry-after"]) <= HEARTBEAT_INTERVAL_S
        # A refreshed token is the same session: still too soon.
        fresh = (await http.post(f"/v1/streams/{stream_id}/playback/refresh-token",
                                 json={"token": viewer["token"]})).json()
        assert fresh["session_id"] == viewer["session_id"]
        assert (await send(http, stream_id, fresh)).status_code == 429
        assert await shown(s, channel_id, 1) == 1
        marker = await playback(http, stream_id)
        assert (await send(http, stream_id, marker)).status_code == 204
    assert sorted(await logged_sessions(s, stream_id, marker["session_id"])) == sorted(
        [viewer["session_id"], marker["session_id"]])


async def test_one_client_minting_sessions_is_capped(beat_platform: Platform) -> None:
    s = beat_platform.settings
    channel_id, stream_id = await go_live(s)
    answers: list[httpx.Response] = []
    refusals: list[httpx.Response] = []
    async with client_at(beat_platform, "127.0.0.6") as http:
        # Twice the minute's allowance and one more: at least one 429, even across a minute boundary.
        for _ in range(2 * ISSUES_PER_MINUTE + 1):
            r = await http.get(f"/v1/streams/{stream_id}/playback")
            (answers if r.status_code == 200 else refusals).append(r)
        assert refusals and all(r.status_code == 429 for r in refusals)
        assert refusals[0].json()["reason"] == "sessions_rate_limited" and int(refusals[0].headers["retry-after"]) > 0
        mine = {r.json()["session_id"]: r.json() for r in answers}
        assert len(mine) == SESSIONS_PER_CLIENT  # however many answers, this many sessions
        for answer in mine.values():
            assert (await send(http, stream_id, answer)).status_code == 204
    assert await shown(s, channel_id, SESSIONS_PER_CLIENT) == SESSIONS_PER_CLIENT
    # Another client is not held to the first one's limits, and gets sessions of its own.
    async with client_at(beat_platform, "127.0.0.7") as http:
        other = await playback(http, stream_id)
        assert other["session_id"] not in mine
        assert (await send(http, stream_id, other)).status_code == 204
    assert await shown(s, channel_id, SESSIONS_PER_CLIENT + 1) == SESSIONS_PER_CLIENT + 1

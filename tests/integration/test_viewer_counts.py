"""Viewer counts end to end: heartbeats through the gateway on a socket, the processors as a real
`glasscast run processors` child, HyperLogLog buckets and the viewer view in the session Valkey.

Buckets are shrunk to 2 s merged over 8 s so that a viewer who stops drops out
in seconds rather than the production minute; the maths is the same.  Every
beat carries a session the playback endpoint issued (with its token), and this
platform lets one client (this test, on 127.0.0.1) hold thousands of sessions
and beat once a second; tests/security/test_heartbeats.py covers the limits.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from gateways.auth import issue_token
from infra.embedded.valkey import ValkeyProcess
from infra.settings import Settings
from processors.viewers_agent import CountReporter
from schemas.records.stream import StreamEnded, StreamStarted
from tests.conftest import Platform, wait_processors_assigned
from tests.factories import Backbone, platform_settings
from tests.waiting import eventually_async
from topics.consumer import Event
from topics.producer import EventProducer
from topics.runtime import make_serde
from topics.tools import read_topic
from views.fold import Applied
from views.store import ViewStore
from views.viewers import ViewerCounts, bucket_of

pytestmark = pytest.mark.integration

VIEWERS = 1000
CONCURRENCY = 10  # players beating at once
TOLERANCE = 0.02  # the issue's "within 2 %"; HyperLogLog's standard error is about 0.81 %
BUCKET_S, WINDOW_S = 2, 8  # counted 6-8 s after a beat: rounds of 1,000 beats fit inside
HEARTBEAT_INTERVAL_S = 1.0  # one beat per session per second (less the jitter slack) is accepted


@pytest.fixture(scope="module")
def viewer_platform(backbone: Backbone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The conftest ``platform``, with small buckets and a fast snapshot timer.

    The gateway runs as ``glasscast run gateway`` (``create_app(settings)`` under
    uvicorn) in its own process rather than in a thread: a thousand viewers'
    requests from this process would otherwise queue on the GIL behind the
    server thread and turn each round into seconds.
    """
    from tests.servers import run_service, wait_healthy

    data = tmp_path_factory.mktemp("viewers")
    s = platform_settings(backbone, data, viewers={"bucket_s": BUCKET_S, "window_s": WINDOW_S,
                                                   "snapshot_interval_s": 0.5, "batch_within_s": 0.05,
                                                   "heartbeat_interval_s": HEARTBEAT_INTERVAL_S,
                                                   "sessions_per_client": 100_000,
                                                   "session_issues_per_minute": 1_000_000})
    with run_service(s, "processors", data / "processors.log") as proc:
        wait_processors_assigned(s, proc, data / "processors.log")
        with run_service(s, "gateway", data / "gateway.log") as gateway:
            url = f"http://127.0.0.1:{s.gateway.port}"
            wait_healthy(url, gateway, data / "gateway.log")
            yield Platform(settings=s, url=url)


async def _views(s: Settings) -> tuple[aioredis.Redis, ViewStore]:
    client = aioredis.Redis.from_url(s.valkey.url)
    return client, ViewStore(client, s.valkey.key_prefix)


async def _go_live(views: ViewStore) -> tuple[str, str]:
    """A live stream straight into the stream view, as the processors build it from StreamStarted."""
    channel_id, stream_id = str(uuid.uuid4()), str(uuid.uuid4())
    await views.apply(Applied(1, StreamStarted(
        occurred_at=int(time.time() * 1000), stream_id=stream_id, channel_id=channel_id,
        title="viewers", category=None, ingest_host="ingest-test")))
    return channel_id, stream_id


async def _end(views: ViewStore, channel_id: str, stream_id: str) -> None:
    now_ms = int(time.time() * 1000)
    await views.apply(Applied(2, StreamEnded(
        occurred_at=now_ms, stream_id=stream_id, channel_id=channel_id, started_at=now_ms, duration_ms=0,
        reason="PUBLISHER_STOPPED")))


def _beat(session: tuple[str, str] | str, **extra: Any) -> dict[str, Any]:
    """A beat for an issued (session id, token), or for a bare session id that fails validation first."""
    session_id, token = session if isinstance(session, tuple) else (session, "")
    return {"session_id": session_id, "token": token, "rendition": "720p30", "buffer_health_s": 4.5,
            "bitrate_kbps": 3000, **extra}


async def _session(http: httpx.AsyncClient, base_url: str, stream_id: str) -> tuple[str, str]:
    """A viewer session issued by the playback endpoint, with its token."""
    r = await http.get(f"{base_url}/v1/streams/{stream_id}/playback")
    assert r.status_code == 200, r.text
    return r.json()["session_id"], r.json()["token"]


async def test_counts_adapter_merges_buckets_and_forgets_old_ones(valkey: ValkeyProcess) -> None:
    s = Settings().with_section("valkey", url=valkey.url, key_prefix=f"t{uuid.uuid4().hex[:8]}:")
    client, views = await _views(s)
    counts = ViewerCounts(client, s.valkey.key_prefix, 15, 60)
    try:
        channel_id, stream_id = await _go_live(views)
        now = 1_790_000_010_000
        b = bucket_of(now, 15)
        # One session in two buckets counts once; a session three windows old does not count.
        await counts.add({(channel_id, b): {"a", "b"}, (channel_id, b - 1): {"a", "c"},
                          (channel_id, b - 12): {"old"}})
        assert (await counts.count([channel_id], now)) == {channel_id: 3}
        assert (await counts.count([channel_id], now + 45_000)) == {channel_id: 2}  # b - 1 left the window
        assert (await counts.count([channel_id], now + 60_000)) == {channel_id: 0}
        assert 0 < await client.ttl(counts.k_hll(channel_id, b)) <= 180
        assert (await counts.live_channels()).get(channel_id) == stream_id
        await counts.store(channel_id, stream_id, 3)
        assert await counts.shown(channel_id) == 3 and await counts.shown_channels() == {channel_id}
        await counts.store(channel_id, str(uuid.uuid4()), 5)  # a late snapshot of another broadcast
        assert await counts.shown(channel_id) == 0 and await counts.shown_channels() == set()
        await counts.store(channel_id, stream_id, 4)
        await counts.store(channel_id, None, None)  # offline
        assert await counts.shown(channel_id) == 0 and await counts.shown_channels() == set()
        await _end(views, channel_id, stream_id)
        assert channel_id not in await counts.live_channels()
        assert await counts.lease("tick-1", 1000) and not await counts.lease("tick-1", 1000)
    finally:
        await client.aclose()


async def test_reporter_reports_each_live_channel_once_per_tick(settings_factory: Callable[..., Settings]) -> None:
    s = settings_factory()
    client, views = await _views(s)
    serde = make_serde(s)
    producer = EventProducer(s.kafka, serde)
    counts = ViewerCounts(client, s.valkey.key_prefix, 15, 60)
    reporter = CountReporter(counts, producer, 5.0)
    try:
        channel_id, stream_id = await _go_live(views)
        now = int(time.time() * 1000)
        await counts.add({(channel_id, bucket_of(now, 15)): {f"s{i}" for i in range(40)}})
        assert await reporter.tick(now) == 1
        # A second worker on the same tick stands down (the lease is taken).
        assert await CountReporter(counts, producer, 5.0).tick(now + 1) == 0
        await counts.store(channel_id, stream_id, 40)
        await _end(views, channel_id, stream_id)
        assert await reporter.tick(now + 5_000) == 1  # the channel went offline: one last 0
        assert await asyncio.to_thread(producer.flush, 10) == 0
        reported = [e.value for e in await asyncio.to_thread(lambda: list(read_topic(
            s.kafka, serde, "viewer.counts", start="beginning", exit_at_end=True))) if e.key == channel_id]
    finally:
        await asyncio.to_thread(producer.close, 10)
        serde.close()
        await client.aclose()
    assert [(str(v.stream_id) if v.stream_id else None, v.viewers) for v in reported] == [
        (stream_id, 40), (None, 0)]
    assert all((v.bucket_s, v.window_s) == (15, 60) for v in reported)


async def test_heartbeat_route_validates_and_produces(viewer_platform: Platform) -> None:
    s = viewer_platform.settings
    client, views = await _views(s)
    try:
        channel_id, stream_id = await _go_live(views)
    finally:
        await client.aclose()
    url = f"/v1/streams/{stream_id}/heartbeat"
    user_id = str(uuid.uuid4())
    token = issue_token(str(s.auth.jwt_secret), s.auth.jwt_issuer, user_id, "viewer_1", int(time.time()), 600)
    async with httpx.AsyncClient(base_url=viewer_platform.url) as http:
        anon_session = await _session(http, viewer_platform.url, stream_id)
        user_session = await _session(http, viewer_platform.url, stream_id)
        r = await http.post(url, json=_beat(anon_session, latency_ms=2100, channel_id=channel_id))
        assert r.status_code == 204 and r.content == b""
        r = await http.post(url, json=_beat(user_session), headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 204
        bad: list[tuple[Any, int, str]] = [
            (_beat("x" * 65), 422, "session_id"), ({"rendition": "720p30"}, 422, "session_id"),
            (_beat(""), 422, "session_id"), (_beat("s", bitrate_kbps=-1), 422, "bitrate_kbps"),
            (_beat("s", buffer_health_s="lots"), 422, "buffer_health_s"),
            (_beat("s", buffer_health_s=True), 422, "buffer_health_s"),
            (_beat("s", fps=30), 422, "fps"), (_beat("s", channel_id=str(uuid.uuid4())), 422, "channel_id"),
        ]
        for body, status, field in bad:
            r = await http.post(url, json=body)
            assert r.status_code == status, (body, r.text)
            assert r.headers["content-type"] == "application/problem+json" and r.json()["field"] == field
        r = await http.post(url, content=b"not json", headers={"content-type": "application/json"})
        assert r.status_code == 400
        r = await http.post(f"/v1/streams/{uuid.uuid4()}/heartbeat", json=_beat("s"))
        assert r.status_code == 404
        r = await http.post(url, json=_beat("s"), headers={"Authorization": "Bearer forged"})
        assert r.status_code == 401

    serde = make_serde(s)
    try:
        async def both_beats() -> dict[str, Event]:
            found: dict[str, Event] = {}
            for e in await asyncio.to_thread(lambda: list(read_topic(s.kafka, serde, "viewer.heartbeats",
                                                                     start="beginning", exit_at_end=True))):
                if str(e.value.stream_id) == stream_id:
                    found[e.value.session_id] = e
            return found if len(found) >= 2 else {}
        found = await eventually_async(both_beats, 20, "both heartbeats in viewer.heartbeats")
    finally:
        serde.close()
    assert set(found) == {anon_session[0], user_session[0]}
    anon, user = found[anon_session[0]].value, found[user_session[0]].value
    assert found[anon_session[0]].key == channel_id and str(anon.channel_id) == channel_id
    assert anon.user_id is None and anon.latency_ms == 2100
    assert anon.rendition == "720p30" and anon.bitrate_kbps == 3000
    assert str(user.user_id) == user_id


async def test_a_thousand_viewers_are_counted_and_decay_after_they_stop(viewer_platform: Platform) -> None:
    s = viewer_platform.settings
    client, views = await _views(s)
    counts = ViewerCounts(client, s.valkey.key_prefix, BUCKET_S, WINDOW_S)
    try:
        channel_id, stream_id = await _go_live(views)
        url = f"{viewer_platform.url}/v1/streams/{stream_id}/heartbeat"
        failures: list[int] = []

        async def issue_group(n: int) -> list[tuple[str, str]]:
            async with httpx.AsyncClient(timeout=30) as http:
                return [await _session(http, viewer_platform.url, stream_id) for _ in range(n)]
        groups = await asyncio.gather(*[issue_group(VIEWERS // CONCURRENCY) for _ in range(CONCURRENCY)])
        sessions = [session for group in groups for session in group]
        assert len({session_id for session_id, _ in sessions}) == VIEWERS

        async def player_group(group: list[tuple[str, str]]) -> None:
            # One client (one keep-alive connection) per group: httpx's shared pool
            # slows down under many concurrent requests.
            async with httpx.AsyncClient(timeout=30) as http:
                for session in group:
                    r = await http.post(url, json=_beat(session))
                    if r.status_code not in (204, 429):  # 429: a round quicker than the beat interval
                        failures.append(r.status_code)

        def close_enough(n: int) -> bool:
            return abs(n - VIEWERS) <= TOLERANCE * VIEWERS

        # Every viewer beats once a round (a round takes a few seconds, well inside the
        # window), as players beat every 30 s against the 60 s production window.
        async def round_counted() -> bool:
            await asyncio.gather(*[player_group(sessions[i::CONCURRENCY]) for i in range(CONCURRENCY)])
            assert not failures, failures[:5]
            return close_enough(await counts.shown(channel_id))
        await eventually_async(round_counted, 60, f"a count of ~{VIEWERS}", every_s=0)
        shown = await counts.shown(channel_id)
        assert close_enough(shown), shown  # just stopped: every session is still in the window

        serde = make_serde(s)
        try:
            snapshots = [e.value for e in await asyncio.to_thread(lambda: list(read_topic(
                s.kafka, serde, "viewer.counts", start="beginning", exit_at_end=True)))
                if e.key == channel_id]
        finally:
            serde.close()
        assert snapshots and all(str(v.stream_id) == stream_id for v in snapshots)
        assert any(close_enough(v.viewers) for v in snapshots)
        assert {(v.bucket_s, v.window_s) for v in snapshots} == {(BUCKET_S, WINDOW_S)}

        # They stop: the count decays to nothing once their buckets leave the window.
        async def gone() -> bool:
            raw = await client.get(counts.k_viewers(channel_id))
            return raw is not None and int(raw) == 0
        await eventually_async(gone, WINDOW_S + 15, "decay to 0")

        # The stream ends: the channel's count is withdrawn (read as 0 by the ladder).
        await _end(views, channel_id, stream_id)

        async def withdrawn() -> bool:
            return not await client.exists(counts.k_viewers(channel_id))
        await eventually_async(withdrawn, 15, "count withdrawn after the stream ended")
    finally:
        await client.aclose()


async def test_undecodable_heartbeat_is_dead_lettered_and_counting_goes_on(viewer_platform: Platform) -> None:
    from confluent_kafka import Producer

    s = viewer_platform.settings
    client, views = await _views(s)
    counts = ViewerCounts(client, s.valkey.key_prefix, BUCKET_S, WINDOW_S)
    try:
        channel_id, stream_id = await _go_live(views)
        producer = Producer({"bootstrap.servers": s.kafka.bootstrap_servers})
        delivered: list[Any] = []
        producer.produce("viewer.heartbeats", b"\x00\x00\x00\x7f\xffnot avro", channel_id.encode(),
                         on_delivery=lambda err, msg: delivered.append((err, msg.partition(), msg.offset())))
        assert producer.flush(10) == 0 and delivered[0][0] is None
        async with httpx.AsyncClient(base_url=viewer_platform.url) as http:
            session = await _session(http, viewer_platform.url, stream_id)

            async def counted() -> bool:
                r = await http.post(f"/v1/streams/{stream_id}/heartbeat", json=_beat(session))
                assert r.status_code in (204, 429)  # 429: again within the beat interval
                return await counts.shown(channel_id) == 1
            await eventually_async(counted, 20, "a beat after the garbage counted")
    finally:
        await client.aclose()

    serde = make_serde(s)
    try:
        async def dead_lettered() -> list[Event]:
            return [e for e in await asyncio.to_thread(lambda: list(read_topic(
                s.kafka, serde, "deadletter", start="beginning", exit_at_end=True)))
                if e.value.consumer_group == s.processors.app_id and e.value.key == channel_id.encode()]
        found = await eventually_async(dead_lettered, 20, "the garbage heartbeat in the dead-letter topic")
    finally:
        serde.close()
    assert [(e.value.source_topic, e.value.partition, e.value.offset) for e in found] == [
        ("viewer.heartbeats", delivered[0][1], delivered[0][2])]

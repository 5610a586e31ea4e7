"""The gateway's LL-HLS live edge over a real socket: blocking playlist reload, preload hints, delta updates.

A real gateway (uvicorn on a free 127.0.0.1 port) with the session's embedded
broker and Valkey.  The test plays the ingest: it writes part blobs to the
origin store and produces ``PartReady`` on ``media.parts`` itself, and indexes
complete segments in Valkey as the processors would (one segment behind, as
the index lags the edge).  Segments are 1 s (5 parts of 200 ms, PART-TARGET
223 ms), so the target duration is 1 s and a request held past 3 target
durations gets its 503 after 3 s.

A held request is shown to be held by the gateway's own count of waiting
conditions (never by a sleep), then woken by the event it waits for.
"""

from __future__ import annotations

import asyncio
import difflib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from gateways.app import create_app
from gateways.playback_token import PlaybackClaims, derive_secret, sign
from infra.embedded.threaded import serve_app
from infra.settings import Secret, Settings
from media.blob import FileBlobStore
from media.package.playlist import ParsedPlaylist, parse_media_playlist
from schemas.records.media import PartReady, SegmentReady
from schemas.records.stream import StreamStarted
from tests.factories import Backbone, platform_settings
from tests.waiting import eventually_async
from topics.producer import EventProducer
from topics.runtime import make_serde
from views.fold import Applied
from views.store import ViewStore

pytestmark = pytest.mark.integration

SECRET = "llhls-gateway-test-" + "x" * 40
PARTS = 5  # per segment
PART_MS = 200
PART_TARGET_MS = 223
SEGMENT_MS = PARTS * PART_MS
T0 = 1_790_000_000_000
HTTP_TIMEOUT_S = 20  # longer than any hold (3 target durations: 3 s)


@dataclass
class Gateway:
    url: str
    app: Any
    settings: Settings


def _settings(backbone: Backbone, data_dir: Path) -> Settings:
    # The doorbell on, as `glasscast up` runs it: the edge's consumer sleeps while idle and a producer's ring
    # wakes it (topics/doorbell.py).
    return platform_settings(backbone, data_dir, auth={"jwt_secret": Secret(SECRET)},
                             transcode={"live_window": 10}, gateway={"live_edge_ready_timeout_s": 60.0},
                             kafka={"doorbell_url": backbone.valkey_url})


@pytest.fixture(scope="module")
def gateway(backbone: Backbone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    s = _settings(backbone, tmp_path_factory.mktemp("llhls") / "data")
    app = create_app(s)
    with serve_app(app, s.gateway.port) as url:
        yield Gateway(url, app, s)


@pytest.fixture(scope="module")
def producer(gateway: Gateway) -> Iterator[EventProducer]:
    serde = make_serde(gateway.settings)
    p = EventProducer(gateway.settings.kafka, serde)
    yield p
    p.close(10)
    serde.close()


class Live:
    """One stream, published part by part by the test."""

    def __init__(self, gateway: Gateway, producer: EventProducer, stream_id: str, channel_id: str) -> None:
        self.gateway, self.producer = gateway, producer
        self.stream_id, self.channel_id = stream_id, channel_id
        self.origin = FileBlobStore(gateway.settings.data_dir / "origin")
        self.token = sign(derive_secret(SECRET, ""), PlaybackClaims(channel_id, int(time.time()) + 600))
        self.http = httpx.AsyncClient(base_url=gateway.url, timeout=HTTP_TIMEOUT_S)
        self.blobs: dict[tuple[str, int], list[bytes]] = {}
        self.offset = 100

    @property
    def edge(self) -> Any:
        return self.gateway.app.state.services.edge

    async def part(self, seq: int, index: int, *, last: bool = False, rendition: str = "source",
                   index_behind: bool = True) -> PartReady:
        """Store part ``index`` of segment ``seq`` and announce it; ``last`` completes the segment."""
        data = f"{rendition} {seq}.{index}|".encode()
        self.origin.put(f"hls/{self.stream_id}/{rendition}/{seq:08d}.{index}.m4s", data)
        parts = self.blobs.setdefault((rendition, seq), [])
        parts.append(data)
        if last:
            self.origin.put(f"hls/{self.stream_id}/{rendition}/{seq:08d}.m4s", b"".join(parts))
        record = PartReady(
            occurred_at=int(time.time() * 1000), stream_id=self.stream_id, channel_id=self.channel_id,
            rendition=rendition, seq=seq, part=index, uri=f"{seq:08d}.{index}.m4s", duration_ms=PART_MS,
            independent=index == 0, byte_size=len(data), program_date_time=T0 + seq * SEGMENT_MS + index * PART_MS,
            part_target_ms=PART_TARGET_MS, segment_complete=last, segment_uri=f"{seq:08d}.m4s" if last else None,
            segment_duration_ms=(index + 1) * PART_MS if last else None, init_uri="init.mp4",
            codecs="mp4a.40.2" if rendition == "audio" else "avc1.64001f,mp4a.40.2",
            width=None if rendition == "audio" else 1280, height=None if rendition == "audio" else 720,
            fps=None if rendition == "audio" else 30.0, audio_only=rendition == "audio")
        await self.producer.send(record, self.stream_id)
        if last and index_behind and seq > 0:
            await self.index(seq - 1, rendition)  # the segment index lags the edge by a segment
        return record

    async def segment(self, seq: int, rendition: str = "source") -> None:
        for i in range(PARTS):
            await self.part(seq, i, last=i == PARTS - 1, rendition=rendition)

    async def index(self, seq: int, rendition: str = "source") -> None:
        """What the processors fold from SegmentReady into the segment index."""
        self.offset += 1
        client = aioredis.Redis.from_url(self.gateway.settings.valkey.url)
        try:
            await ViewStore(client, self.gateway.settings.valkey.key_prefix).apply(Applied(self.offset, SegmentReady(
                occurred_at=int(time.time() * 1000), stream_id=self.stream_id, channel_id=self.channel_id,
                rendition=rendition, seq=seq, duration_ms=SEGMENT_MS, program_date_time=T0 + seq * SEGMENT_MS,
                byte_size=100, uri=f"{seq:08d}.m4s", parts=(), discontinuity=False, pts_90k=90 * SEGMENT_MS * seq,
                init_uri="init.mp4", codecs="avc1.64001f,mp4a.40.2", bandwidth_bps=2_000_000,
                width=None if rendition == "audio" else 1280, height=None if rendition == "audio" else 720,
                fps=None if rendition == "audio" else 30.0, audio_only=rendition == "audio")))
        finally:
            await client.aclose()

    def url(self, name: str, rendition: str = "source") -> str:
        return f"/hls/{self.stream_id}/{rendition}/{name}"

    async def get(self, name: str, rendition: str = "source", **directives: Any) -> httpx.Response:
        return await self.http.get(self.url(name, rendition), params={"token": self.token, **directives})

    async def playlist(self, rendition: str = "source", **directives: Any) -> ParsedPlaylist:
        r = await self.get("index.m3u8", rendition, **directives)
        assert r.status_code == 200, r.text
        return parse_media_playlist(r.text)

    async def seen(self, seq: int, part: int, rendition: str = "source") -> None:
        """Wait until the gateway's edge has folded part ``part`` of ``seq``."""
        def folded() -> bool:
            edge = self.edge.get(self.stream_id, rendition)
            return edge is not None and edge.position() >= (seq, part)

        await eventually_async(folded, 30, f"the gateway's edge to reach {seq}.{part}")

    async def held(self, request: asyncio.Task[httpx.Response], conditions: int = 1) -> None:
        """Wait until the gateway holds ``request`` (its condition is waited on), and check it is held."""
        await eventually_async(lambda: self.edge.waiters.waiting(self.stream_id) >= conditions, 30,
                               "the request to be held")
        assert not request.done()


@pytest.fixture
async def live(gateway: Gateway, producer: EventProducer) -> AsyncIterator[Live]:
    stream_id, channel_id = str(uuid.uuid4()), str(uuid.uuid4())
    client = aioredis.Redis.from_url(gateway.settings.valkey.url)
    try:
        await ViewStore(client, gateway.settings.valkey.key_prefix).apply(Applied(1, StreamStarted(
            occurred_at=int(time.time() * 1000), stream_id=stream_id, channel_id=channel_id, title="llhls",
            category=None, ingest_host="test")))
    finally:
        await client.aclose()
    stream = Live(gateway, producer, stream_id, channel_id)
    try:
        yield stream
    finally:
        await stream.http.aclose()


def _held(coro: Any) -> asyncio.Task[httpx.Response]:
    return asyncio.ensure_future(coro)


async def test_a_playlist_with_parts_is_ll_hls_and_a_held_reload_is_woken_by_the_next_part(live: Live) -> None:
    await live.segment(0)
    await live.segment(1)
    await live.part(2, 0)
    await live.part(2, 1)
    await live.seen(2, 1)
    r = await live.get("index.m3u8")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-cache"
    p = parse_media_playlist(r.text)
    assert p.part_target_ms == PART_TARGET_MS and p.server_control is not None and p.server_control.can_block_reload
    assert [s.media_sequence for s in p.segments] == [0, 1] and not p.ended
    assert [len(s.parts) for s in p.segments] == [PARTS, PARTS]
    assert p.open_segment is not None and p.open_segment.media_sequence == 2
    assert [x.uri for x in p.open_segment.parts] == [f"00000002.{i}.m4s?token={live.token}" for i in (0, 1)]
    assert p.preload_hint is not None and p.preload_hint.uri == f"00000002.2.m4s?token={live.token}"
    assert f"token={live.token}" in p.segments[0].uri and p.map_uri == f"init.mp4?token={live.token}"

    # Held until part 2 of segment 2 exists, then answered with it.
    request = _held(live.get("index.m3u8", _HLS_msn=2, _HLS_part=2))
    await live.held(request)
    await live.part(2, 2)
    r = await request
    assert r.status_code == 200 and r.headers["cache-control"] == "no-cache"
    p = parse_media_playlist(r.text)
    assert p.open_segment is not None and len(p.open_segment.parts) == 3
    assert p.preload_hint is not None and p.preload_hint.uri.startswith("00000002.3.m4s")
    # Already there: answered at once; _HLS_msn alone waits for the whole segment.
    assert (await live.get("index.m3u8", _HLS_msn=2, _HLS_part=1)).status_code == 200
    request = _held(live.get("index.m3u8", _HLS_msn=2))
    await live.held(request)
    await live.part(2, 3)
    await live.seen(2, 3)
    assert not request.done()  # a part is not the segment
    await live.part(2, 4, last=True)
    p = parse_media_playlist((await request).text)
    assert p.segments[-1].media_sequence == 2 and len(p.segments[-1].parts) == PARTS and p.open_segment is None
    assert p.preload_hint is not None and p.preload_hint.uri.startswith("00000003.0.m4s")


async def test_requests_held_for_the_same_part_share_one_rendering(live: Live) -> None:
    await live.segment(0)
    await live.part(1, 0)
    await live.seen(1, 0)
    held = 200
    renderings = live.edge.renderings
    async with httpx.AsyncClient(base_url=live.gateway.url, timeout=HTTP_TIMEOUT_S,
                                 limits=httpx.Limits(max_connections=held)) as http:
        requests = [_held(http.get(live.url("index.m3u8"), params={"token": live.token, "_HLS_msn": 1,
                                                                     "_HLS_part": 1})) for _ in range(held)]
        await eventually_async(lambda: live.edge.held == held, 30, f"{held} requests held")
        metrics = (await live.http.get("/metrics")).text
        assert f"glasscast_hls_held_requests {float(held)}" in metrics
        made = renderings.made
        await live.part(1, 1)
        answers = await asyncio.gather(*requests)
    assert {r.status_code for r in answers} == {200} and len({r.text for r in answers}) == 1
    assert renderings.made == made + 1  # one rendering for all of them
    p = parse_media_playlist(answers[0].text)
    assert p.open_segment is not None and len(p.open_segment.parts) == 2


async def test_a_part_past_the_last_one_of_its_segment_waits_for_part_0_of_the_next(live: Live) -> None:
    await live.segment(0)
    for i in range(PARTS):
        await live.part(1, i, last=i == PARTS - 1)
    await live.seen(1, PARTS - 1)
    # Segment 1 ended with part 4; part 5 of it means part 0 of segment 2.
    request = _held(live.get("index.m3u8", _HLS_msn=1, _HLS_part=PARTS))
    await live.held(request)
    await live.part(2, 0)
    r = await request
    assert r.status_code == 200
    p = parse_media_playlist(r.text)
    assert p.open_segment is not None and p.open_segment.media_sequence == 2 and len(p.open_segment.parts) == 1


async def test_bad_directives_are_400(live: Live) -> None:
    await live.segment(0)
    await live.part(1, 0)
    await live.part(1, 1)
    await live.seen(1, 1)
    limit = 3000 // PART_TARGET_MS  # the Advance Part Limit: 3 / PART-TARGET, 13 parts
    for directives, needle in (
        ({"_HLS_part": 1}, "without _HLS_msn"),
        ({"_HLS_msn": "one"}, "decimal integer"),
        ({"_HLS_msn": "-1"}, "decimal integer"),
        ({"_HLS_msn": "1.5"}, "decimal integer"),
        ({"_HLS_msn": 1, "_HLS_part": "x"}, "decimal integer"),
        ({"_HLS_msn": 3}, "past the last segment"),  # last complete is 0: up to 2 may be asked for
        ({"_HLS_msn": 1, "_HLS_part": 1 + limit + 1}, "over the limit"),
        ({"_HLS_msn": 2, "_HLS_part": limit}, "over the limit"),
    ):
        r = await live.get("index.m3u8", **directives)
        assert r.status_code == 400, (directives, r.text)
        assert needle in r.json()["detail"], (directives, r.json())
    assert live.edge.waiters.waiting(live.stream_id) == 0


async def test_a_reload_held_for_3_target_durations_is_503_and_so_is_a_hint(live: Live) -> None:
    await live.segment(0)
    await live.part(1, 0)
    await live.seen(1, 0)
    answers = await asyncio.gather(live.get("index.m3u8", _HLS_msn=2), live.get("00000001.1.m4s"))
    for r in answers:
        assert r.status_code == 503, r.text
        assert r.json()["reason"] in ("blocking_reload_timeout", "part_timeout") and r.headers["retry-after"]
    assert live.edge.held == 0


async def test_the_hinted_part_is_held_then_served_and_404_when_its_segment_ends_without_it(live: Live) -> None:
    await live.segment(0)
    await live.part(1, 0)
    await live.part(1, 1)
    await live.seen(1, 1)
    assert (await live.get("00000001.0.m4s")).content == b"source 1.0|"
    # Not the hint (the next part but one, an older segment, another rendition): 404 at once.
    for name, rendition in (("00000001.3.m4s", "source"), ("00000000.7.m4s", "source"),
                            ("00000001.2.m4s", "audio")):
        r = await live.get(name, rendition)
        assert r.status_code == 404, (name, r.text)
    request = _held(live.get("00000001.2.m4s"))
    await live.held(request)
    await live.part(1, 2)
    r = await request
    assert r.status_code == 200 and r.content == b"source 1.2|" and "immutable" in r.headers["cache-control"]
    # The next hint, 1.3: the segment ends instead (the next part is part 0 of segment 2).
    request = _held(live.get("00000001.3.m4s"))
    await live.held(request)
    await live.part(2, 0)
    r = await request
    assert r.status_code == 404, r.text
    tokenless = await live.http.get(live.url("00000002.0.m4s"))
    assert tokenless.status_code == 403  # parts are checked like segments


async def test_a_delta_update_skips_the_old_segments(live: Live) -> None:
    for seq in range(10):
        await live.segment(seq)
    await live.part(10, 0)
    await live.part(10, 1)
    await live.seen(10, 1)
    full = await live.playlist()
    delta_response = await live.get("index.m3u8", _HLS_skip="YES")
    assert delta_response.headers["cache-control"] == "no-cache"
    delta = parse_media_playlist(delta_response.text)
    # 10 s of segments + 0.4 s of parts; CAN-SKIP-UNTIL is 6 target durations (6 s): the first 4 end 6 s before.
    assert full.server_control is not None and full.server_control.can_skip_until_ms == 6000
    assert full.skipped_segments == 0 and delta.skipped_segments == 4
    assert delta.media_sequence == full.media_sequence == 0
    assert [s.media_sequence for s in delta.segments] == [s.media_sequence for s in full.segments[4:]]
    assert [s.uri for s in delta.segments] == [s.uri for s in full.segments[4:]]
    assert delta.open_segment == full.open_segment and delta.preload_hint == full.preload_hint
    # Parts only for the last segments (3, counting the open one).
    assert [bool(s.parts) for s in full.segments] == [False] * 8 + [True, True]
    merged = parse_media_playlist(delta_response.text, previous=full)
    assert merged.segments == full.segments


async def test_rendition_reports_name_the_siblings_newest_part(live: Live) -> None:
    for rendition in ("source", "audio"):
        await live.segment(0, rendition)
    await live.part(1, 0, rendition="audio")
    await live.part(1, 1, rendition="audio")
    await live.part(1, 0)
    await live.seen(1, 1, "audio")
    await live.seen(1, 0)
    source, audio = await live.playlist("source"), await live.playlist("audio")
    assert [(r.uri, r.last_msn, r.last_part) for r in source.rendition_reports] == [
        (f"../audio/index.m3u8?token={live.token}", 1, 1)]
    assert [(r.uri, r.last_msn, r.last_part) for r in audio.rendition_reports] == [
        (f"../source/index.m3u8?token={live.token}", 1, 0)]


async def test_a_rendition_without_parts_is_plain_hls_and_ignores_directives(live: Live) -> None:
    await live.index(0, "480p30")
    await live.index(1, "480p30")
    r = await live.get("index.m3u8", "480p30", _HLS_msn=5, _HLS_part=3)
    assert r.status_code == 200 and r.headers["cache-control"] == "public, max-age=1"
    p = parse_media_playlist(r.text)
    assert p.part_target_ms is None and p.server_control is None and len(p.segments) == 2


async def test_once_the_stream_ended_directives_are_ignored(live: Live) -> None:
    from schemas.records.stream import StreamEnded

    await live.segment(0)
    await live.part(1, 0)
    await live.seen(1, 0)
    request = _held(live.get("index.m3u8", _HLS_msn=1, _HLS_part=3))
    await live.held(request)
    await live.producer.send(StreamEnded(occurred_at=int(time.time() * 1000), stream_id=live.stream_id,
                                         channel_id=live.channel_id, started_at=T0, duration_ms=1000), live.channel_id)
    r = await request  # woken by the end
    assert r.status_code == 200 and r.text.rstrip().endswith("#EXT-X-ENDLIST")
    p = parse_media_playlist(r.text)
    assert p.preload_hint is None and p.open_segment is None and [s.media_sequence for s in p.segments] == [0]
    r = await live.get("index.m3u8", _HLS_msn=7, _HLS_part=1)  # no 400 either: ignored
    assert r.status_code == 200


async def test_a_restarted_gateway_rebuilds_the_edge_from_the_log(gateway: Gateway, producer: EventProducer) -> None:
    # A gateway of its own (same data dir and key prefix as the shared one, so the same views and origin).
    s = gateway.settings.with_section("gateway", port=_free_port())
    stream_id, channel_id = str(uuid.uuid4()), str(uuid.uuid4())
    first_app = create_app(s)
    with serve_app(first_app, s.gateway.port) as url:
        live = Live(Gateway(url, first_app, s), producer, stream_id, channel_id)
        client = aioredis.Redis.from_url(s.valkey.url)
        try:
            await ViewStore(client, s.valkey.key_prefix).apply(Applied(1, StreamStarted(
                occurred_at=int(time.time() * 1000), stream_id=stream_id, channel_id=channel_id, title="restart",
                category=None, ingest_host="test")))
        finally:
            await client.aclose()
        for seq in range(3):
            await live.segment(seq)
            await live.segment(seq, "audio")
        await live.part(3, 0)
        await live.part(3, 1)
        await live.part(3, 0, rendition="audio")
        await live.seen(3, 1)
        await live.seen(3, 0, "audio")
        before = (await live.get("index.m3u8")).text
        await live.http.aclose()
    second_app = create_app(s)
    with serve_app(second_app, s.gateway.port) as url:
        again = Live(Gateway(url, second_app, s), producer, stream_id, channel_id)
        again.token = live.token  # the player's token: the same playlist, byte for byte
        try:
            after = await again.get("index.m3u8")  # the start waited for the edge to catch up
            assert after.status_code == 200
            assert after.text == before, "\n".join(difflib.unified_diff(before.split("\n"), after.text.split("\n")))
            request = _held(again.get("index.m3u8", _HLS_msn=3, _HLS_part=2))
            await again.held(request)
            again.blobs[("source", 3)] = [b"source 3.0|", b"source 3.1|"]
            await again.part(3, 2)
            p = parse_media_playlist((await request).text)
            assert p.open_segment is not None and len(p.open_segment.parts) == 3
        finally:
            await again.http.aclose()


def _free_port() -> int:
    from infra.embedded.process import free_port

    return free_port()

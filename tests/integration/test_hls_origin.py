"""The HLS origin's segment path (gateways/hls.py + gateways/origin_cache.py), in process.

Many viewers ask for a new segment at once: N concurrent requests for an
object not yet in memory make exactly one read of the origin store, later
ones are served from memory, and a missing object is a 404 that is not
remembered once the object appears.  Whole objects from memory and ranges
from the file carry the same validators and headers as before the cache.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from starlette.responses import FileResponse

from gateways.app import create_app
from gateways.hls import IMMUTABLE
from gateways.playback_token import PlaybackClaims, derive_secret, sign
from infra.settings import Secret, Settings
from media.blob import FileBlobStore, StoredBlob
from schemas.records.stream import StreamStarted
from tests.waiting import eventually_async
from views.fold import Applied
from views.store import ViewStore

pytestmark = pytest.mark.integration

SECRET = "origin-cache-test-" + "x" * 40
N = 40


class CountingStore(FileBlobStore):
    """The origin store, counting reads per ref; reads wait at ``gate`` while it is closed."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: Counter[str] = Counter()
        self.gate = threading.Event()
        self.gate.set()

    def get_object(self, ref: str) -> StoredBlob:
        self.reads[ref] += 1
        self.gate.wait(10)
        return super().get_object(ref)


class Origin:
    def __init__(self, http: httpx.AsyncClient, app: Any, store: CountingStore, stream_id: str, token: str) -> None:
        self.http, self.app, self.store, self.stream_id, self.token = http, app, store, stream_id, token

    def url(self, name: str, rendition: str = "source") -> str:
        return f"/hls/{self.stream_id}/{rendition}/{name}"

    def put(self, name: str, data: bytes, rendition: str = "source") -> Path:
        self.store.put(f"hls/{self.stream_id}/{rendition}/{name}", data)
        return self.store.path(f"hls/{self.stream_id}/{rendition}/{name}")

    def reads(self, name: str, rendition: str = "source") -> int:
        return self.store.reads[f"file:hls/{self.stream_id}/{rendition}/{name}"]

    async def get(self, name: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(self.url(name), params={"token": self.token}, **kwargs)

    async def concurrently(self, name: str, n: int = N) -> list[httpx.Response]:
        """``n`` requests for ``name`` held at the store until all have joined one read."""
        cache = self.app.state.services.origin_cache
        joined = cache.collapsed
        self.store.gate.clear()
        requests = [asyncio.create_task(self.get(name)) for _ in range(n)]
        try:
            await eventually_async(lambda: cache.collapsed >= joined + n - 1, 10, f"{n} requests joining one read",
                                   every_s=0.01)
        finally:
            self.store.gate.set()
        return await asyncio.gather(*requests)


@pytest.fixture
async def origin(settings_factory: Callable[..., Settings]) -> AsyncIterator[Origin]:
    s = settings_factory().with_section("auth", jwt_secret=Secret(SECRET))
    app = create_app(s)
    async with app.router.lifespan_context(app):
        store = CountingStore(s.data_dir / "origin")
        app.state.services.origin = store
        client = aioredis.Redis.from_url(s.valkey.url)
        stream_id, channel_id = str(uuid.uuid4()), str(uuid.uuid4())
        try:
            await ViewStore(client, s.valkey.key_prefix).apply(Applied(1, StreamStarted(
                occurred_at=int(time.time() * 1000), stream_id=stream_id, channel_id=channel_id,
                title="origin", category=None, ingest_host="test")))
        finally:
            await client.aclose()
        token = sign(derive_secret(SECRET, ""), PlaybackClaims(channel_id, int(time.time()) + 600))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
            yield Origin(http, app, store, stream_id, token)


async def test_concurrent_requests_for_a_new_segment_make_one_store_read(origin: Origin) -> None:
    body = os.urandom(1_000_000)
    origin.put("00000000.m4s", body)
    answers = await origin.concurrently("00000000.m4s")
    assert [r.status_code for r in answers] == [200] * N and all(r.content == body for r in answers)
    assert origin.reads("00000000.m4s") == 1
    # Later requests come from memory.
    for _ in range(5):
        assert (await origin.get("00000000.m4s")).content == body
    assert origin.reads("00000000.m4s") == 1


async def test_a_missing_segment_is_a_404_for_everyone_waiting_and_is_not_remembered(origin: Origin) -> None:
    answers = await origin.concurrently("00000001.m4s")
    assert {r.status_code for r in answers} == {404} and origin.reads("00000001.m4s") == 1
    assert answers[0].headers["content-type"] == "application/problem+json"
    assert "source/00000001.m4s" in answers[0].json()["detail"]
    origin.put("00000001.m4s", b"segment")
    r = await origin.get("00000001.m4s")
    assert r.status_code == 200 and r.content == b"segment" and origin.reads("00000001.m4s") == 2


async def test_init_segments_are_collapsed_too(origin: Origin) -> None:
    origin.put("init.mp4", b"ftyp moov")
    answers = await origin.concurrently("init.mp4", n=10)
    assert {r.content for r in answers} == {b"ftyp moov"} and origin.reads("init.mp4") == 1
    assert answers[0].headers["content-type"] == "video/mp4"


async def test_headers_ranges_and_conditional_requests_are_as_from_the_file(origin: Origin) -> None:
    body = os.urandom(5000)
    path = origin.put("00000002.m4s", body)
    expected = FileResponse(path, media_type="video/iso.segment", headers={"Cache-Control": IMMUTABLE},
                            stat_result=os.stat(path)).headers
    first = await origin.get("00000002.m4s")  # read from the store
    again = await origin.get("00000002.m4s")  # from memory
    for r in (first, again):
        got = {k: v for k, v in r.headers.items() if k not in ("x-request-id", "content-length")}
        assert got == {k: v for k, v in expected.items() if k != "content-length"}
        assert r.headers["content-length"] == "5000" and r.content == body
    etag = first.headers["etag"]
    r = await origin.get("00000002.m4s", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == body[100:200] and r.headers["etag"] == etag
    assert r.headers["content-range"] == "bytes 100-199/5000"
    r = await origin.get("00000002.m4s", headers={"Range": "bytes=9000-"})
    assert r.status_code == 416
    for headers in ({"If-None-Match": etag}, {"If-None-Match": f'"other", {etag}'},
                    {"If-None-Match": etag, "Range": "bytes=0-9"}):
        r = await origin.get("00000002.m4s", headers=headers)
        assert r.status_code == 304 and r.headers["etag"] == etag and r.headers["cache-control"] == IMMUTABLE
    assert (await origin.get("00000002.m4s", headers={"If-None-Match": '"other"'})).status_code == 200
    head = await origin.http.head(origin.url("00000002.m4s"), params={"token": origin.token})
    assert head.status_code == 200 and head.headers["content-length"] == "5000" and head.content == b""


async def test_tokens_are_checked_before_the_store_is_read(origin: Origin) -> None:
    origin.put("00000003.m4s", b"x")
    other = sign(derive_secret(SECRET, ""), PlaybackClaims(str(uuid.uuid4()), int(time.time()) + 600))
    for params, reason in (({}, "missing"), ({"token": "forged.token"}, "malformed"),
                           ({"token": other}, "another channel")):
        r = await origin.http.get(origin.url("00000003.m4s"), params=params)
        assert r.status_code == 403 and reason in r.json()["detail"]
    assert origin.reads("00000003.m4s") == 0
    # The token among other parameters, or percent-encoded, is read as well.
    for query in (f"_HLS_msn=3&token={origin.token}", "token=" + origin.token.replace(".", "%2E")):
        assert (await origin.http.get(f"{origin.url('00000003.m4s')}?{query}")).status_code == 200


async def test_a_token_verified_before_still_expires(origin: Origin) -> None:
    origin.put("00000004.m4s", b"x")
    assert (await origin.get("00000004.m4s")).status_code == 200
    services = origin.app.state.services
    services.clock = lambda: time.time() + 3600
    r = await origin.get("00000004.m4s")
    assert r.status_code == 403 and "expired" in r.json()["detail"]

"""The platform on the S3 blob store: nothing media goes to the data directory.

The real ffmpeg CLI publishes a few seconds; the ingest (in process), a media
worker and the processors (``glasscast run`` children) and the gateway (in
process) all run with ``GLASSCAST_BLOB_BACKEND=s3`` against moto's S3 server
mode on 127.0.0.1, a STAND-IN for S3/MinIO (tests/s3_standin.py), with the
credentials in the environment as boto3's standard chain reads them.  The
GOPs, segments, parts, init segments and the thumbnail land in the bucket
under ``<prefix>blobs/`` and ``<prefix>origin/``; the gateway serves the
playlists, segments (whole and a range) and the thumbnail from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
import redis.asyncio as aioredis

from gateways.app import create_app
from gateways.playback_token import PlaybackClaims, derive_secret, sign
from infra.embedded.process import free_port
from infra.embedded.threaded import serve_app
from infra.settings import Secret, Settings
from media.blob_s3 import make_client
from media.package.playlist import parse_media_playlist
from media.testpattern import ffmpeg_push
from schemas.records.stream import StreamStarted
from tests.conftest import wait_processors_assigned
from tests.integration.ingest_support import Ingest, ingest_settings, running_ingest
from tests.s3_standin import S3StandIn, running_standin, use_credentials
from tests.servers import run_service
from tests.waiting import eventually_async
from views.fold import Applied
from views.store import ViewStore

pytestmark = pytest.mark.integration

SECONDS = 6  # three 2 s GOPs
SECRET = "s3-media-plane-test-" + "x" * 40


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3StandIn]:
    use_credentials(monkeypatch)  # before any child starts: they inherit the environment
    with running_standin() as server:
        yield server


@contextlib.asynccontextmanager
async def platform_on_s3(s: Settings, tmp: Path) -> AsyncIterator[tuple[Ingest, str]]:
    with run_service(s, "processors", tmp / "processors.log") as proc:
        await asyncio.to_thread(wait_processors_assigned, s, proc, tmp / "processors.log")
        with run_service(s, "media-worker", tmp / "worker.log"), serve_app(create_app(s), s.gateway.port) as url:
            async with running_ingest(s) as ingest:
                yield ingest, url


def bucket_keys(standin: S3StandIn, bucket: str, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix``, read with a client of its own (not through the store)."""
    client = make_client(standin.endpoint_url, standin.region)
    found: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", ()):
            found[obj["Key"][len(prefix):]] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return found


async def test_ingest_worker_and_gateway_run_on_the_s3_store(
        settings_factory: Callable[..., Settings], standin: S3StandIn, tmp_path: Path) -> None:
    bucket = await asyncio.to_thread(standin.create_bucket, f"glasscast-{uuid.uuid4().hex[:12]}")
    prefix = "platform/"
    s = standin.settings(ingest_settings(settings_factory(
        ladder={"mode": "full"}, transcode={"group_id": f"transcode-{uuid.uuid4().hex[:8]}", "workers": 1})),
        bucket, prefix)
    async with platform_on_s3(s, tmp_path) as (ingest, url), contextlib.AsyncExitStack() as cleanup:
        channel_id, key = await ingest.channel()
        push = ffmpeg_push(ingest.url, key, SECONDS, size="854x480", log=tmp_path / "ffmpeg.log")
        cleanup.callback(lambda: (push.kill(), push.wait()))
        started = await ingest.wait_events("stream.lifecycle", channel_id, lambda f: len(f) >= 1)
        stream_id = started[0].value.stream_id
        await eventually_async(lambda: push.poll() is not None, 60, "the publisher to exit", every_s=0.2)
        assert push.returncode == 0, (tmp_path / "ffmpeg.log").read_text()
        await ingest.wait_events("stream.lifecycle", channel_id, lambda f: any(e.type == "StreamEnded" for e in f))
        gops = await ingest.wait_events("media.gops", stream_id, lambda f: len(f) >= SECONDS // 2)
        # Each GOP: its source and audio segments (the ingest) and two 360p30 halves (the worker).
        segments = await ingest.wait_events(
            "media.segments", stream_id, lambda f: len(f) >= len(gops) * 4, timeout_s=60)
        assert {e.value.rendition for e in segments} == {"source", "audio", "360p30"}

        # The GOPs are in the bucket under the blobs area, as their refs say.
        stored_gops = await asyncio.to_thread(bucket_keys, standin, bucket, f"{prefix}blobs/gops/{stream_id}/")
        assert all(g.value.blob_ref.startswith("s3:gops/") for g in gops)
        assert {g.value.blob_ref.removeprefix(f"s3:gops/{stream_id}/") for g in gops} == set(stored_gops)
        assert all(data.startswith(b"FLV") for data in stored_gops.values())

        # Segments, parts and init segments of every rendition, and the thumbnail, under the origin area.
        origin = await asyncio.to_thread(bucket_keys, standin, bucket, f"{prefix}origin/")
        hls = {k.removeprefix(f"hls/{stream_id}/") for k in origin if k.startswith(f"hls/{stream_id}/")}
        for rendition in ("source", "audio", "360p30"):
            assert f"{rendition}/init.mp4" in hls, sorted(hls)
            assert f"{rendition}/00000000.m4s" in hls and f"{rendition}/00000000.0.m4s" in hls, sorted(hls)
        assert f"thumbs/{stream_id}.jpg" in origin
        assert not (s.data_dir / "blobs").exists() and not (s.data_dir / "origin").exists()

        async with httpx.AsyncClient(timeout=10) as http:
            async def token_for() -> str | None:
                r = await http.get(f"{url}/v1/streams/{stream_id}/playback")
                return str(r.json()["token"]) if r.status_code == 200 else None

            q = {"token": await eventually_async(token_for, 15, "the stream view", every_s=0.1)}
            base = f"{url}/hls/{stream_id}"

            async def vod() -> Any:
                r = await http.get(f"{base}/source/vod.m3u8", params=q)
                playlist = parse_media_playlist(r.text) if r.status_code == 200 else None
                return playlist if playlist and len(playlist.segments) == len(gops) else None

            playlist = await eventually_async(vod, 30, "the VOD playlist of the source", every_s=0.2)
            assert playlist.ended
            live = await http.get(f"{base}/360p30/index.m3u8", params=q)
            assert live.status_code == 200 and "00000000.m4s" in live.text
            init = await http.get(f"{base}/source/init.mp4", params=q)
            assert init.status_code == 200 and init.content == origin[f"hls/{stream_id}/source/init.mp4"]
            first = await http.get(f"{base}/source/{playlist.segments[0].uri}")
            assert first.status_code == 200 and first.content == origin[f"hls/{stream_id}/source/00000000.m4s"]
            part = await http.get(f"{base}/source/00000000.m4s", params=q, headers={"Range": "bytes=8-107"})
            assert part.status_code == 206 and part.content == first.content[8:108]
            assert part.headers["etag"] == first.headers["etag"]
            with av.open(io.BytesIO(init.content + first.content), format="mp4") as container:
                frames = list(container.decode(container.streams.video[0]))
            assert frames and frames[0].key_frame and (frames[0].width, frames[0].height) == (854, 480)
            thumb = await http.get(f"{url}/thumbs/{stream_id}.jpg")
            assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
            with av.open(io.BytesIO(thumb.content), mode="r", format="image2pipe") as container:
                picture = next(container.decode(video=0))
            assert (picture.width, picture.height) == (320, 180)
            missing = await http.get(f"{base}/source/00000099.m4s", params=q)
            assert missing.status_code == 404


async def test_an_unreachable_store_is_a_503_with_a_reason(settings_factory: Callable[..., Settings],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    use_credentials(monkeypatch)
    nothing_there = f"http://127.0.0.1:{free_port()}"  # nothing listens: every S3 call is refused
    s = settings_factory(auth={"jwt_secret": Secret(SECRET)}).with_section(
        "blob", backend="s3", bucket="glasscast", endpoint_url=nothing_there, region="us-east-1")
    app = create_app(s)
    async with app.router.lifespan_context(app):
        stream_id, channel_id = str(uuid.uuid4()), str(uuid.uuid4())
        client = aioredis.Redis.from_url(s.valkey.url)
        try:
            await ViewStore(client, s.valkey.key_prefix).apply(Applied(1, StreamStarted(
                occurred_at=int(time.time() * 1000), stream_id=stream_id, channel_id=channel_id,
                title="s3 down", category=None, ingest_host="test")))
        finally:
            await client.aclose()
        token = sign(derive_secret(SECRET, ""), PlaybackClaims(channel_id, int(time.time()) + 600))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
            for name in ("00000000.m4s", "init.mp4"):
                r = await http.get(f"/hls/{stream_id}/source/{name}", params={"token": token})
                assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
                assert r.json()["reason"] == "blob_store_unavailable" and "glasscast" not in r.json()["detail"]
                assert "retry-after" in r.headers
            r = await http.get(f"/avatars/{uuid.uuid4()}/{'0' * 32}.jpg")
            assert r.status_code == 503 and r.json()["reason"] == "blob_store_unavailable"

"""Thumbnails end to end: a real GOP (ffmpeg CLI, H.264 with B-frames) through the media worker in every
ladder mode gives a decodable JPEG of its first keyframe in the origin store, and the gateway serves it."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import av
import httpx
import pytest
import redis.asyncio as aioredis

from gateways.app import create_app
from infra.settings import Settings
from media.blob import FileBlobStore
from media.ingest.gop import Gop, gop_to_flv
from media.transcode.thumbnail import gop_thumbnail
from media.transcode.worker import TranscodeWorker
from schemas.records.media import GopAvailable
from tests.integration.test_transcode_job import make_source, split
from topics.admin import ensure_topics
from topics.runtime import make_serde

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gops(tmp_path_factory: pytest.TempPathFactory) -> list[Gop]:
    return split(make_source(tmp_path_factory.mktemp("src") / "720p30.flv", "1280x720", 30, 5, 60))[:2]


def decode_jpeg(data: bytes) -> av.VideoFrame:
    with av.open(io.BytesIO(data), mode="r", format="image2pipe") as container:
        assert container.streams.video[0].codec_context.name == "mjpeg"
        return next(container.decode(video=0))


def test_the_first_keyframe_becomes_a_small_jpeg(gops: list[Gop]) -> None:
    jpeg = gop_thumbnail(gop_to_flv(gops[0]))
    assert jpeg[:2] == b"\xff\xd8" and len(jpeg) < 30_000  # SOI; a few KB
    frame = decode_jpeg(jpeg)
    assert (frame.width, frame.height) == (320, 180)
    # testsrc2 is colourful: the picture is not a flat grey of an undecoded frame.
    plane = bytes(frame.planes[0])
    assert max(plane) - min(plane) > 100


def test_a_gop_that_is_not_flv_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        gop_thumbnail(b"not an FLV")


def _gop_event(stream_id: str, channel_id: str, seq: int, gop: Gop, ref: str, size: int) -> GopAvailable:
    return GopAvailable(
        occurred_at=int(time.time() * 1000), stream_id=stream_id, channel_id=channel_id, seq=seq,
        pts=gop.start_ms, duration=gop.duration_ms, time_base_num=1, time_base_den=1000, byte_size=size,
        blob_ref=ref, container="flv", codec_config_ref=None, video_codec="avc1.64001f", width=1280, height=720,
        fps=30.0, audio_codec="mp4a.40.2", audio_sample_rate_hz=48000, audio_channels=2, discontinuity=False)


@pytest.mark.parametrize("mode", ["passthrough", "tiered", "full"])
async def test_the_worker_refreshes_the_thumbnail_once_per_gop_and_the_gateway_serves_it(
        settings_factory: Callable[..., Settings], gops: list[Gop], mode: str, tmp_path: Path) -> None:
    s = settings_factory(ladder={"mode": mode}, transcode={"group_id": f"thumbs-{uuid.uuid4().hex[:8]}", "workers": 1})
    ensure_topics(s.kafka)
    serde = make_serde(s)
    client = aioredis.Redis.from_url(s.valkey.url)
    blobs, origin = FileBlobStore(s.data_dir / "blobs"), FileBlobStore(s.data_dir / "origin")
    worker = TranscodeWorker(s, serde, blobs, origin, client)
    stream_id, channel_id = str(uuid.uuid4()), str(uuid.uuid4())
    thumb = origin.path(f"thumbs/{stream_id}.jpg")
    try:
        events = []
        for seq, gop in enumerate(gops):
            data = gop_to_flv(gop)
            ref = blobs.put(f"gops/{stream_id}/{seq:08d}.flv", data)
            events.append(_gop_event(stream_id, channel_id, seq, gop, ref, len(data)))
        await worker.handle(events[0])
        frame = decode_jpeg(thumb.read_bytes())
        assert (frame.width, frame.height) == (320, 180)
        thumb.unlink()
        await worker.handle(events[0])  # redelivered: no second thumbnail for the same GOP
        assert not thumb.exists()
        await worker.handle(events[1])
        assert decode_jpeg(thumb.read_bytes()).height == 180
    finally:
        worker.close()
        await client.aclose()
        serde.close()

    app = create_app(s)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            r = await http.get(f"/thumbs/{stream_id}.jpg")  # public: no token
            assert r.status_code == 200 and r.content == thumb.read_bytes()
            assert r.headers["content-type"] == "image/jpeg"
            assert r.headers["cache-control"] == "public, max-age=5"
            r2 = await http.get(f"/thumbs/{stream_id}.jpg", headers={"If-None-Match": r.headers["etag"]})
            assert r2.status_code == 304 and r2.headers["etag"] == r.headers["etag"]
            head = await http.head(f"/thumbs/{stream_id}.jpg")
            assert head.status_code == 200 and int(head.headers["content-length"]) == len(r.content)
            r = await http.get(f"/thumbs/{uuid.uuid4()}.jpg")
            assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
            assert "no thumbnail" in r.json()["detail"]
            assert (await http.get("/thumbs/not-a-uuid.jpg")).status_code == 404

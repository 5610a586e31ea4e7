"""Videos and clips end to end: the real ffmpeg CLI publishes to the ingest, a real media worker (with its VOD
worker) and the processors run as children, and the gateway serves the videos and clips API.

Two broadcasts on one channel: the first is clipped while live and as a video, then deleted by its owner; the
second is deleted by the retention sweep.  Both purges leave exactly the objects the clips use, the clips
still play, the MP4s decode to their exact durations, the views count VOD and clip heartbeats, and
``rebuild-views`` gives the same videos and clips views.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
import redis.asyncio as aioredis

from gateways.app import create_app
from infra.embedded.threaded import serve_app
from infra.settings import Settings
from media.blob_stores import open_store
from media.package.playlist import parse_master_playlist, parse_media_playlist
from media.testpattern import ffmpeg_push
from media.vod.report import format_report, storage_report
from media.vod.worker import VodWorker, clip_keys
from processors.rebuild import rebuild_views
from tests.conftest import wait_processors_assigned
from tests.integration.ingest_support import Ingest, ingest_settings, running_ingest
from tests.s3_standin import S3StandIn, running_standin, use_credentials
from tests.servers import run_service
from tests.waiting import eventually_async
from topics.runtime import make_serde
from views.store import ViewStore

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


class User:
    def __init__(self, user_id: str, token: str) -> None:
        self.id, self.token = user_id, token

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def _user(http: httpx.AsyncClient, prefix: str) -> User:
    name, password = f"{prefix}_{uuid.uuid4().hex[:10]}", "correct horse battery"
    assert (await http.post("/v1/users", json={"username": name, "password": password})).status_code == 201

    async def known() -> bool:  # a loaded machine's processors may be behind the sign-up's own wait
        return (await http.get(f"/v1/users/{name}")).status_code == 200
    await eventually_async(known, 60, f"the account {name} in the views", every_s=0.2)
    r = await http.post("/v1/auth/login", json={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return User(r.json()["user"]["id"], r.json()["access_token"])


@contextlib.asynccontextmanager
async def platform(s: Settings, tmp: Path) -> AsyncIterator[tuple[Ingest, str]]:
    with run_service(s, "processors", tmp / "processors.log") as proc:
        await asyncio.to_thread(wait_processors_assigned, s, proc, tmp / "processors.log")
        with run_service(s, "media-worker", tmp / "worker.log"), serve_app(create_app(s), s.gateway.port) as url:
            async with running_ingest(s) as ingest:
                yield ingest, url


async def _broadcast(ingest: Ingest, key: str, channel_id: str, seconds: float, tmp: Path,
                     while_live: Callable[[str], Any] | None = None) -> str:
    """Publish ``seconds`` of test pattern; run ``while_live(stream_id)`` meanwhile; the stream id once ended."""
    push = ffmpeg_push(ingest.url, key, seconds, log=tmp / f"ffmpeg-{uuid.uuid4().hex[:6]}.log")
    try:
        known = {e.value.stream_id for e in await asyncio.to_thread(ingest.events, "stream.lifecycle", channel_id)
                 if type(e.value).__name__ == "StreamStarted"}
        started = await ingest.wait_events("stream.lifecycle", channel_id, lambda f: any(
            type(e.value).__name__ == "StreamStarted" and e.value.stream_id not in known for e in f))
        stream_id = next(e.value.stream_id for e in started
                         if type(e.value).__name__ == "StreamStarted" and e.value.stream_id not in known)
        if while_live is not None:
            await while_live(stream_id)
        await eventually_async(lambda: push.poll() is not None, 60, "the publisher to exit", every_s=0.2)
        assert push.returncode == 0
        await ingest.wait_events("stream.lifecycle", channel_id, lambda f: any(
            type(e.value).__name__ == "StreamEnded" and e.value.stream_id == stream_id for e in f))
    finally:
        if push.poll() is None:
            push.kill()
        push.wait()
    return stream_id


def _decoded_duration_s(mp4: bytes) -> tuple[float, float, int]:
    """(first shown video frame time, video duration as decoded, frames) of an MP4, decoded with PyAV."""
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        times = [float(f.time) for f in container.decode(stream) if f.time is not None]
        rate = float(stream.average_rate or 30)
    return times[0], times[-1] - times[0] + 1 / rate, len(times)


@pytest.fixture(params=["file", "s3"])
def stores(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3StandIn | None]:
    """The file store, then the S3 stand-in (moto's server mode, tests/s3_standin.py: not S3 or MinIO)."""
    if request.param == "file":
        yield None
        return
    use_credentials(monkeypatch)
    with running_standin() as server:
        yield server


async def test_videos_clips_deletion_retention_and_rebuild(settings_factory: Callable[..., Settings],
                                                          stores: S3StandIn | None, tmp_path: Path) -> None:
    s = ingest_settings(settings_factory(viewers={"snapshot_interval_s": 1.0},
                                         transcode={"group_id": f"transcode-{uuid.uuid4().hex[:8]}"},
                                         vod={"storyboard_wait_s": 20.0}))
    if stores is not None:
        bucket = await asyncio.to_thread(stores.create_bucket, f"glasscast-{uuid.uuid4().hex[:12]}")
        s = stores.settings(s, bucket, prefix="vod-test/")
    async with platform(s, tmp_path) as (ingest, url), httpx.AsyncClient(base_url=url, timeout=20) as http:
        owner, fan = await _user(http, "caster"), await _user(http, "fan")
        r = await http.post("/v1/channels", headers=owner.auth, json={"name": f"vod_{uuid.uuid4().hex[:8]}"})
        assert r.status_code == 201, r.text
        channel_id, key = r.json()["id"], r.json()["stream_key"]
        live_clip: dict[str, Any] = {}

        async def clip_live(stream_id: str) -> None:
            async def made() -> dict[str, Any] | None:
                r = await http.post("/v1/clips", headers=fan.auth, json={"broadcaster_id": channel_id,
                                                                          "duration_s": 6, "title": "live!"})
                if r.status_code == 422 and "so far" in r.text:
                    return None  # fewer than 5 s of segments yet
                assert r.status_code == 201, r.text
                return r.json()  # type: ignore[no-any-return]
            live_clip.update(await eventually_async(made, 60, "a live clip", every_s=0.5))
            assert live_clip["video_id"] == stream_id and live_clip["from_live"] and live_clip["mp4_url"] is None

        first = await _broadcast(ingest, key, channel_id, 16, tmp_path, clip_live)
        # The channel is offline now (once the views have the end): a live clip is a 409 that says so.
        async def offline() -> bool:
            return (await http.get(f"/v1/channels/{channel_id}")).json()["live_stream_id"] is None
        await eventually_async(offline, 60, "the channel offline", every_s=0.2)
        r = await http.post("/v1/clips", headers=fan.auth, json={"broadcaster_id": channel_id})
        assert r.status_code == 409 and r.json()["reason"] == "not_live", r.text

        async def listed() -> list[dict[str, Any]] | None:
            r = await http.get(f"/v1/channels/{channel_id}/videos")
            assert r.status_code == 200, r.text
            data = r.json()["data"]
            return data if data and data[0]["storyboard"] is not None else None
        videos = await eventually_async(listed, 180, "the video with its storyboard", every_s=0.5)
        assert [v["id"] for v in videos] == [first]
        video = videos[0]
        assert 14_000 <= video["duration_ms"] <= 20_000 and video["thumbnail_url"] == f"/vod/{first}/thumb.jpg"
        for asset, kind in (("thumb.jpg", "image/jpeg"), ("sprite.jpg", "image/jpeg"),
                            ("storyboard.vtt", "text/vtt")):
            r = await http.get(f"/vod/{first}/{asset}")
            assert r.status_code == 200 and r.headers["content-type"].startswith(kind), asset
        vtt = (await http.get(f"/vod/{first}/storyboard.vtt")).text
        assert vtt.startswith("WEBVTT") and "00:00:00.000 --> 00:00:10.000" in vtt and "sprite.jpg#xywh=0,0," in vtt

        # `glasscast videos` reports what the video's objects take in the store.
        # (The session's broker is shared: the views also hold other tests' broadcasts.)
        report = [r for r in await storage_report(s) if r.channel_id == channel_id]
        assert [r.video_id for r in report] == [first]
        assert report[0].objects > 20 and report[0].bytes > 500_000
        assert "GB per hour of video" in format_report(report)[-1]

        # The video plays with signed URLs, like live; a VOD heartbeat counts a view.
        r = await http.get(f"/v1/videos/{first}")
        assert r.status_code == 200, r.text
        playback = r.json()["playback"]
        master = await http.get(playback["hls"]["vod"])
        assert master.status_code == 200 and parse_master_playlist(master.text)
        beat = {"session_id": playback["session_id"], "token": playback["token"], "rendition": "source",
                "buffer_health_s": 4.0, "bitrate_kbps": 1500}
        assert (await http.post(f"/v1/streams/{first}/heartbeat", json=beat)).status_code == 204

        # A clip of the video, from 3.5 s for 5 s: its MP4 starts exactly there and lasts exactly 5 s.
        r = await http.post("/v1/clips", headers=fan.auth, json={"video_id": first, "offset_s": 3.5,
                                                                   "duration_s": 5})
        assert r.status_code == 201, r.text
        vod_clip = r.json()
        assert vod_clip["offset_ms"] == 3500 and vod_clip["duration_ms"] == 5000 and not vod_clip["from_live"]
        for bad, why in (({"video_id": first, "offset_s": 0, "duration_s": 61}, "duration_s"),
                         ({"video_id": first, "offset_s": 0, "duration_s": 4}, "duration_s"),
                         ({"video_id": first, "offset_s": 3600, "duration_s": 10}, "outside the video"),
                         ({"video_id": first, "duration_s": 10}, "offset_s"),
                         ({"video_id": first, "broadcaster_id": channel_id}, "either")):
            r = await http.post("/v1/clips", headers=fan.auth, json=bad)
            assert r.status_code == 422 and why in r.text, (bad, r.text)
        assert (await http.get(f"/v1/channels/{channel_id}/videos?cursor=bm9wZQ")).status_code == 400
        assert (await http.get(f"/v1/channels/{channel_id}/clips?sort=likes")).status_code == 400

        async def rendered(clip_id: str) -> dict[str, Any] | None:
            r = await http.get(f"/v1/clips/{clip_id}")
            assert r.status_code == 200, r.text
            return r.json() if r.json()["mp4_status"] == "ready" else None  # type: ignore[no-any-return]
        for clip in (live_clip, vod_clip):
            ready = await eventually_async(lambda c=clip: rendered(c["id"]), 180, "the clip's MP4", every_s=0.5)
            mp4 = await http.get(ready["mp4_url"])
            assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
            start, duration, _ = await asyncio.to_thread(_decoded_duration_s, mp4.content)
            assert abs(start) < 0.034 and abs(duration - clip["duration_ms"] / 1000) < 0.034, (start, duration)
            clip_beat = {**beat, "session_id": ready["playback"]["session_id"],
                         "token": ready["playback"]["token"], "clip_id": clip["id"]}
            assert (await http.post(f"/v1/streams/{first}/heartbeat", json=clip_beat)).status_code == 204

        # Only the owner deletes; then the video is gone from the list, its playlists, and (after the purge)
        # the stores, except what the clips use.
        assert (await http.delete(f"/v1/videos/{first}", headers=fan.auth)).status_code == 403
        assert (await http.delete(f"/v1/videos/{first}", headers=owner.auth)).status_code == 204
        assert (await http.get(f"/v1/videos/{first}")).status_code == 404
        assert (await http.get(playback["hls"]["vod"])).status_code == 404
        assert (await http.get(f"/v1/channels/{channel_id}/videos")).json()["data"] == []
        client = aioredis.Redis.from_url(s.valkey.url)
        views = ViewStore(client, s.valkey.key_prefix)
        origin, gops = open_store(s, "origin"), open_store(s, "blobs")
        try:
            clips = await views.clips.of_stream(first)
            assert sorted(c.id for c in clips) == sorted([live_clip["id"], vod_clip["id"]])
            keep = frozenset().union(*(clip_keys(c) for c in clips))

            async def purged() -> bool:
                video = await views.videos.get(first)
                return video is not None and video.purged
            await eventually_async(purged, 90, "the purge of the deleted video", every_s=0.5)
            left = {b.key for b in origin.list(f"hls/{first}/")}
            assert left == keep and not list(gops.list(f"gops/{first}/"))
            assert not list(origin.list(f"thumbs/{first}/")) and not list(origin.list(f"vod/{first}/"))
            # The clips outlive their video: playlists, segments and MP4s still answer.
            for clip in (live_clip, vod_clip):
                got = (await http.get(f"/v1/clips/{clip['id']}")).json()
                cm = await http.get(got["playback"]["hls"]["master"])
                assert cm.status_code == 200 and "#EXT-X-START:TIME-OFFSET=" in cm.text
                variant = parse_master_playlist(cm.text)[0]["URI"]
                media = await http.get(f"/hls/clips/{clip['id']}/{variant}")
                assert media.status_code == 200, media.text
                for segment in parse_media_playlist(media.text).segments:
                    assert (await http.get(segment.uri)).status_code == 200
                assert (await http.get(got["mp4_url"])).status_code == 200

            # Views: one VOD session and one session per clip, counted from heartbeats.
            async def counted() -> bool:
                video = await views.videos.get(first)
                cs = [await views.clips.get(c["id"]) for c in (live_clip, vod_clip)]
                return video is not None and video.views == 1 and all(c is not None and c.views == 1 for c in cs)
            await eventually_async(counted, 90, "the view counts", every_s=0.5)
            r = await http.get(f"/v1/channels/{channel_id}/clips?sort=views&limit=1")
            assert r.status_code == 200 and len(r.json()["data"]) == 1 and r.json()["cursor"]
            r2 = await http.get(f"/v1/channels/{channel_id}/clips?sort=views&limit=1&cursor={r.json()['cursor']}")
            assert {r.json()["data"][0]["id"], r2.json()["data"][0]["id"]} == {live_clip["id"], vod_clip["id"]}

            # The second broadcast is deleted by retention: a day's retention, swept two days on.
            r = await http.patch(f"/v1/channels/{channel_id}", headers=owner.auth, json={"vod_retention_days": 1})
            assert r.status_code == 200 and r.json()["vod_retention_days"] == 1
            r = await http.patch(f"/v1/channels/{channel_id}", headers=owner.auth, json={"vod_retention_days": -1})
            assert r.status_code == 422
            second = await _broadcast(ingest, key, channel_id, 6, tmp_path)

            async def second_listed() -> bool:  # with its storyboard: the VOD worker has taken its end
                video = await views.videos.get(second)
                return video is not None and video.listed and video.storyboard is not None
            await eventually_async(second_listed, 90, "the second video", every_s=0.5)
            serde = make_serde(s)
            sweeper = VodWorker(s, serde, origin, gops, client)
            try:
                now = sweeper.now_ms()
                # Ten minutes after its end a video keeps only what VOD playback needs: no parts, no GOPs.
                assert any(b.key.count(".") == 2 for b in origin.list(f"hls/{second}/source/"))
                assert second in await sweeper.compact(now + 3_600_000)
                assert not [b.key for b in origin.list(f"hls/{second}/") if b.key.rsplit("/", 1)[1].count(".") == 2]
                assert not list(gops.list(f"gops/{second}/")) and list(origin.list(f"hls/{second}/source/"))
                r = await http.get(f"/v1/videos/{second}")
                vod_master = await http.get(r.json()["playback"]["hls"]["vod"])
                source = next(v["URI"] for v in parse_master_playlist(vod_master.text) if v["URI"].startswith("source"))
                vod_media = await http.get(f"/hls/{second}/{source}")
                for segment in parse_media_playlist(vod_media.text).segments:
                    assert (await http.get(f"/hls/{second}/source/{segment.uri}")).status_code == 200
                # (The session's shared views hold other tests' videos too, which the sweep may take as well.)
                assert not {second, first} & set(await sweeper.sweep(now + DAY_MS // 2))
                assert second in await sweeper.sweep(now + 2 * DAY_MS)
            finally:
                await asyncio.to_thread(sweeper.close)
                serde.close()
            await eventually_async(lambda: _purged(views, second), 90, "the expired video's purge", every_s=0.5)
            assert (await http.get(f"/v1/videos/{second}")).status_code == 404
            assert not list(origin.list(f"hls/{second}/")) and not list(gops.list(f"gops/{second}/"))
            deleted = await views.videos.get(second)
            assert deleted is not None and deleted.deleted_reason == "RETENTION"

            # rebuild-views: the same videos and clips views from the log.
            def vod_keys(dump: dict[str, Any]) -> dict[str, Any]:
                return {k: v for k, v in dump.items() if ":view:video" in k or ":view:clip" in k}
            before = vod_keys(await views.dump())
            assert f"{s.valkey.key_prefix}view:video:{first}" in before
            serde = make_serde(s)
            try:
                await rebuild_views(s, serde)
            finally:
                serde.close()
            assert vod_keys(await views.dump()) == before
        finally:
            await client.aclose()


async def _purged(views: ViewStore, video_id: str) -> bool:
    video = await views.videos.get(video_id)
    return video is not None and video.purged

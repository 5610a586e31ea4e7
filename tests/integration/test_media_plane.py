"""The media plane end to end: the real ffmpeg CLI publishes, the ingest cuts GOPs, media workers
(real `glasscast run media-worker` processes) transcode the ladder, the processors index the
segments, and the gateway serves master, live and VOD playlists and the segments themselves."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from gateways.app import create_app
from infra.embedded.threaded import serve_app
from infra.settings import Secret, Settings
from media.package.playlist import parse_master_playlist, parse_media_playlist
from media.testpattern import ffmpeg_push
from tests.conftest import wait_processors_assigned
from tests.integration.ingest_support import Ingest, ingest_settings, running_ingest
from tests.servers import run_service
from tests.waiting import eventually_async

pytestmark = pytest.mark.integration


_SECRET = "media-plane-test-secret-" + "x" * 32
_CHANNELS: dict[str, str] = {}  # stream id -> channel id, for building tokens in tests


def _platform_settings(settings_factory: Callable[..., Settings], **ladder: Any) -> Settings:
    # settings_factory gives the run its own processors app id and gateway port; the tokens
    # the tests forge need a secret they know.
    return ingest_settings(settings_factory(
        ladder={"mode": "full"} | ladder, auth={"jwt_secret": Secret(_SECRET)},
        transcode={"group_id": f"transcode-{uuid.uuid4().hex[:8]}", "workers": 2}))


@contextlib.asynccontextmanager
async def media_plane(s: Settings, tmp: Path) -> AsyncIterator[tuple[Ingest, str, Any]]:
    with run_service(s, "processors", tmp / "processors.log") as proc:
        await asyncio.to_thread(wait_processors_assigned, s, proc, tmp / "processors.log")
        with run_service(s, "media-worker", tmp / "worker.log") as worker, serve_app(create_app(s),
                                                                                  s.gateway.port) as url:
            async with running_ingest(s) as ingest:
                yield ingest, url, worker


async def _token(http: httpx.AsyncClient, url: str, stream_id: str) -> str:
    # StreamStarted is in the log; the processors may not have folded it into the stream view yet.
    async def folded() -> httpx.Response | None:
        r = await http.get(f"{url}/v1/streams/{stream_id}/playback")
        return None if r.status_code == 404 else r

    r = await eventually_async(folded, 15, f"the stream view of {stream_id}", every_s=0.1)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["hls"]["master"].endswith(f"/hls/{stream_id}/master.m3u8?token={body['token']}")
    assert body["chat_ws_url"].startswith("ws://") and body["expires_in"] > 0
    return str(body["token"])


async def _refusals(http: httpx.AsyncClient, url: str, base: str, stream_id: str, token: str) -> None:
    """403 with a reason for a missing, forged, expired or cross-channel token, and for escaping paths."""
    from gateways.playback_token import PlaybackClaims, derive_secret, sign

    forged = sign(derive_secret("not the platform's secret" * 2, ""), PlaybackClaims("x", 2**40))
    other_channel = sign(derive_secret(_SECRET, ""), PlaybackClaims(str(uuid.uuid4()), 2**40))
    expired = sign(derive_secret(_SECRET, ""), PlaybackClaims(_CHANNELS[stream_id], 1000))
    for path in ("master.m3u8", "source/index.m3u8", "source/init.mp4", "source/00000000.m4s"):
        for params, reason in (({}, "missing"), ({"token": forged}, "signature"),
                               ({"token": expired}, "expired"), ({"token": other_channel}, "another channel")):
            r = await http.get(f"{base}/{path}", params=params)
            assert r.status_code == 403 and reason in r.json()["detail"], (path, reason, r.text)
    for escape in ("..%2F..%2Fetc/index.m3u8", "%2E%2E/init.mp4", "..%2Fsource/00000000.m4s"):
        r = await http.get(f"{base}/{escape}", params={"token": token})
        assert r.status_code in (403, 404) and r.status_code != 200, escape
    r = await http.get(f"{base}/%2E%2E/index.m3u8", params={"token": token})
    assert r.status_code == 403 and "escapes" in r.json()["detail"]
    # An expired token refreshes (within one more lifetime); a forged one does not.
    r = await http.post(f"{url}/v1/streams/{stream_id}/playback/refresh-token", json={"token": token})
    assert r.status_code == 200 and r.json()["token"] != token
    r = await http.post(f"{url}/v1/streams/{stream_id}/playback/refresh-token", json={"token": forged})
    assert r.status_code == 403


def _probe(path: Path) -> dict[str, Any]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


async def test_ladder_playlists_and_vod(settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    s = _platform_settings(settings_factory)
    async with media_plane(s, tmp_path) as (ingest, url, _), contextlib.AsyncExitStack() as cleanup:
        channel_id, key = await ingest.channel()
        push = ffmpeg_push(ingest.url, key, 10, size="1280x720", log=tmp_path / "ffmpeg.log")
        cleanup.callback(lambda: (push.kill(), push.wait()))
        started = await ingest.wait_events("stream.lifecycle", channel_id, lambda f: len(f) >= 1)
        stream_id = started[0].value.stream_id
        _CHANNELS[stream_id] = channel_id
        base = f"{url}/hls/{stream_id}"
        async with httpx.AsyncClient(timeout=10) as http:
            token = await _token(http, url, stream_id)
            q = {"token": token}

            async def master() -> Any:
                r = await http.get(f"{base}/master.m3u8", params=q)
                if r.status_code != 200:
                    return None
                variants = parse_master_playlist(r.text)
                return variants if len(variants) == 4 else None

            variants = await eventually_async(master, 30, "the full ladder in the master playlist", every_s=0.2)
            names = sorted(v["URI"].split("/")[0] for v in variants)
            assert names == ["360p30", "480p30", "audio", "source"]
            rung = await http.get(f"{base}/360p30/index.m3u8", params=q)
            if push.poll() is None and "#EXT-X-PART-INF" in rung.text:
                # Half-GOP segments: plain-HLS players hold back 3 s on a rung, not 6 s (HOLD-BACK = 3 x 1 s).
                assert "#EXT-X-TARGETDURATION:1\n" in rung.text and ",HOLD-BACK=3.000," in rung.text, rung.text
            r = await http.get(f"{base}/source/index.m3u8", params=q)
            live = parse_media_playlist(r.text)
            if push.poll() is None:  # still live, with parts: not cached (it changes every part) and no end
                assert r.headers["cache-control"] == "no-cache" and not live.ended

            await eventually_async(lambda: push.poll() is not None, 60, "the publisher to exit", every_s=0.2)
            assert push.returncode == 0, (tmp_path / "ffmpeg.log").read_text()
            await ingest.wait_events("stream.lifecycle", channel_id,
                                     lambda f: any(e.type == "StreamEnded" for e in f))

            async def vod() -> Any:
                r = await http.get(f"{base}/360p30/vod.m3u8", params=q)
                if r.status_code != 200:
                    return None
                playlist = parse_media_playlist(r.text)
                # A scaled rung's segments are half GOPs (media/package/parts.py): 10 for the 5 GOPs.
                return playlist if playlist.ended and len(playlist.segments) == 10 else None

            await eventually_async(vod, 60, "the VOD playlist", every_s=0.2)
            for rendition, (width, height) in {"source": (1280, 720), "480p30": (854, 480),
                                               "360p30": (640, 360), "audio": (None, None)}.items():
                r = await http.get(f"{base}/{rendition}/vod.m3u8", params=q)
                playlist = parse_media_playlist(r.text)
                assert playlist.ended and playlist.playlist_type == "VOD"
                assert r.headers["cache-control"] == "public, max-age=3600"
                # Every URI carries the token, so players resolving them relative keep presenting it.
                halves = 1 if rendition in ("source", "audio") else 2
                assert playlist.target_duration_s == 2 // halves, (rendition, playlist.target_duration_s)
                assert [seg.uri for seg in playlist.segments] == [f"{i:08d}.m4s?token={token}"
                                                                  for i in range(5 * halves)]
                init = await http.get(f"{base}/{rendition}/init.mp4", params=q)
                assert init.status_code == 200 and "immutable" in init.headers["cache-control"]
                whole = bytearray(init.content)
                for seg in playlist.segments:
                    body = (await http.get(f"{base}/{rendition}/{seg.uri}")).content
                    one = tmp_path / f"{rendition}-{seg.uri.split('?')[0]}.mp4"
                    one.write_bytes(init.content + body)
                    info = _probe(one)
                    # Segments keep the source timeline: ffprobe counts duration from 0, not from the start.
                    duration = float(info["format"]["duration"]) - float(info["format"]["start_time"])
                    assert abs(duration - 2.0 / halves) <= 0.1, (rendition, seg.uri, duration)
                    video = [st for st in info["streams"] if st["codec_type"] == "video"]
                    if width is None:
                        assert not video
                    else:
                        assert (video[0]["codec_name"], video[0]["width"], video[0]["height"]) == (
                            "h264", width, height)
                        assert video[0]["r_frame_rate"] in ("30/1", "30000/1001")
                    whole += body
                # The VOD plays start to end with no gap: the concatenation decodes continuously.
                with av.open(io.BytesIO(bytes(whole)), format="mp4") as container:
                    stream = container.streams.video[0] if width else container.streams.audio[0]
                    frames = list(container.decode(stream))
                assert frames
                if width:
                    assert len(frames) == 300 and frames[0].key_frame
                    pts = [f.time for f in frames]
                    assert all(0 < b - a < 0.05 for a, b in zip(pts, pts[1:]))
                else:
                    last = frames[-1]
                    assert abs(last.time + last.samples / last.sample_rate - frames[0].time - 10) < 0.2

            assert parse_media_playlist((await http.get(f"{base}/source/index.m3u8", params=q)).text).ended
            vod_master = parse_master_playlist((await http.get(f"{base}/vod.m3u8", params=q)).text)
            assert sorted(v["URI"] for v in vod_master) == [f"{n}/vod.m3u8?token={token}" for n in sorted(names)]
            r = await http.get(f"{base}/source/00000000.m4s", params=q, headers={"Range": "bytes=0-99"})
            assert r.status_code == 206 and len(r.content) == 100
            etag = (await http.get(f"{base}/source/00000000.m4s", params=q)).headers["etag"]
            r = await http.get(f"{base}/source/00000000.m4s", params=q, headers={"If-None-Match": etag})
            assert r.status_code == 304
            assert (await http.get(f"{base}/source/00000099.m4s", params=q)).status_code == 404
            await _refusals(http, url, base, stream_id, token)
            # The workers kept the stream's thumbnail: its newest keyframe, public and briefly cacheable.
            thumb = await http.get(f"{url}/thumbs/{stream_id}.jpg")
            assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
            assert thumb.headers["cache-control"] == "public, max-age=5"
            with av.open(io.BytesIO(thumb.content), mode="r", format="image2pipe") as container:
                picture = next(container.decode(video=0))
            assert (picture.width, picture.height) == (320, 180)


async def test_killed_worker_loses_and_duplicates_nothing(settings_factory: Callable[..., Settings],
                                                         tmp_path: Path) -> None:
    s = _platform_settings(settings_factory, mode="full")
    async with media_plane(s, tmp_path) as (ingest, url, worker), contextlib.AsyncExitStack() as cleanup:
        channel_id, key = await ingest.channel()
        push = ffmpeg_push(ingest.url, key, 12, size="854x480", log=tmp_path / "ffmpeg.log")
        cleanup.callback(lambda: (push.kill(), push.wait()))
        started = await ingest.wait_events("stream.lifecycle", channel_id, lambda f: len(f) >= 1)
        stream_id = started[0].value.stream_id
        await ingest.wait_events("media.segments", stream_id, lambda f: len(f) >= 1, timeout_s=60)
        # Kill the worker just after the next GOP is announced: it is fetching or transcoding it.
        seen = len(await asyncio.to_thread(ingest.events, "media.gops", stream_id))
        await ingest.wait_events("media.gops", stream_id, lambda f: len(f) > seen)
        await asyncio.sleep(0.05)  # not a wait: a moment into the GOP's work, so the kill cuts it off
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        with run_service(s, "media-worker", tmp_path / "worker2.log"):
            await eventually_async(lambda: push.poll() is not None, 60, "the publisher to exit", every_s=0.2)
            gops = await ingest.wait_events("media.gops", stream_id, lambda f: len(f) >= 6)
            # A scaled rung splits each GOP in two segments (media/package/parts.py): 2 * seq and 2 * seq + 1.
            expected = ({(r, g.value.seq) for g in gops for r in ("source", "audio")}
                        | {("360p30", 2 * g.value.seq + half) for g in gops for half in (0, 1)})

            async def indexed() -> Any:
                async with httpx.AsyncClient(timeout=10) as http:
                    listed = []
                    token = await _token(http, url, stream_id)
                    for rendition in ("source", "360p30", "audio"):
                        r = await http.get(f"{url}/hls/{stream_id}/{rendition}/vod.m3u8", params={"token": token})
                        if r.status_code != 200:
                            return None
                        # A GOP not (yet) listed shows as an EXT-X-GAP placeholder: not a segment.
                        listed += [(rendition, seg.uri.split("?")[0]) for seg in parse_media_playlist(r.text).segments
                                   if not seg.gap]
                    return listed if len(listed) >= len(expected) else None

            listed = await eventually_async(indexed, 90, "every GOP in every rendition", every_s=0.2)
        assert len(listed) == len(set(listed)) == len(expected)
        assert set(listed) == {(r, f"{seq:08d}.m4s") for r, seq in expected}
        events = await asyncio.to_thread(ingest.events, "media.segments", stream_id)
        assert {(e.value.rendition, e.value.seq) for e in events} == expected

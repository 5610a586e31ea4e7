"""The stream lifecycle API end to end: configure, go live with the real ffmpeg CLI through the real
ingest, update while live, read health, end from the API (the ingest drops the publisher), and the
stream key its owner can reveal again."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from media.testpattern import ffmpeg_push
from schemas.records.stream import StreamEnded, StreamHealth, StreamStarted
from tests.conftest import Platform
from tests.integration.ingest_support import ingest_settings, running_ingest
from tests.waiting import eventually_async
from topics.consumer import Event
from topics.runtime import make_serde
from topics.tools import read_topic
from views.channels import hash_stream_key

pytestmark = pytest.mark.integration


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _signup(client: httpx.AsyncClient) -> tuple[str, str]:
    username, password = _name("creator"), "correct horse battery"
    r = await client.post("/v1/users", json={"username": username, "password": password})
    assert r.status_code == 201, r.text
    r = await client.post("/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return r.json()["user"]["id"], r.json()["access_token"]


async def _channel(client: httpx.AsyncClient, token: str, **fields: Any) -> dict[str, Any]:
    r = await client.post("/v1/channels", headers=_auth(token),
                          json={"name": _name("chan"), "title": "Channel title", "category": "Music", **fields})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _lifecycle(platform: Platform, channel_id: str) -> list[Event]:
    serde = make_serde(platform.settings)
    try:
        return [e for e in read_topic(platform.settings.kafka, serde, "stream.lifecycle", start="beginning",
                                      exit_at_end=True) if e.key == channel_id]
    finally:
        serde.close()


async def test_stream_key_can_be_revealed_by_its_owner_only(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.url) as client:
        _, token = await _signup(client)
        _, other = await _signup(client)
        created = await _channel(client, token)
        r = await client.get(f"/v1/channels/{created['id']}/stream-key", headers=_auth(token))
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        assert r.json()["stream_key"] == created["stream_key"] and r.json()["rtmp_url"] == created["rtmp_url"]
        assert (await client.get(f"/v1/channels/{created['id']}/stream-key")).status_code == 401
        r = await client.get(f"/v1/channels/{created['id']}/stream-key", headers=_auth(other))
        assert r.status_code == 403 and r.json()["detail"] == "only the channel's owner may do this"

        rotated = (await client.post(f"/v1/channels/{created['id']}/stream-key/regenerate",
                                     headers=_auth(token))).json()["stream_key"]
        assert rotated != created["stream_key"]
        r = await client.get(f"/v1/channels/{created['id']}/stream-key", headers=_auth(token))
        assert r.json()["stream_key"] == rotated
    # The key itself never reaches the log: only its hash and the nonce it is derived from.
    serde = make_serde(platform.settings)
    try:
        events: list[Any] = [e.value for e in read_topic(platform.settings.kafka, serde, "channels", start="beginning",
                                              exit_at_end=True) if e.key == created["id"]]
    finally:
        serde.close()
    assert [e.stream_key_hash for e in events] == [hash_stream_key(created["stream_key"]), hash_stream_key(rotated)]
    assert all(e.stream_key_nonce for e in events)
    assert created["stream_key"] not in repr(events) and rotated not in repr(events)


async def test_stream_commands_refuse_bad_input(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.url) as client:
        _, token = await _signup(client)
        _, other = await _signup(client)
        channel = await _channel(client, token)
        r = await client.post("/v1/streams", json={"channel_id": channel["id"]})
        assert r.status_code == 401
        r = await client.post("/v1/streams", headers=_auth(token), json={"channel_id": str(uuid.uuid4())})
        assert r.status_code == 404 and "does not exist" in r.json()["detail"]
        r = await client.post("/v1/streams", headers=_auth(other), json={"channel_id": channel["id"]})
        assert r.status_code == 403
        r = await client.post("/v1/streams", headers=_auth(token), json={"channel_id": channel["id"], "x": 1})
        assert r.status_code == 422 and "x" in r.json()["detail"]
        r = await client.post("/v1/streams", headers=_auth(token), json={"channel_id": channel["id"], "title": ""})
        assert r.status_code == 422 and r.json()["field"] == "title"
        r = await client.post("/v1/streams", headers=_auth(token), content=b"{not json")
        assert r.status_code == 400
        r = await client.get(f"/v1/streams/{uuid.uuid4()}")
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        assert (await client.get("/v1/streams/not-a-uuid")).status_code == 404

        r = await client.post("/v1/streams", headers=_auth(token), json={"channel_id": channel["name"]})
        assert r.status_code == 201, r.text
        stream = r.json()
        # Defaults come from the channel; a name works as the channel reference.
        assert stream["status"] == "configured" and stream["title"] == "Channel title"
        assert stream["category"] == "Music" and stream["channel_name"] == channel["name"]
        r = await client.post("/v1/streams", headers=_auth(token), json={"channel_id": channel["id"]})
        assert r.status_code == 409 and r.json()["stream_id"] == stream["id"]
        r = await client.patch(f"/v1/streams/{stream['id']}", headers=_auth(token), json={})
        assert r.status_code == 422
        r = await client.patch(f"/v1/streams/{stream['id']}", headers=_auth(other), json={"title": "mine now"})
        assert r.status_code == 403
        r = await client.get(f"/v1/streams/{stream['id']}/health", headers=_auth(other))
        assert r.status_code == 403

        # Ending a configured stream cancels it; the channel can set up another.
        r = await client.post(f"/v1/streams/{stream['id']}/end", headers=_auth(token))
        assert r.status_code == 200 and r.json()["status"] == "ended"
        assert r.json()["end_reason"] == "ENDED_BY_CREATOR"
        r = await client.patch(f"/v1/streams/{stream['id']}", headers=_auth(token), json={"title": "late"})
        assert r.status_code == 409
        assert (await client.post(f"/v1/streams/{stream['id']}/end", headers=_auth(token))).status_code == 200
        r = await client.post("/v1/streams", headers=_auth(token), json={"channel_id": channel["id"]})
        assert r.status_code == 201 and r.json()["id"] != stream["id"]


async def test_configure_go_live_update_end(platform: Platform, tmp_path: Path) -> None:
    s = ingest_settings(platform.settings, health_interval_s=1.0)
    async with httpx.AsyncClient(base_url=platform.url) as client, running_ingest(s) as ingest:
        user_id, token = await _signup(client)
        channel = await _channel(client, token, tags=["chill"])
        r = await client.post("/v1/streams", headers=_auth(token), json={
            "channel_id": channel["id"], "title": "Pre-show", "category": "Art", "tags": ["painting", "cozy"]})
        assert r.status_code == 201, r.text
        configured = r.json()
        assert r.headers["location"] == f"/v1/streams/{configured['id']}"
        assert configured["status"] == "configured" and configured["started_at_ms"] is None
        assert (configured["title"], configured["category"], configured["tags"]) == ("Pre-show", "Art",
                                                                                     ["painting", "cozy"])
        me = (await client.get("/v1/me", headers=_auth(token))).json()
        assert me["user"]["id"] == user_id
        assert [(c["id"], c["configured_stream_id"], c["live_stream_id"]) for c in me["channels"]] == [
            (channel["id"], configured["id"], None)]

        push = ffmpeg_push(ingest.url, channel["stream_key"], 60, log=tmp_path / "ffmpeg.log")
        try:
            async def live() -> dict[str, Any] | None:
                body = (await client.get(f"/v1/streams/{configured['id']}")).json()
                return body if body["status"] == "live" else None
            stream = await eventually_async(live, 30, "the configured stream going live", every_s=0.2)
            assert stream, "the configured stream never went live"
            # The ingest adopted the configured stream: same id, its title and tags.
            assert stream["title"] == "Pre-show" and stream["tags"] == ["painting", "cozy"]
            assert stream["started_at_ms"] and stream["thumbnail_url"] == f"/thumbs/{configured['id']}.jpg"
            ch = (await client.get(f"/v1/channels/{channel['name']}")).json()
            assert ch["live_stream_id"] == configured["id"] and ch["configured_stream_id"] is None

            r = await client.patch(f"/v1/streams/{configured['id']}", headers=_auth(token),
                                   json={"title": "Main show", "category": "Music"})
            assert r.status_code == 200 and r.json()["title"] == "Main show" and r.json()["category"] == "Music"
            assert r.json()["status"] == "live"
            r = await client.post("/v1/streams", headers=_auth(token), json={"channel_id": channel["id"]})
            assert r.status_code == 409 and r.json()["stream_id"] == configured["id"]

            async def healthy() -> dict[str, Any] | None:
                # Reports come every second, each over the frames of its own second: under load the publisher
                # may send a second's frames late and the next ones in a burst, so wait for a steady one.
                body = (await client.get(f"/v1/streams/{configured['id']}/health", headers=_auth(token))).json()
                return body if body["fps"] and 25 <= body["fps"] <= 35 else None
            health = await eventually_async(healthy, 30, "a StreamHealth of about 30 fps in the view", every_s=0.2)
            assert health, "no StreamHealth of about 30 fps reached the view"
            assert health["stream_status"] == "live" and health["width"] == 640 and health["height"] == 360
            assert health["video_bitrate_kbps"] > 0
            assert health["keyframe_interval_ms"] is None or 1500 <= health["keyframe_interval_ms"] <= 2500

            r = await client.post(f"/v1/streams/{configured['id']}/end", headers=_auth(token))
            assert r.status_code == 200, r.text
            ended = r.json()
            assert ended["status"] == "ended" and ended["end_reason"] == "ENDED_BY_CREATOR"
            # The ingest notices and drops the publisher: ffmpeg exits long before its 60 s.
            await asyncio.wait_for(asyncio.to_thread(push.wait), 15)
        finally:
            if push.poll() is None:
                push.kill()
            push.wait()
        ch = (await client.get(f"/v1/channels/{channel['id']}")).json()
        assert ch["live_stream_id"] is None
        health = (await client.get(f"/v1/streams/{configured['id']}/health", headers=_auth(token))).json()
        assert health["stream_status"] == "ended" and health["fps"] is None

    events = await asyncio.to_thread(_lifecycle, platform, channel["id"])
    records = [e.type for e in events if not isinstance(e.value, StreamHealth)]
    assert records == ["StreamConfigured", "StreamStarted", "StreamUpdated", "StreamEnded"], records
    end = next(e.value for e in events if isinstance(e.value, StreamEnded))
    assert end.reason == "ENDED_BY_CREATOR" and str(end.ended_by_user_id) == user_id
    started = next(e.value for e in events if isinstance(e.value, StreamStarted))
    assert str(started.stream_id) == configured["id"] and list(started.tags) == ["painting", "cozy"]


async def test_a_new_publish_without_configuring_gets_a_fresh_stream(platform: Platform, tmp_path: Path) -> None:
    s = ingest_settings(platform.settings)
    async with httpx.AsyncClient(base_url=platform.url) as client, running_ingest(s) as ingest:
        _, token = await _signup(client)
        channel = await _channel(client, token, title="Just chatting today")
        push = ffmpeg_push(ingest.url, channel["stream_key"], 4, log=tmp_path / "ffmpeg.log")
        try:
            async def live_id() -> Any:
                return (await client.get(f"/v1/channels/{channel['id']}")).json()["live_stream_id"]
            stream_id = await eventually_async(live_id, 30, "a live stream on the channel", every_s=0.2)
            assert stream_id
            stream = (await client.get(f"/v1/streams/{stream_id}")).json()
            assert stream["title"] == "Just chatting today" and stream["category"] == "Music"
        finally:
            await asyncio.to_thread(push.wait)
        async def ended() -> bool:
            return (await client.get(f"/v1/streams/{stream_id}")).json()["status"] == "ended"
        assert await eventually_async(ended, 30, "the stream ending", every_s=0.2)
        assert (await client.get(f"/v1/streams/{stream_id}")).json()["end_reason"] == "PUBLISHER_STOPPED"


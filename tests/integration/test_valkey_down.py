"""Degrade, don't die: a gateway whose Valkey goes away and comes back (issue 11, point 2).

The gateway runs on a private Valkey (never the session's shared one), so the
test can stop it and start it again on the same port and data directory.
While it is down: API reads answer 503 with a reason, the HLS origin serves
segments and the last rendering of each live playlist, chat refuses sends
with a NOTICE while every client stays connected, and a new chat connection
is told to come back later.  When Valkey is back, everything answers again by
itself, the chat fan-out included (its pub/sub subscription is made again).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import websockets
from websockets.asyncio.client import connect

from gateways.app import create_app
from gateways.auth import issue_token
from gateways.playback_token import PlaybackClaims, derive_secret, sign
from infra.embedded.threaded import serve_app
from infra.embedded.valkey import ValkeyProcess
from infra.settings import Secret, Settings
from media.blob import FileBlobStore
from schemas.records.channel import ChannelCreated
from schemas.records.media import SegmentReady
from schemas.records.stream import StreamStarted
from schemas.records.user import UserRegistered
from tests.integration.chat_client import Client
from tests.waiting import eventually_async
from views.fold import Applied
from views.store import ViewStore

pytestmark = pytest.mark.integration

SECRET = "valkey-down-test-secret-" + "x" * 32


@pytest.fixture
def private_valkey(tmp_path: Path) -> Iterator[ValkeyProcess]:
    v = ValkeyProcess(tmp_path / "valkey", persist=True)
    v.start()
    yield v
    v.stop()


def restart(v: ValkeyProcess) -> ValkeyProcess:
    """The same Valkey again: same port, same data directory (its AOF brings the views back)."""
    again = ValkeyProcess(v.data_dir, port=v.port, persist=True)
    again.start()
    return again


@dataclass
class Site:
    url: str
    settings: Settings
    channel_id: str
    stream_id: str
    playback: str  # playback token
    user_token: str

    def ws(self) -> str:
        """The room's socket URL (``Client.open`` signs in with an auth frame, never a token in the URL)."""
        return self.url.replace("http://", "ws://") + f"/v1/chat/ws?channel={self.channel_id}"

    def hls(self, name: str) -> str:
        return f"{self.url}/hls/{self.stream_id}/{name}?token={self.playback}"


def _segment(stream_id: str, channel_id: str, rendition: str, seq: int) -> SegmentReady:
    return SegmentReady(
        occurred_at=int(time.time() * 1000), stream_id=stream_id, channel_id=channel_id, rendition=rendition,
        seq=seq, duration_ms=2000, program_date_time=1_790_000_000_000 + 2000 * seq, byte_size=7,
        uri=f"{seq:08d}.m4s", parts=(), discontinuity=False, pts_90k=180_000 * seq, init_uri="init.mp4",
        codecs="avc1.64001f,mp4a.40.2", bandwidth_bps=2_000_000, width=1280, height=720, fps=30.0,
        audio_only=False)


@pytest.fixture
async def site(private_valkey: ValkeyProcess, settings_factory: Callable[..., Settings]) -> AsyncIterator[Site]:
    s = settings_factory(auth={"jwt_secret": Secret(SECRET)},
                         chat={"ml_filter": False, "user_messages_per_window": 100}).with_section(
        "valkey", url=private_valkey.url)
    channel_id, stream_id, owner = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    user_id = str(uuid.uuid4())
    client = aioredis.Redis.from_url(s.valkey.url)
    views = ViewStore(client, s.valkey.key_prefix)
    try:  # what the processors would have folded
        await views.apply(Applied(1, ChannelCreated(
            occurred_at=1_790_000_000_000, channel_id=channel_id, owner_user_id=owner,
            name=f"down_{uuid.uuid4().hex[:8]}", title="Valkey down", category=None, tags=(),
            stream_key_hash="0" * 64)))
        await views.apply(Applied(1, StreamStarted(
            occurred_at=int(time.time() * 1000), stream_id=stream_id, channel_id=channel_id, title="live",
            category=None, ingest_host="test")))
        for seq in range(3):
            await views.apply(Applied(seq + 1, _segment(stream_id, channel_id, "source", seq)))
        # The chatter's account (a chat socket's token must belong to one).
        await views.apply(Applied(1, UserRegistered(occurred_at=1_790_000_000_000, user_id=user_id,
                                                    username="viewer_one")))
    finally:
        await client.aclose()
    origin = FileBlobStore(s.data_dir / "origin")
    origin.put(f"hls/{stream_id}/source/init.mp4", b"ftyp moov")
    for seq in range(3):
        origin.put(f"hls/{stream_id}/source/{seq:08d}.m4s", f"seg {seq}".encode())
    playback = sign(derive_secret(SECRET, ""), PlaybackClaims(channel_id, int(time.time()) + 600))
    user = issue_token(SECRET, s.auth.jwt_issuer, user_id, "viewer_one", int(time.time()), 3600)
    with serve_app(create_app(s), s.gateway.port) as url:
        yield Site(url, s, channel_id, stream_id, playback, user)


async def _subscribers(client: aioredis.Redis, topic: str) -> int:
    counts = await client.pubsub_numsub(topic)
    return int(counts[0][1]) if counts else 0


async def test_a_valkey_outage_degrades_the_gateway_and_it_recovers_by_itself(
        site: Site, private_valkey: ValkeyProcess) -> None:
    async with httpx.AsyncClient(timeout=20) as http:
        assert (await http.get(f"{site.url}/v1/channels/{site.channel_id}")).status_code == 200
        live = await http.get(site.hls("source/index.m3u8"))
        master = await http.get(site.hls("master.m3u8"))
        assert live.status_code == 200 and master.status_code == 200 and "00000002.m4s" in live.text
        assert (await http.get(site.hls("source/00000000.m4s"))).content == b"seg 0"
        sender = await Client.open(site.ws(), site.user_token)
        watcher = await Client.open(site.ws())
        ack = await sender.say("before")
        assert ack["type"] == "ACK"
        await watcher.next(lambda m: m["type"] == "MESSAGE" and m["id"] == ack["id"])

        private_valkey.stop()
        # API reads: 503 with a reason, never a 500.
        started = time.monotonic()
        r = await http.get(f"{site.url}/v1/channels/{site.channel_id}")
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == "application/problem+json" and r.headers["retry-after"] == "1"
        assert r.json()["reason"] == "valkey_unavailable" and "Valkey" in r.json()["detail"]
        assert time.monotonic() - started < 15  # bounded: a hang would show here
        r = await http.get(f"{site.url}/v1/directory")
        assert r.status_code in (404, 503) and r.status_code != 500
        # The origin: segments (one never read before, so it comes from the store) and the last playlists.
        assert (await http.get(site.hls("source/00000001.m4s"))).content == b"seg 1"
        assert (await http.get(site.hls("source/init.mp4"))).content == b"ftyp moov"
        stale = await http.get(site.hls("source/index.m3u8"))
        assert stale.status_code == 200 and stale.text == live.text and "age" in stale.headers
        assert (await http.get(site.hls("master.m3u8"))).text == master.text
        # Another player's token goes on the URIs it gets; a bad token is still refused.
        other = sign(derive_secret(SECRET, ""), PlaybackClaims(site.channel_id, int(time.time()) + 300))
        r = await http.get(f"{site.url}/hls/{site.stream_id}/source/index.m3u8", params={"token": other})
        assert r.status_code == 200 and f"token={other}" in r.text and site.playback not in r.text
        r = await http.get(f"{site.url}/hls/{site.stream_id}/source/index.m3u8", params={"token": "forged.x"})
        assert r.status_code == 403
        # A playlist this gateway never rendered: 503 with a reason.
        r = await http.get(site.hls("720p30/index.m3u8"))
        assert r.status_code == 503 and r.json()["reason"] == "valkey_unavailable"

        # Chat: a send is refused with a NOTICE, nobody sees it, and both sockets stay open.
        refused = await sender.say("during")
        assert refused["type"] == "NOTICE" and refused["code"] == "unavailable" and "not sent" in refused["reason"]
        assert [m for m in await watcher.messages() if m["text"] == "during"] == []
        await sender.ping()
        await watcher.ping()
        async with connect(site.ws()) as late:
            error = json.loads(await asyncio.wait_for(late.recv(), 15))
            assert error["type"] == "ERROR" and error["code"] == "unavailable"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(late.recv(), 15)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013

        private_valkey = restart(private_valkey)
        try:
            # Everything answers again by itself.
            async def api_back() -> bool:
                return (await http.get(f"{site.url}/v1/channels/{site.channel_id}")).status_code == 200

            await eventually_async(api_back, 30, "the API to answer again", every_s=0.2)
            fresh = await http.get(site.hls("source/index.m3u8"))
            assert fresh.status_code == 200 and "age" not in fresh.headers

            # The fan-out subscribes again by itself (pub/sub keeps nothing for a subscriber that is away, so
            # the test waits for the subscription, seen from Valkey, before it sends).
            topic = f"{site.settings.valkey.key_prefix}chat:room:{site.channel_id}"
            valkey = aioredis.Redis.from_url(private_valkey.url)
            try:
                await eventually_async(lambda: _subscribers(valkey, topic), 30, "the room's subscription again")
            finally:
                await valkey.aclose()

            async def sent() -> dict[str, Any] | None:
                answer = await sender.say("after")
                return answer if answer["type"] == "ACK" else None

            ack = await eventually_async(sent, 30, "a send to be accepted again", every_s=0.2)
            # The watcher, connected all along, gets it.
            msg = await watcher.next(lambda m: m["type"] == "MESSAGE" and m["id"] == ack["id"], timeout_s=15)
            assert msg["text"] == "after"
            newcomer = await Client.open(site.ws())
            assert newcomer.inbox == []
            for c in (sender, watcher, newcomer):
                await c.ws.close()
        finally:
            private_valkey.stop()

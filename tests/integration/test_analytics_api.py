"""Creator analytics end to end: a scripted stream's events through ``topics/`` give exact numbers from the API.

The gateway runs in a thread, the processors (stream and channel views) and the
analytics process (the sink and chDB) as real children.  The stream's events
are produced with chosen ``occurred_at`` times, so every number of the answer
is known in advance (views/analytics/report.py says how each is counted):

    minute 0: A beats 0..50 s (source), B beats 30..90 s (480p30; the beat at 60 s has 0.1 s of buffer)
    minute 1: B
    minute 2: C beats 120..170 s (source)
    chat: 5 s (u1), 20 s (u2), 65 s (u1); and one before the stream, outside its range
    follows: f1 at 10 s, f2 at 100 s, f1 again at 110 s (a bell change), an unfollow; one before the stream
    one subscription at 30 s; ingest health at 2 s, 4 s and 62 s
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from gateways.app import create_app
from infra.settings import Settings
from schemas.record import Record
from schemas.records.billing import SubscriptionStarted
from schemas.records.chat import ChatMessageSent
from schemas.records.social import Followed, Unfollowed
from schemas.records.stream import StreamEnded, StreamHealth, StreamStarted
from schemas.records.viewer import Heartbeat
from tests.conftest import wait_processors_assigned
from tests.factories import Backbone
from tests.integration.test_analytics_sink import analytics_settings, wait_healthy
from tests.servers import run_service, serve_app
from tests.waiting import eventually_async
from topics.producer import EventProducer
from topics.runtime import make_serde

pytestmark = pytest.mark.integration

S = 1000
MINUTE = 60 * S


@dataclass(frozen=True)
class Site:
    settings: Settings
    url: str


@pytest.fixture(scope="module")
def site(backbone: Backbone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data = tmp_path_factory.mktemp("analytics-api")
    s = analytics_settings(backbone, data / "data", batch_max_ms=50)
    with run_service(s, "analytics", data / "analytics.log") as analytics:
        wait_healthy(s, analytics, data / "analytics.log")
        with run_service(s, "processors", data / "processors.log") as proc:
            wait_processors_assigned(s, proc, data / "processors.log")
            with serve_app(create_app(s), s.gateway.port) as url:
                yield Site(settings=s, url=url)


@pytest.fixture
async def http(site: Site) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as client:
        yield client


async def _user(http: httpx.AsyncClient) -> dict[str, str]:
    name, password = f"an_{uuid.uuid4().hex[:10]}", "correct horse battery"
    r = await http.post("/v1/users", json={"username": name, "password": password})
    assert r.status_code == 201, r.text
    r = await http.post("/v1/auth/login", json={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _script(channel: str, stream: str, t0: int) -> list[Record]:
    def beat(at_s: int, session: str, rendition: str, buffer_s: float = 2.0, **extra: Any) -> Heartbeat:
        return Heartbeat(occurred_at=t0 + at_s * S, channel_id=channel, stream_id=stream, session_id=session,
                         rendition=rendition, buffer_health_s=buffer_s, bitrate_kbps=2500, **extra)

    def chat(at_s: int, user: str) -> ChatMessageSent:
        return ChatMessageSent(occurred_at=t0 + at_s * S, message_id=str(uuid.uuid4()), channel_id=channel,
                               user_id=user, username=user, text="hello")

    def health(at_s: int, kbps: int, fps: float, dropped: int) -> StreamHealth:
        return StreamHealth(occurred_at=t0 + at_s * S, stream_id=stream, channel_id=channel, window_ms=2000,
                            ingest_bitrate_kbps=kbps, fps=fps, dropped_frames=dropped, bytes_received=1)

    events: list[Record] = [StreamStarted(occurred_at=t0, stream_id=stream, channel_id=channel, title="scripted",
                                          ingest_host="ingest-test")]
    events += [beat(s, "A", "source") for s in range(0, 60, 10)]
    events += [beat(s, "B", "480p30", 0.1 if s == 60 else 2.0) for s in range(30, 100, 10)]
    events += [beat(s, "C", "source") for s in range(120, 180, 10)]
    events += [beat(20, "V", "source", playback="VOD"),  # not live: left out
               Heartbeat(occurred_at=t0, channel_id=str(uuid.uuid4()), stream_id=stream, session_id="elsewhere",
                         rendition="source", buffer_health_s=2.0, bitrate_kbps=1)]
    events += [chat(-60, "u9"), chat(5, "u1"), chat(20, "u2"), chat(65, "u1")]
    events += [Followed(occurred_at=t0 - 60 * S, follower_id="f0", channel_id=channel),
               Followed(occurred_at=t0 + 10 * S, follower_id="f1", channel_id=channel),
               Followed(occurred_at=t0 + 100 * S, follower_id="f2", channel_id=channel),
               Followed(occurred_at=t0 + 110 * S, follower_id="f1", channel_id=channel, notifications_enabled=False),
               Unfollowed(occurred_at=t0 + 120 * S, follower_id="f3", channel_id=channel)]
    events.append(SubscriptionStarted(occurred_at=t0 + 30 * S, subscription_id=str(uuid.uuid4()), user_id="s1",
                                      channel_id=channel, expires_at=t0 + 30 * 86_400_000, amount_minor=499,
                                      currency="USD"))
    events += [health(2, 3000, 30.0, 1), health(4, 3200, 29.0, 0), health(62, 2800, 30.0, 2)]
    events.append(StreamEnded(occurred_at=t0 + 5 * MINUTE, stream_id=stream, channel_id=channel, started_at=t0,
                              duration_ms=5 * MINUTE))
    return events


def _keys(event: Record) -> str:
    if isinstance(event, (Followed, Unfollowed)):
        return f"{event.follower_id}:{event.channel_id}"
    if isinstance(event, SubscriptionStarted):
        return f"{event.user_id}:{event.channel_id}"
    return str(event.channel_id)


def expected(channel: str, stream: str | None, t0: int, to: int) -> dict[str, Any]:
    return {
        "channel_id": channel, "stream_id": stream, "from": t0, "to": to,
        "viewers_per_minute": [{"t": t0, "viewers": 2}, {"t": t0 + MINUTE, "viewers": 1},
                               {"t": t0 + 2 * MINUTE, "viewers": 1}],
        "peak_viewers": 2, "avg_viewers": 1.333, "unique_viewers": 3,
        "watch_time_s": 190.0, "avg_watch_time_s": 63.333,  # A 60, B min(70, 60 + 10) = 70, C 60
        "chat_per_minute": [{"t": t0, "messages": 2}, {"t": t0 + MINUTE, "messages": 1}],
        "chat_messages": 3, "chatters": 2, "new_followers": 2, "new_subscribers": 1,
        "renditions": [{"rendition": "source", "share": round(12 / 19, 4)},
                       {"rendition": "480p30", "share": round(7 / 19, 4)}],
        "rebuffering_ratio": round(1 / 19, 4),
        "ingest": [{"t": t0, "bitrate_kbps": 3100, "fps": 29.5, "dropped_frames": 1},
                   {"t": t0 + MINUTE, "bitrate_kbps": 2800, "fps": 30.0, "dropped_frames": 2}],
    }


async def test_scripted_stream_gives_exact_numbers(site: Site, http: httpx.AsyncClient) -> None:
    owner, stranger = await _user(http), await _user(http)
    r = await http.post("/v1/channels", headers=owner, json={"name": f"an_{uuid.uuid4().hex[:10]}"})
    assert r.status_code == 201, r.text
    channel, stream = r.json()["id"], str(uuid.uuid4())
    t0 = (int(time.time()) // 60 - 30) * MINUTE  # half an hour ago, on a minute
    serde = make_serde(site.settings)
    producer = EventProducer(site.settings.kafka, serde)
    try:
        for event in _script(channel, stream, t0):
            await producer.send(event, _keys(event))
    finally:
        producer.close()
        serde.close()
    want = expected(channel, stream, t0, t0 + 5 * MINUTE + 1)

    async def answer() -> dict[str, Any] | None:
        got = await http.get(f"/v1/streams/{stream}/analytics", headers=owner)
        if got.status_code != 200:
            return None
        body: dict[str, Any] = got.json()
        return body if body == want else None

    # (Once a second: each user may ask settings.analytics.reports_per_minute times a minute.)
    assert await eventually_async(answer, 60, "the stream's analytics", every_s=1.0) == want

    # The channel over the same range, asked with ISO 8601 times: the same numbers, for every stream.
    iso = datetime.fromtimestamp(t0 / 1000, UTC).isoformat()
    r = await http.get(f"/v1/channels/{channel}/analytics", headers=owner,
                       params={"from": iso, "to": str(t0 + 5 * MINUTE + 1)})
    assert r.status_code == 200, r.text
    assert r.json() == {**want, "stream_id": None}
    # A minute earlier the channel also has the chat message and the follow before the stream.
    r = await http.get(f"/v1/channels/{channel}/analytics", headers=owner,
                       params={"from": str(t0 - MINUTE), "to": str(t0 + 5 * MINUTE + 1)})
    assert r.json()["chat_messages"] == 4 and r.json()["new_followers"] == 3

    r = await http.get(f"/v1/streams/{stream}/analytics", headers=owner, params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.splitlines()
    assert lines[0] == "minute,t,viewers,chat_messages,chatters,ingest_bitrate_kbps,ingest_fps,ingest_dropped_frames"
    stamp = datetime.fromtimestamp(t0 / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert lines[1] == f"{stamp},{t0},2,2,2,3100,29.5,1"
    assert lines[2].endswith(f",{t0 + MINUTE},1,1,1,2800,30.0,2")
    assert lines[3].endswith(f",{t0 + 2 * MINUTE},1,,,,,") and len(lines) == 4

    # Someone else's analytics, no token, a backwards range, more than a year, a bad time.
    assert (await http.get(f"/v1/streams/{stream}/analytics", headers=stranger)).status_code == 403
    assert (await http.get(f"/v1/channels/{channel}/analytics", headers=stranger)).status_code == 403
    assert (await http.get(f"/v1/streams/{stream}/analytics")).status_code == 401
    for params in ({"from": str(t0), "to": str(t0 - 1)}, {"from": "0", "to": str(367 * 86_400_000)},
                   {"from": "yesterday"}, {"format": "xml"}):
        r = await http.get(f"/v1/channels/{channel}/analytics", headers=owner, params=params)
        assert r.status_code == 400, (params, r.text)
    assert (await http.get(f"/v1/streams/{uuid.uuid4()}/analytics", headers=owner)).status_code == 404



async def test_each_user_is_bounded_in_analytics_requests(site: Site, http: httpx.AsyncClient) -> None:
    owner, other = await _user(http), await _user(http)
    r = await http.post("/v1/channels", headers=owner, json={"name": f"an_{uuid.uuid4().hex[:10]}"})
    assert r.status_code == 201, r.text
    channel = r.json()["id"]
    codes = [(await http.get(f"/v1/channels/{channel}/analytics", headers=other)).status_code
             for _ in range(site.settings.analytics.reports_per_minute)]
    assert set(codes) == {403}, codes
    r = await http.get(f"/v1/channels/{channel}/analytics", headers=other)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1, r.text
    # The owner has a bound of their own.
    assert (await http.get(f"/v1/channels/{channel}/analytics", headers=owner)).status_code == 200

"""Chat history end to end: events on ``chat.messages`` in the session broker, the processors as
a real `glasscast run processors` child archiving them into the SQLite history, and the replay
endpoint of a real gateway (in a thread) reading the same file.

The tests start and stop the processors themselves, to show that what the log holds reaches the
history whenever the processors run: events produced while no processors run are archived when
they start, and a batch the store refused is not committed, so it is archived after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from starlette.applications import Starlette

from infra.embedded.threaded import serve_app
from infra.settings import Settings
from schemas.records.channel import ChannelCreated
from schemas.records.chat import ChatMessageDeleted, ChatMessageSent, Emote, UserBanned, UserUnbanned
from tests.conftest import wait_processors_assigned
from tests.factories import Backbone, platform_settings
from tests.servers import run_service
from tests.waiting import eventually_async
from topics.producer import EventProducer
from topics.runtime import make_serde
from views.chat_history.backends import sqlite_path
from views.chat_history.store import HOUR_MS
from views.fold import Applied
from views.readiness import ready_key
from views.store import ViewStore

pytestmark = pytest.mark.integration

T0 = 1_789_992_000_000  # 2026-09-21T12:00:00Z, an hour boundary
ChatEvent = ChannelCreated | ChatMessageSent | ChatMessageDeleted | UserBanned | UserUnbanned


@dataclass
class HistoryPlatform:
    settings: Settings
    url: str
    app: Starlette
    log: Path


@pytest.fixture(scope="module")
def history_platform(backbone: Backbone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HistoryPlatform]:
    """The conftest ``platform``'s gateway, whose lifespan opens the chat history store
    (``app.state.services.chat_history``), and no processors running."""
    from gateways.app import create_app

    data = tmp_path_factory.mktemp("chat-history")
    s = platform_settings(backbone, data)
    app = create_app(s)
    with serve_app(app, s.gateway.port) as url:
        yield HistoryPlatform(settings=s, url=url, app=app, log=data / "processors.log")


@contextlib.contextmanager
def processors(p: HistoryPlatform) -> Iterator[subprocess.Popen[bytes]]:
    """A `glasscast run processors` child, assigned its partitions, stopped (SIGTERM) on exit."""
    client = redis.Redis.from_url(p.settings.valkey.url)
    try:
        client.delete(ready_key(p.settings))  # a previous run's announcement
    finally:
        client.close()
    with run_service(p.settings, "processors", p.log) as proc:
        wait_processors_assigned(p.settings, proc, p.log)
        yield proc


def _produce(s: Settings, events: list[ChatEvent]) -> None:
    serde = make_serde(s)
    producer = EventProducer(s.kafka, serde)
    try:
        for event in events:
            producer.send_sync(event, event.channel_id)  # chat and channel topics are keyed by channel
    finally:
        producer.close(10)
        serde.close()


async def produce(s: Settings, *events: ChatEvent) -> None:
    await asyncio.to_thread(_produce, s, list(events))


def channel_created(channel_id: str, name: str) -> ChannelCreated:
    return ChannelCreated(
        occurred_at=T0 - 86_400_000, channel_id=channel_id, owner_user_id=str(uuid.uuid4()), name=name,
        title="replay", category=None, tags=(), stream_key_hash="f" * 64, stream_key_nonce=None)


def sent(channel_id: str, sent_at_ms: int, text: str, emotes: tuple[Emote, ...] = (),
         badges: tuple[str, ...] = ()) -> ChatMessageSent:
    return ChatMessageSent(
        occurred_at=sent_at_ms, message_id=str(uuid.uuid4()), channel_id=channel_id, user_id=str(uuid.uuid4()),
        username="viewer_1", text=text, nonce=None, emotes=emotes, badges=badges)


def deleted(message: ChatMessageSent) -> ChatMessageDeleted:
    return ChatMessageDeleted(
        occurred_at=message.occurred_at + 1000, message_id=message.message_id, channel_id=message.channel_id,
        deleted_by_user_id=str(uuid.uuid4()), user_id=message.user_id, reason="spam")


def ids(*messages: ChatMessageSent) -> list[str]:
    return [m.message_id for m in messages]


async def replayed(http: httpx.AsyncClient, room: str, **params: Any) -> list[str]:
    """The message ids replay shows (nothing while the room is unknown)."""
    r = await http.get(f"/v1/chat/{room}/messages", params={"before": 200, "after": 200, **params})
    if r.status_code == 404:
        return []
    assert r.status_code == 200, r.text
    return [m["message_id"] for m in r.json()["messages"]]


async def test_chat_sent_while_the_processors_are_down_is_archived_and_replayed(
        history_platform: HistoryPlatform) -> None:
    p, s = history_platform, history_platform.settings
    channel_id, name = str(uuid.uuid4()), f"replay{uuid.uuid4().hex[:8]}"
    m = [sent(channel_id, T0 - 2, "last of the hour"),
         sent(channel_id, T0 - 1, "Kappa gg 👋", emotes=(Emote(emote_id="25", start=0, end=5),),
              badges=("subscriber/3", "vip")),
         sent(channel_id, T0, "on the hour"),
         sent(channel_id, T0 + 1, "héllo"),
         sent(channel_id, T0 + HOUR_MS + 5, "an hour later")]
    elsewhere = sent(str(uuid.uuid4()), T0, "another channel")
    # Accepted while no processors run: the log keeps it.
    await produce(s, channel_created(channel_id, name), *m, deleted(m[2]), elsewhere)

    async with httpx.AsyncClient(base_url=p.url) as http:
        assert (await http.get(f"/v1/chat/{name}/messages?around_timestamp={T0}")).status_code == 404
        with processors(p):
            expected = ids(m[0], m[1], m[3], m[4])

            async def archived() -> bool:
                return await replayed(http, name, around_timestamp=T0) == expected
            await eventually_async(archived, 60, "the messages produced before the processors started")

            r = await http.get(f"/v1/chat/{name}/messages", params={"around_timestamp": T0, "before": 2,
                                                                     "after": 1})
            assert r.status_code == 200 and r.headers["content-type"] == "application/json"
            body = r.json()
            assert body["channel_id"] == channel_id and body["around_timestamp"] == T0
            v = m[1]
            assert body["messages"] == [
                {"message_id": m[0].message_id, "user_id": m[0].user_id, "username": "viewer_1",
                 "text": "last of the hour", "emotes": [], "badges": [], "sent_at_ms": T0 - 2},
                {"message_id": v.message_id, "user_id": v.user_id, "username": "viewer_1",
                 "text": "Kappa gg 👋", "emotes": [{"emote_id": "25", "start": 0, "end": 5}],
                 "badges": ["subscriber/3", "vip"], "sent_at_ms": T0 - 1},
                {"message_id": m[3].message_id, "user_id": m[3].user_id, "username": "viewer_1",
                 "text": "héllo", "emotes": [], "badges": [], "sent_at_ms": T0 + 1}]
            # The room by id and the moment as ISO 8601 give the same window.
            by_id = await http.get(f"/v1/chat/{channel_id}/messages", params={
                "around_timestamp": "2026-09-21T12:00:00Z", "before": 2, "after": 1})
            assert by_id.json() == body
            assert await replayed(http, name, around_timestamp=T0 + HOUR_MS, before=1, after=0) == ids(m[3])

            # A deletion while the processors run hides the message from replay.
            await produce(s, deleted(m[1]))

            async def hidden() -> bool:
                return await replayed(http, name, around_timestamp=T0) == ids(m[0], m[3], m[4])
            await eventually_async(hidden, 30, "the deleted message hidden")

        # Down again: a message and a deletion wait in the log for the next start.
        late = sent(channel_id, T0 + 2, "sent while the processors were down")
        await produce(s, late, deleted(m[0]))
        assert await replayed(http, name, around_timestamp=T0) == ids(m[0], m[3], m[4])
        with processors(p):
            async def caught_up() -> bool:
                return await replayed(http, name, around_timestamp=T0) == ids(m[3], late, m[4])
            await eventually_async(caught_up, 60, "the messages produced while the processors were down")


async def test_a_batch_the_store_refused_is_archived_after_a_restart(history_platform: HistoryPlatform) -> None:
    p, s = history_platform, history_platform.settings
    channel_id, name = str(uuid.uuid4()), f"locked{uuid.uuid4().hex[:8]}"
    first, second = sent(channel_id, T0, "first"), sent(channel_id, T0 + 1, "written after the lock")
    await produce(s, channel_created(channel_id, name), first)
    async with httpx.AsyncClient(base_url=p.url) as http:
        lock = sqlite3.connect(sqlite_path(s), isolation_level=None)
        try:
            with processors(p):
                async def archived() -> bool:
                    return await replayed(http, name, around_timestamp=T0) == ids(first)
                await eventually_async(archived, 60, "the first message")

                # Another process holds the write lock: the archiver's writes time out and are retried.
                lock.execute("BEGIN IMMEDIATE")
                seen = p.log.stat().st_size
                await produce(s, second)

                async def refused() -> bool:
                    return "chat history write failed" in p.log.read_text(errors="replace")[seen:]
                await eventually_async(refused, 60, "a refused write in the processors' log")
                assert await replayed(http, name, around_timestamp=T0) == ids(first)  # readers go on
            # The processors stopped while the batch was refused: its offset must not be committed.
            lock.execute("ROLLBACK")
        finally:
            lock.close()
        assert await replayed(http, name, around_timestamp=T0) == ids(first)
        with processors(p):
            async def recovered() -> bool:
                return await replayed(http, name, around_timestamp=T0) == ids(first, second)
            await eventually_async(recovered, 60, "the refused message after a restart")


async def test_replay_answers_problems(history_platform: HistoryPlatform) -> None:
    p, s = history_platform, history_platform.settings
    channel_id, name = str(uuid.uuid4()), f"problems{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(s.valkey.url)
    try:  # the channel view as the processors would fold it, so no processors are needed here
        await ViewStore(client, s.valkey.key_prefix).apply(Applied(0, channel_created(channel_id, name)))
    finally:
        await client.aclose()
    async with httpx.AsyncClient(base_url=p.url) as http:
        r = await http.get(f"/v1/chat/{name}/messages?around_timestamp={T0}")
        assert r.status_code == 200 and r.json() == {"channel_id": channel_id, "around_timestamp": T0, "messages": [],
                                                     "prev_cursor": None, "next_cursor": None}
        for query, status, field in [("around_timestamp=noon", 422, "around_timestamp"),
                                     ("before=5", 422, "around_timestamp"),
                                     (f"around_timestamp={T0}&before=201", 422, "before"),
                                     (f"around_timestamp={T0}&after=-1", 422, "after"),
                                     ("limit=5", 400, "limit"), ("before=1&before=2", 400, "before"),
                                     ("cursor=not-a-cursor", 400, "cursor"), ("cursor=", 400, "cursor"),
                                     (f"cursor=abc&around_timestamp={T0}", 400, "around_timestamp")]:
            r = await http.get(f"/v1/chat/{name}/messages?{query}")
            assert r.status_code == status, (query, r.text)
            assert r.headers["content-type"] == "application/problem+json" and r.json()["field"] == field
        r = await http.get(f"/v1/chat/{uuid.uuid4()}/messages?around_timestamp={T0}")
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        r = await http.get(f"/v1/chat/nobody-here/messages?around_timestamp={T0}")
        assert r.status_code == 404
        services = p.app.state.services
        store, services.chat_history = services.chat_history, None  # as when the store did not open
        try:
            r = await http.get(f"/v1/chat/{name}/messages?around_timestamp={T0}")
            assert r.status_code == 503 and "chat history" in r.json()["detail"]
        finally:
            services.chat_history = store


async def _page(http: httpx.AsyncClient, room: str, **params: Any) -> dict[str, Any]:
    r = await http.get(f"/v1/chat/{room}/messages", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_replay_pages_by_cursor_and_leaves_banned_users_out(history_platform: HistoryPlatform) -> None:
    p, s = history_platform, history_platform.settings
    channel_id, name = str(uuid.uuid4()), f"paging{uuid.uuid4().hex[:8]}"
    other_id, other_name = str(uuid.uuid4()), f"other{uuid.uuid4().hex[:8]}"
    chat = [sent(channel_id, T0 + 1000 * (i // 2), f"message {i}") for i in range(25)]  # two per second
    troll = sent(channel_id, T0 + 4500, "a troll, banned an hour later")
    back = sent(channel_id, T0 + HOUR_MS + 10, "the troll after the unban")
    back = ChatMessageSent(**{**back.to_avro(), "user_id": troll.user_id, "username": "troll", "emotes": ()})
    ban = UserBanned(occurred_at=T0 + HOUR_MS, channel_id=channel_id, user_id=troll.user_id,
                     moderator_user_id=str(uuid.uuid4()), reason="trolling")
    unban = UserUnbanned(occurred_at=T0 + HOUR_MS + 5, channel_id=channel_id, user_id=troll.user_id,
                         moderator_user_id=str(uuid.uuid4()))
    await produce(s, channel_created(channel_id, name), channel_created(other_id, other_name), *chat, troll)
    async with httpx.AsyncClient(base_url=p.url) as http:
        with processors(p):
            async def archived() -> bool:
                return len(await replayed(http, name, around_timestamp=T0)) == 26
            await eventually_async(archived, 60, "the channel's messages archived")

            # Around the moment of message 10 (sent with 11 at T0 + 5 s): two before, three after.
            everything = await replayed(http, name, around_timestamp=T0)
            first = await _page(http, name, around_timestamp=T0 + 5000, before=2, after=3)
            shown = [m["message_id"] for m in first["messages"]]
            at = max(everything.index(chat[10].message_id), everything.index(chat[11].message_id)) + 1
            assert shown == everything[at - 2:at + 3]
            assert first["prev_cursor"] and first["next_cursor"]

            # Forward by cursor to the end, then back to the start: every message once, in order.
            forward, cursor = list(shown), first["next_cursor"]
            while cursor is not None:
                page = await _page(http, channel_id, cursor=cursor, limit=4)
                assert "around_timestamp" not in page and len(page["messages"]) <= 4
                forward += [m["message_id"] for m in page["messages"]]
                cursor = page["next_cursor"]
            backward, cursor = [], first["prev_cursor"]
            while cursor is not None:
                page = await _page(http, name, cursor=cursor, limit=3)
                backward[:0] = [m["message_id"] for m in page["messages"]]
                cursor = page["prev_cursor"]
            assert backward + forward == everything and len(everything) == 26

            # A cursor is the channel's own; a tampered or foreign one is a 400 that says so.
            r = await http.get(f"/v1/chat/{other_name}/messages", params={"cursor": first["next_cursor"]})
            assert r.status_code == 400 and "another channel" in r.json()["detail"] and r.json()["field"] == "cursor"
            r = await http.get(f"/v1/chat/{name}/messages", params={"cursor": first["next_cursor"][:-3] + "!!!"})
            assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"

            # Banned an hour after the message: it leaves replay too; what the user says after an unban stays.
            await produce(s, ban, unban, back)

            async def hidden() -> bool:
                got = await replayed(http, name, around_timestamp=T0)
                return troll.message_id not in got and back.message_id in got and len(got) == 26
            await eventually_async(hidden, 30, "the banned user's earlier message hidden")
            assert await replayed(http, name, around_timestamp=T0) == [
                i for i in everything if i != troll.message_id] + [back.message_id]

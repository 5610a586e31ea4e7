"""Chat with the broker down (issue 11, point 2): a message is logged and then shown and ACKed, or refused.

The gateway runs on a private Tansu broker (never the session's shared one),
so the test can stop it and start an empty one on the same port.  While it is
down, a send is refused with a NOTICE within the chat's bound and the room
never sees the message; once a broker is back (a restarted Tansu is empty
until rehydrated, so the test ensures the topics as the keeper would), sends
are logged, shown and ACKed again, and the refused message never reached the
log behind its sender's back.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateways.app import create_app
from gateways.auth import issue_token
from infra.embedded.tansu import TansuBroker
from infra.embedded.threaded import serve_app
from infra.settings import Secret, Settings
from schemas.records.channel import ChannelCreated
from schemas.records.chat import ChatMessageSent
from schemas.records.user import UserRegistered
from tests.integration.chat_client import Client
from tests.waiting import eventually, eventually_async
from topics.admin import ensure_topics
from topics.runtime import make_serde
from topics.tools import read_topic
from views.fold import Applied
from views.store import ViewStore

pytestmark = pytest.mark.integration

SECRET = "broker-down-test-secret-" + "x" * 32


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[TansuBroker]:
    b = TansuBroker(tmp_path / "broker.log")
    b.start()
    yield b
    b.stop()


@dataclass
class Room:
    url: str
    settings: Settings
    channel_id: str
    user_token: str

    def ws(self) -> str:
        """The room's socket URL (``Client.open`` signs in with an auth frame, never a token in the URL)."""
        return self.url.replace("http://", "ws://") + f"/v1/chat/ws?channel={self.channel_id}"


@pytest.fixture
async def room(private_broker: TansuBroker, settings_factory: Callable[..., Settings]) -> AsyncIterator[Room]:
    s = settings_factory(auth={"jwt_secret": Secret(SECRET)},
                         chat={"ml_filter": False, "user_messages_per_window": 100}).with_section(
        "kafka", bootstrap_servers=private_broker.bootstrap_servers)
    channel_id, user_id = str(uuid.uuid4()), str(uuid.uuid4())
    client = aioredis.Redis.from_url(s.valkey.url)
    try:
        await ViewStore(client, s.valkey.key_prefix).apply(Applied(1, ChannelCreated(
            occurred_at=1_790_000_000_000, channel_id=channel_id, owner_user_id=str(uuid.uuid4()),
            name=f"brk_{uuid.uuid4().hex[:8]}", title="Broker down", category=None, tags=(),
            stream_key_hash="0" * 64)))
        # The chatter's account (a chat socket's token must belong to one).
        await ViewStore(client, s.valkey.key_prefix).apply(Applied(1, UserRegistered(
            occurred_at=1_790_000_000_000, user_id=user_id, username="chatter_one")))
    finally:
        await client.aclose()
    user = issue_token(SECRET, s.auth.jwt_issuer, user_id, "chatter_one", int(time.time()), 3600)
    with serve_app(create_app(s), s.gateway.port) as url:
        yield Room(url, s, channel_id, user)


def logged(s: Settings, channel_id: str) -> list[str]:
    """The texts of the room's ChatMessageSent records in the log, in order."""
    serde = make_serde(s)
    try:
        return [e.value.text for e in read_topic(s.kafka, serde, "chat.messages", start="beginning",
                                                 exit_at_end=True)
                if e.key == channel_id and isinstance(e.value, ChatMessageSent)]
    finally:
        serde.close()


async def test_a_message_is_logged_then_shown_or_refused_never_shown_unlogged(
        room: Room, private_broker: TansuBroker, tmp_path: Path) -> None:
    sender = await Client.open(room.ws(), room.user_token)
    watcher = await Client.open(room.ws())
    ack = await sender.say("before")
    assert ack["type"] == "ACK"
    await watcher.next(lambda m: m["type"] == "MESSAGE" and m["id"] == ack["id"])

    private_broker.stop()
    started = time.monotonic()
    refused = await sender.say("while the broker is down", nonce="n-down")
    waited = time.monotonic() - started
    assert refused["type"] == "NOTICE" and refused["code"] == "unavailable" and "not sent" in refused["reason"]
    assert waited < room.settings.chat.log_timeout_ms / 1000 + 10  # bounded: a hang would show here
    # Never shown: not to the room, not to the sender.
    assert [m for m in await watcher.messages(1.0) if m["text"] == "while the broker is down"] == []
    assert [m for m in await sender.messages(0.1) if m["text"] == "while the broker is down"] == []
    await sender.ping()  # still connected

    again = TansuBroker(tmp_path / "broker-2.log", port=private_broker.port)
    again.start()
    try:
        eventually(lambda: ensure_topics(room.settings.kafka) or True, 30, "the topics on the new broker",
                   ignore=(Exception,))

        async def accepted() -> dict[str, Any] | None:
            answer = await sender.say("after")
            return answer if answer["type"] == "ACK" else None

        ack = await eventually_async(accepted, 60, "a send to be logged and ACKed again", every_s=0.2)
        await watcher.next(lambda m: m["type"] == "MESSAGE" and m["id"] == ack["id"])
        # The refused message released its nonce: resending it is a new message, not a duplicate.
        resent = await sender.say("while the broker is down", nonce="n-down")
        assert resent["type"] == "ACK" and not resent["duplicate"]
        await watcher.next(lambda m: m["type"] == "MESSAGE" and m["id"] == resent["id"])
        # The new broker's log: what was ACKed, and the refused message only as resent (once).
        texts = logged(room.settings, room.channel_id)
        assert texts.count("while the broker is down") == 1 and texts[-1] == "while the broker is down"
        assert set(texts) == {"after", "while the broker is down"}
        for c in (sender, watcher):
            await c.ws.close()
    finally:
        again.stop()

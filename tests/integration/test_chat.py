"""Live chat over real WebSockets across two gateway processes (`glasscast run gateway`) sharing one
Valkey, with the processors as a third process and the embedded broker.

The two gateways take up to ``RELAXED`` messages a second from a user, so
that tests send without waiting out the default limit of one; the rate-limit
test sends through a third gateway (``strict_url``) that keeps the default.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import websockets
from websockets.asyncio.client import ClientConnection, connect

from gateways.app import create_app
from infra.embedded.process import free_port
from infra.settings import ChatSettings, Settings
from schemas.records.billing import SubscriptionStarted
from schemas.records.social import Followed
from tests.conftest import wait_processors_assigned
from tests.factories import Backbone, platform_settings
from tests.servers import run_service, serve_app, wait_healthy
from tests.waiting import Timeout, eventually_async
from topics.producer import EventProducer
from topics.runtime import make_serde

pytestmark = pytest.mark.integration

RELAXED = 1000  # messages per rate window, per user, on the module's two gateways
RECV_SLICE_S = 0.25  # how long one look at the socket waits before the wait checks its deadline


class Chat:
    def __init__(self, settings: Settings, urls: list[str], data: Path) -> None:
        self.settings = settings
        self.urls = urls  # two gateways
        self.data = data
        self.processors: contextlib.ExitStack | None = None

    def start_processors(self) -> None:
        stack = contextlib.ExitStack()
        proc = stack.enter_context(run_service(self.settings, "processors", self.data / "processors.log"))
        wait_processors_assigned(self.settings, proc, self.data / "processors.log")
        self.processors = stack

    def stop_processors(self) -> None:
        if self.processors is not None:
            self.processors.close()
            self.processors = None

    def ws(self, gateway: int, channel: str) -> str:
        """A room's socket URL (it carries no token: ``Client.open`` signs in with an auth frame)."""
        base = self.urls[gateway].replace("http://", "ws://")
        return f"{base}/v1/chat/ws?channel={channel}"


@pytest.fixture(scope="module")
def chat(backbone: Backbone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chat]:
    data = tmp_path_factory.mktemp("chat")
    s = platform_settings(backbone, data, chat={"user_messages_per_window": RELAXED,
                                                "moderator_messages_per_window": RELAXED})
    ports = [s.gateway.port, free_port()]
    chat = Chat(s, [f"http://127.0.0.1:{p}" for p in ports], data)
    chat.start_processors()
    try:
        gw = [s.with_section("gateway", port=p) for p in ports]
        with run_service(gw[0], "gateway", data / "gateway-a.log") as a, \
                run_service(gw[1], "gateway", data / "gateway-b.log") as b:
            wait_healthy(chat.urls[0], a, data / "gateway-a.log")
            wait_healthy(chat.urls[1], b, data / "gateway-b.log")
            yield chat
    finally:
        chat.stop_processors()


@pytest.fixture
def strict_url(chat: Chat) -> Iterator[str]:
    """A third gateway on the same Valkey and log (in this process), with the default rate limit and no ML filter."""
    default = ChatSettings()
    s = chat.settings.with_section("chat", user_messages_per_window=default.user_messages_per_window,
                                   moderator_messages_per_window=default.moderator_messages_per_window,
                                   ml_filter=False).with_section("gateway", port=free_port())
    with serve_app(create_app(s), s.gateway.port) as url:
        yield url


def _ws(url: str, channel: str) -> str:
    return url.replace("http://", "ws://") + f"/v1/chat/ws?channel={channel}"


async def _user(chat: Chat, prefix: str = "u") -> tuple[str, str, str]:
    name, password = f"{prefix}_{uuid.uuid4().hex[:10]}", "correct horse battery"
    async with httpx.AsyncClient(base_url=chat.urls[0]) as c:
        r = await c.post("/v1/users", json={"username": name, "password": password})
        assert r.status_code == 201, r.text
        r = await c.post("/v1/auth/login", json={"username": name, "password": password})
        return r.json()["user"]["id"], name, r.json()["access_token"]


async def _room(chat: Chat) -> tuple[str, str, str, str]:
    """A channel and its broadcaster: (channel id, name, owner id, owner token)."""
    owner_id, _, token = await _user(chat, "caster")
    async with httpx.AsyncClient(base_url=chat.urls[0]) as c:
        r = await c.post("/v1/channels", headers={"Authorization": f"Bearer {token}"},
                         json={"name": f"room_{uuid.uuid4().hex[:10]}"})
        assert r.status_code == 201, r.text
        return r.json()["id"], r.json()["name"], owner_id, token


async def _moderate(chat: Chat, room: str, token: str, **body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=chat.urls[1]) as c:
        return await c.post(f"/v1/chat/{room}/moderate", headers={"Authorization": f"Bearer {token}"}, json=body)


async def _folded(chat: Chat, view: str, field: str, timeout_s: float = 30.0) -> None:
    """Wait until the processors have folded an event into a hash view (bounded)."""
    client = aioredis.Redis.from_url(chat.settings.valkey.url)
    try:
        await eventually_async(lambda: client.hexists(f"{chat.settings.valkey.key_prefix}{view}", field),
                               timeout_s, f"{field} in {view}")
    finally:
        await client.aclose()


class Client:
    """A WebSocket chat client that splits coalesced frames into messages."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.inbox: list[dict[str, Any]] = []
        self.connected: dict[str, Any] = {}

    @classmethod
    async def open(cls, url: str, token: str | None = None) -> Client:
        """A socket to ``url``, signed in with ``token`` (an auth frame) when given: ``connected["user"]`` is who."""
        client = cls(await connect(url, max_size=2**20))
        if token:
            await client.ws.send(json.dumps({"type": "auth", "token": token}))
        client.connected = await client.next("CONNECTED")
        if token:
            client.connected["user"] = (await client.next("AUTHENTICATED"))["user"]
        return client

    def _take(self, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        for i, m in enumerate(self.inbox):
            if wanted(m):
                return self.inbox.pop(i)
        return None

    async def next(self, kind: str | None = None, timeout: float = 10.0, where: Any = None,
                   **match: Any) -> dict[str, Any]:
        """The first message (read so far or next) of ``kind`` with these field values."""
        def wanted(m: dict[str, Any]) -> bool:
            return (kind is None or m["type"] == kind) and all(m.get(k) == v for k, v in match.items()) \
                and (where is None or where(m))

        async def received() -> dict[str, Any] | None:
            """The message, reading what arrives until the socket is quiet for a moment."""
            found = self._take(wanted)
            while found is None:
                try:  # cancelling recv() loses nothing (websockets' asyncio client)
                    raw = await asyncio.wait_for(self.ws.recv(), RECV_SLICE_S)
                except TimeoutError:
                    return None
                self.inbox.extend(json.loads(line) for line in str(raw).split("\n"))
                found = self._take(wanted)
            return found

        try:
            return await eventually_async(received, timeout, f"a {kind or 'message'} with {match}", every_s=0)
        except Timeout as exc:
            raise AssertionError(f"{exc}; got {self.inbox}") from None

    async def quiet(self, kind: str, seconds: float = 0.5) -> list[dict[str, Any]]:
        """Messages of ``kind`` that arrive within ``seconds``, with those already read."""
        try:
            while True:
                raw = await asyncio.wait_for(self.ws.recv(), seconds)
                self.inbox.extend(json.loads(line) for line in str(raw).split("\n"))
        except TimeoutError:
            pass
        return [m for m in self.inbox if m["type"] == kind]

    async def say(self, text: str, nonce: str | None = None) -> dict[str, Any]:
        """Send a message; the server's ACK or NOTICE for it."""
        nonce = nonce or uuid.uuid4().hex
        await self.ws.send(json.dumps({"type": "send", "text": text, "nonce": nonce}))
        return await self.next(None, where=lambda m: m["type"] in ("ACK", "NOTICE") and m.get("nonce") == nonce)

    async def close(self) -> None:
        await self.ws.close()


async def test_a_message_reaches_every_client_on_both_gateways(chat: Chat) -> None:
    room, _, owner_id, owner_token = await _room(chat)
    uid, uname, token = await _user(chat)
    sender = await Client.open(chat.ws(0, room), token)
    assert sender.connected["user"]["username"] == uname and sender.connected["room"]["channel_id"] == room
    assert any(e["code"] == "Kappa" for e in sender.connected["emotes"])
    viewers = [await Client.open(chat.ws(i % 2, room)) for i in range(6)]  # anonymous, both gateways
    caster = await Client.open(chat.ws(1, room), owner_token)
    assert caster.connected["user"]["badges"] == ["broadcaster"]

    ack = await sender.say("hello chat Kappa <3")
    assert ack["type"] == "ACK" and not ack["duplicate"]
    for client in [*viewers, caster, sender]:
        msg = await client.next("MESSAGE", id=ack["id"])
        assert msg["text"] == "hello chat Kappa <3" and msg["user"] == {"id": uid, "username": uname, "badges": []}
        assert msg["emotes"] == [{"id": "kappa", "code": "Kappa", "start": 11, "end": 15},
                                 {"id": "heart", "code": "<3", "start": 17, "end": 18}]
    ack = await caster.say("welcome!")
    assert (await viewers[0].next("MESSAGE", id=ack["id"]))["user"]["badges"] == ["broadcaster"]

    # Anonymous clients read only; a late joiner gets the recent messages.
    answer = await viewers[0].say("can I talk?")
    assert answer["type"] == "NOTICE" and answer["code"] == "login_required"
    late = await Client.open(chat.ws(1, room))
    assert [m["text"] for m in late.connected["recent"]] == ["hello chat Kappa <3", "welcome!"]
    for client in [*viewers, caster, sender, late]:
        await client.close()


async def test_rate_limit_dedup_and_slow_mode(chat: Chat, strict_url: str) -> None:
    room, _, _, owner_token = await _room(chat)
    _, _, token = await _user(chat)
    sender = await Client.open(_ws(strict_url, room), token)  # the default limit: one message a second
    watcher = await Client.open(chat.ws(1, room))
    first = await sender.say("one", nonce="n-1")
    assert first["type"] == "ACK"
    again = await sender.say("one", nonce="n-1")  # a resend: the same message, not a second one
    assert again == {"type": "ACK", "nonce": "n-1", "id": first["id"], "duplicate": True}
    limited = await sender.say("two")
    assert limited["type"] == "NOTICE" and limited["code"] == "rate_limited" and "too quickly" in limited["reason"]
    await watcher.next("MESSAGE", id=first["id"])
    assert await watcher.quiet("MESSAGE") == []

    # Slow mode longer than the rate window, so that it alone refuses "four".
    r = await _moderate(chat, room, owner_token, action="set_mode", slow_mode_s=3)
    assert r.status_code == 200 and r.json()["settings"]["slow_mode_s"] == 3
    state = await watcher.next("ROOMSTATE")
    assert state["settings"]["slow_mode_s"] == 3
    await asyncio.sleep(3.1)  # slow mode counts from the last message sent ("one")
    assert (await sender.say("three"))["type"] == "ACK"
    await asyncio.sleep(1.1)  # past the rate window, still within slow mode
    slow = await sender.say("four")
    assert slow["code"] == "slow_mode" and "slow mode" in slow["reason"]
    caster = await Client.open(_ws(strict_url, room), owner_token)
    assert (await caster.say("broadcasters are exempt"))["type"] == "ACK"
    assert (await _moderate(chat, room, owner_token, action="set_mode", slow_mode_s=0)).status_code == 200
    for c in (sender, watcher, caster):
        await c.close()


async def test_a_refused_message_takes_no_slot_and_a_moderator_gets_the_moderator_limit(chat: Chat,
                                                                                        strict_url: str) -> None:
    """The rate limit's slot is taken in the same round trip as the state the rules read, and given back when
    the rules refuse; the moderator's limit is chosen in that round trip from the room's roles."""
    room, _, _, owner_token = await _room(chat)
    _, _, token = await _user(chat)
    mod_id, _, mod_token = await _user(chat, "mod")
    r = await _moderate(chat, room, owner_token, action="set_mode", banned_words=["spoiler"])
    assert r.status_code == 200
    sender = await Client.open(_ws(strict_url, room), token)  # the default limit: one message a second
    assert (await sender.say("a spoiler"))["code"] == "banned_word"
    assert (await sender.say("no spoilers here"))["type"] == "ACK"  # the refused one counted for nothing
    assert (await sender.say("and more"))["code"] == "rate_limited"

    assert (await _moderate(chat, room, owner_token, action="mod", user=mod_id)).status_code == 200
    mod = await Client.open(_ws(strict_url, room), mod_token)

    async def burst() -> bool:
        answers = [await mod.say(f"mod says {i}") for i in range(3)]
        if all(a["type"] == "ACK" for a in answers):
            return True
        await asyncio.sleep(1.1)  # the role is not in the view yet: start a new window
        return False

    await eventually_async(burst, 30, "three messages within a second from a moderator", every_s=0)
    for c in (sender, mod):
        await c.close()


async def test_ban_timeout_delete_reach_clients_at_once(chat: Chat) -> None:
    room, name, _, owner_token = await _room(chat)
    troll_id, troll_name, troll_token = await _user(chat, "troll")
    mod_id, _, mod_token = await _user(chat, "mod")
    troll = await Client.open(chat.ws(0, room), troll_token)
    watchers = [await Client.open(chat.ws(i, room)) for i in (0, 1)]

    # Only the broadcaster and moderators moderate; the broadcaster hands out the role.
    r = await _moderate(chat, room, mod_token, action="ban", user=troll_name)
    assert r.status_code == 403
    assert (await _moderate(chat, room, owner_token, action="mod", user=mod_id)).status_code == 200
    r = await _moderate(chat, room, troll_token, action="delete_message", message_id=str(uuid.uuid4()))
    assert r.status_code == 403

    said = await troll.say("spam spam")
    for w in watchers:
        await w.next("MESSAGE", id=said["id"])
    r = await _moderate(chat, name, mod_token, action="delete_message", message_id=said["id"])
    assert r.status_code == 200, r.text
    for w in watchers:
        assert (await w.next("CLEARMSG"))["message_id"] == said["id"]
    late = await Client.open(chat.ws(1, room))
    assert said["id"] not in [m["id"] for m in late.connected["recent"]]

    r = await _moderate(chat, room, mod_token, action="timeout", user=troll_id, duration_s=2, reason="calm down")
    assert r.status_code == 200 and r.json()["duration_s"] == 2
    for w in watchers:
        clear = await w.next("CLEARCHAT")
        assert clear["user_id"] == troll_id and clear["duration_s"] == 2
    answer = await troll.say("let me talk")
    assert answer["code"] == "timed_out" and "timed out" in answer["reason"]
    await asyncio.sleep(2.2)  # the 2 s timeout under test runs out (shorter would race the first refusal)
    assert (await troll.say("I'm back"))["type"] == "ACK"

    r = await _moderate(chat, room, mod_token, action="ban", user=troll_name, reason="spam")
    assert r.status_code == 200
    for w in watchers:
        assert (await w.next("CLEARCHAT"))["duration_s"] is None
    assert (await troll.say("hello?"))["code"] == "banned"
    r = await _moderate(chat, room, mod_token, action="ban", user=mod_id)
    assert r.status_code == 403 and "other moderators" in r.json()["detail"]
    assert (await _moderate(chat, room, owner_token, action="unban", user=troll_id)).status_code == 200
    assert (await troll.say("thanks"))["type"] == "ACK"

    async with httpx.AsyncClient(base_url=chat.urls[0]) as c:
        r = await c.get(f"/v1/chat/{room}/moderation-log", headers={"Authorization": f"Bearer {owner_token}"})
    assert r.status_code == 200
    actions = [a["action"] for a in r.json()["actions"]]
    assert actions == ["UserUnbanned", "UserBanned", "UserTimedOut", "ChatRoleChanged"]
    for c in (troll, *watchers, late):
        await c.close()


async def test_followers_subscribers_and_emote_only_modes(chat: Chat) -> None:
    room, _, _, owner_token = await _room(chat)
    fan_id, _, fan_token = await _user(chat, "fan")
    _, _, other_token = await _user(chat)
    fan = await Client.open(chat.ws(0, room), fan_token)
    other = await Client.open(chat.ws(1, room), other_token)

    assert (await _moderate(chat, room, owner_token, action="set_mode", followers_only_min=0)).status_code == 200
    assert (await fan.say("hi"))["code"] == "followers_only"
    serde = make_serde(chat.settings)
    producer = EventProducer(chat.settings.kafka, serde)
    try:
        now = int(time.time() * 1000)
        await producer.send(Followed(occurred_at=now, follower_id=fan_id, channel_id=room, notifications_enabled=True),
                            f"{fan_id}:{room}")
        await _folded(chat, f"view:follows:{room}", fan_id)
        assert (await fan.say("following now"))["type"] == "ACK"
        assert (await other.say("me too?"))["code"] == "followers_only"

        r = await _moderate(chat, room, owner_token, action="set_mode", followers_only_min=None,
                            subscribers_only=True)
        assert r.json()["settings"] == {"slow_mode_s": 0, "subscribers_only": True, "followers_only_min": None,
                                        "emote_only": False}
        assert (await fan.say("sub only?"))["code"] == "subscribers_only"
        await producer.send(SubscriptionStarted(
            occurred_at=now, subscription_id=str(uuid.uuid4()), user_id=fan_id, channel_id=room, tier="TIER_2",
            expires_at=now + 30 * 86_400_000, is_gift=False, gifted_by_user_id=None, amount_minor=999,
            currency="USD", payment_ref="test"), f"{fan_id}:{room}")
        await _folded(chat, f"view:subs:{room}", fan_id)
        ack = await fan.say("subscribed PogChamp")
        assert ack["type"] == "ACK"
        assert (await other.next("MESSAGE", id=ack["id"]))["user"]["badges"] == ["subscriber/2"]
    finally:
        await asyncio.to_thread(producer.close, 5.0)
        serde.close()

    assert (await _moderate(chat, room, owner_token, action="set_mode", subscribers_only=False,
                            emote_only=True)).status_code == 200
    assert (await fan.say("words"))["code"] == "emote_only"
    assert (await other.say("Kappa Kappa"))["type"] == "ACK"
    await fan.close()
    await other.close()


async def test_banned_words_and_the_ml_filter(chat: Chat) -> None:
    room, _, _, owner_token = await _room(chat)
    _, _, token = await _user(chat)
    sender = await Client.open(chat.ws(0, room), token)
    watcher = await Client.open(chat.ws(1, room))
    r = await _moderate(chat, room, owner_token, action="set_mode", banned_words=["Spoiler", "rickroll"])
    assert r.status_code == 200 and r.json()["banned_words"] == ["rickroll", "spoiler"]
    assert (await sender.say("big SPOILER ahead"))["code"] == "banned_word"
    assert (await sender.say("spoilers are fine as a longer word"))["type"] == "ACK"
    filtered = await sender.say("you are a fucking idiot")
    assert filtered["type"] == "NOTICE" and filtered["code"] == "filtered"
    ok = await sender.say("what a great play, well done")
    assert ok["type"] == "ACK"
    got = [m["text"] for m in await watcher.quiet("MESSAGE", 1.0)]
    assert got == ["spoilers are fine as a longer word", "what a great play, well done"]
    await sender.close()
    await watcher.close()


async def test_bad_input_gets_an_error_and_never_breaks_the_room(chat: Chat) -> None:
    room, _, _, _ = await _room(chat)
    _, _, token = await _user(chat)
    client = await Client.open(chat.ws(0, room), token)
    watcher = await Client.open(chat.ws(1, room))
    await client.ws.send(b"\x00\x01binary")
    assert (await client.next("ERROR"))["code"] == "binary_not_supported"
    await client.ws.send("{not json")
    assert (await client.next("ERROR"))["code"] == "invalid_json"
    await client.ws.send(json.dumps({"type": "subscribe_to_everything"}))
    assert (await client.next("ERROR"))["code"] == "unknown_type"
    await client.ws.send(json.dumps([1, 2, 3]))
    assert (await client.next("ERROR"))["code"] == "invalid_frame"
    await client.ws.send(json.dumps({"type": "send", "text": "x" * 20_000}))
    assert (await client.next("ERROR"))["code"] == "frame_too_large"
    await client.ws.send(json.dumps({"type": "send", "text": 5}))
    assert (await client.next("ERROR"))["code"] == "invalid_frame"
    answer = await client.say("y" * 501)
    assert answer["code"] == "too_long"
    await client.ws.send(json.dumps({"type": "ping"}))
    await client.next("PONG")

    # Script in a message is text: delivered byte for byte, never interpreted by the server.
    script = "<script>alert('x')</script> <img src=x onerror=alert(1)>"
    ack = await client.say(script)
    assert ack["type"] == "ACK"
    assert (await watcher.next("MESSAGE", id=ack["id"]))["text"] == script

    # A frame over the server's hard limit closes that one socket (1009); the room carries on.
    huge = await Client.open(chat.ws(0, room), token)
    await huge.ws.send("z" * 100_000)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await huge.next("ERROR", timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    ack = await client.say("still here")
    assert (await watcher.next("MESSAGE", id=ack["id"]))["text"] == "still here"

    # A wrong room, a bad token or a token in the URL: an ERROR frame saying so, then a 44xx close.
    for url, auth, code in ((chat.ws(1, str(uuid.uuid4())), None, 4404), (chat.ws(1, room), "not-a-jwt", 4401),
                            (chat.urls[1].replace("http", "ws") + "/v1/chat/ws", None, 4400),
                            (f"{chat.ws(1, room)}&token={token}", None, 4400)):
        ws = await connect(url)
        if auth:
            assert json.loads(str(await ws.recv()))["type"] == "CONNECTED"
            await ws.send(json.dumps({"type": "auth", "token": auth}))
        err = json.loads(str(await ws.recv()))
        assert err["type"] == "ERROR"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code
    await client.close()
    await watcher.close()


async def test_history_keeps_what_was_sent_while_the_archiver_was_down(chat: Chat) -> None:
    room, name, _, owner_token = await _room(chat)
    users = [await _user(chat) for _ in range(3)]
    clients = [await Client.open(chat.ws(i % 2, room), token) for i, (_, _, token) in enumerate(users)]
    chat.stop_processors()  # the archiving agent runs in the processors
    try:
        sent: list[dict[str, Any]] = []
        for round_ in range(4):
            for i, client in enumerate(clients):
                ack = await client.say(f"round {round_} from {i}")
                assert ack["type"] == "ACK", ack
                sent.append({"id": ack["id"], "text": f"round {round_} from {i}"})
        deleted = sent[5]["id"]
        r = await _moderate(chat, room, owner_token, action="delete_message", message_id=deleted)
        assert r.status_code == 200
    finally:
        chat.start_processors()
    url = f"{chat.urls[1]}/v1/chat/{name}/messages"
    async with httpx.AsyncClient() as c:
        async def archived() -> list[dict[str, Any]]:
            r = await c.get(url, params={"around_timestamp": int(time.time() * 1000), "before": 200})
            assert r.status_code == 200, r.text
            return r.json()["messages"]  # type: ignore[no-any-return]
        async def all_archived() -> list[dict[str, Any]] | None:
            got = await archived()
            return got if len(got) >= len(sent) - 1 else None
        got = await eventually_async(all_archived, 30, "every message but the deleted one archived", every_s=0.5)
        expected = [m for m in sent if m["id"] != deleted]
        assert [m["message_id"] for m in got] == [m["id"] for m in expected]  # in order, the deleted one gone
        assert [m["text"] for m in got] == [m["text"] for m in expected]
        # A window around the middle message: the messages at or before it, and after it, in order.
        middle = got[5]
        r = await c.get(url, params={"around_timestamp": middle["sent_at_ms"], "before": 2, "after": 2})
        window = r.json()["messages"]
        at_or_before = [m for m in got if m["sent_at_ms"] <= middle["sent_at_ms"]][-2:]
        after = [m for m in got if m["sent_at_ms"] > middle["sent_at_ms"]][:2]
        assert [m["message_id"] for m in window] == [m["message_id"] for m in at_or_before + after]
    for client in clients:
        await client.close()

"""EventSub webhooks end to end: a real gateway (in a thread), the processors as a real
`glasscast run processors` child (its EventSub dispatcher delivers), the session broker and
Valkey, and a real HTTP receiver in the test on a free 127.0.0.1 port.

The receiver checks the challenge and every signature with its own HMAC (``hmac`` and
``hashlib`` here, never the platform's code), and records what arrives; the tests produce the
source events (StreamStarted, StreamEnded, Followed) straight onto the log with EventProducer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.embedded.process import free_port
from infra.embedded.threaded import serve_app
from infra.settings import Settings
from schemas.record import Record
from schemas.records.social import Followed
from schemas.records.stream import StreamEnded, StreamStarted
from tests.conftest import wait_processors_assigned
from tests.factories import Backbone, platform_settings
from tests.servers import run_service
from tests.waiting import eventually
from topics.consumer import EventConsumer
from topics.producer import EventProducer
from topics.runtime import make_serde

pytestmark = pytest.mark.integration

SECRET = "receiver-secret-0123456789"
EVENTSUB = {"allow_private_callbacks": True, "max_attempts": 4, "retry_initial_s": 0.2, "retry_max_s": 0.5,
            "revoke_after_failures": 3, "verification_timeout_s": 5.0, "delivery_timeout_s": 5.0}


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    signature_ok: bool

    @property
    def type(self) -> str:
        return self.headers.get("twitch-eventsub-message-type", "")

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver: answers challenges, fails on request, checks every signature independently."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    fail_next: dict[str, int] = field(default_factory=dict)  # path -> how many notifications to answer 500
    always_fail: set[str] = field(default_factory=set)
    wrong_challenge: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        expected = "sha256=" + hmac.new(
            SECRET.encode(), headers.get("twitch-eventsub-message-id", "").encode()
            + headers.get("twitch-eventsub-message-timestamp", "").encode() + body, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(expected, headers.get("twitch-eventsub-message-signature", ""))
        with self.lock:
            self.received.append(Received(path, headers, body, ok))
            if headers.get("twitch-eventsub-message-type") == "webhook_callback_verification":
                challenge = json.loads(body)["challenge"]
                return 200, (b"not-" if path in self.wrong_challenge else b"") + challenge.encode()
            if path in self.always_fail:
                return 500, b"down"
            if self.fail_next.get(path, 0) > 0:
                self.fail_next[path] -= 1
                return 500, b"flaky"
            return 204, b""


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            status, out = rec.answer(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@dataclass
class Hooks:
    settings: Settings
    url: str  # the gateway that takes private callbacks (the test setting)
    strict_url: str  # a gateway with the default: https and public addresses only
    log: Path


@pytest.fixture(scope="module")
def hooks(backbone: Backbone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hooks]:
    from gateways.app import create_app

    data = tmp_path_factory.mktemp("eventsub")
    s = platform_settings(backbone, data, eventsub=EVENTSUB)
    strict = s.with_section("eventsub", allow_private_callbacks=False).with_section("gateway", port=free_port())
    log = data / "processors.log"
    with run_service(s, "processors", log) as proc:
        wait_processors_assigned(s, proc, log)
        with serve_app(create_app(s), s.gateway.port) as url, serve_app(create_app(strict), strict.gateway.port) as su:
            yield Hooks(s, url, su, log)


def signup(url: str) -> tuple[str, str, str]:
    """(user id, username, token) of a fresh account."""
    name = f"u{uuid.uuid4().hex[:12]}"
    r = httpx.post(f"{url}/v1/users", json={"username": name, "password": "pw-123456789"})
    assert r.status_code == 201, r.text

    def login() -> dict[str, Any] | None:  # the account signs in once the processors folded its registration
        r = httpx.post(f"{url}/v1/auth/login", json={"username": name, "password": "pw-123456789"})
        assert r.status_code in (200, 401), r.text
        return r.json() if r.status_code == 200 else None

    body: dict[str, Any] = eventually(login, 30, f"{name} signed in", every_s=0.1)
    return body["user"]["id"], name, body["access_token"]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_channel(url: str, token: str) -> str:
    r = httpx.post(f"{url}/v1/channels", json={"name": f"c{uuid.uuid4().hex[:12]}"}, headers=auth(token))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def subscribe(url: str, token: str, type_: str, version: str, condition: dict[str, str], callback: str,
              secret: str = SECRET) -> httpx.Response:
    return httpx.post(f"{url}/v1/eventsub/subscriptions", headers=auth(token), json={
        "type": type_, "version": version, "condition": condition,
        "transport": {"method": "webhook", "callback": callback, "secret": secret}})


def status_of(url: str, token: str, sub_id: str) -> str | None:
    r = httpx.get(f"{url}/v1/eventsub/subscriptions", headers=auth(token))
    assert r.status_code == 200, r.text
    return next((s["status"] for s in r.json()["data"] if s["id"] == sub_id), None)


def wait_status(url: str, token: str, sub_id: str, status: str) -> None:
    eventually(lambda: status_of(url, token, sub_id) == status, 30, f"subscription {sub_id} {status}")


def produce(s: Settings, record: Record, key: str) -> None:
    serde = make_serde(s)
    producer = EventProducer(s.kafka, serde)
    try:
        producer.send_sync(record, key)
    finally:
        producer.close(10)
        serde.close()


def now_ms() -> int:
    return int(time.time() * 1000)


def test_verification_and_signed_notifications(hooks: Hooks, receiver: Receiver) -> None:
    user_id, _, token = signup(hooks.url)
    channel = new_channel(hooks.url, token)
    follower_id, follower_name, _ = signup(hooks.url)

    r = subscribe(hooks.url, token, "stream.online", "1", {"broadcaster_user_id": channel}, f"{receiver.url}/online")
    assert r.status_code == 202, r.text
    online = r.json()["data"][0]
    assert online["status"] == "webhook_callback_verification_pending"
    assert online["transport"] == {"method": "webhook", "callback": f"{receiver.url}/online"}
    assert "secret" not in r.text and SECRET not in r.text
    wait_status(hooks.url, token, online["id"], "enabled")
    challenge = receiver.at("/online")[0]
    assert challenge.type == "webhook_callback_verification" and challenge.signature_ok
    assert challenge.json["subscription"]["id"] == online["id"]

    r = subscribe(hooks.url, token, "channel.follow", "2",
                  {"broadcaster_user_id": channel, "moderator_user_id": user_id}, f"{receiver.url}/follow")
    assert r.status_code == 202, r.text
    follow = r.json()["data"][0]
    wait_status(hooks.url, token, follow["id"], "enabled")

    stream_id = str(uuid.uuid4())
    produce(hooks.settings, StreamStarted(occurred_at=now_ms(), stream_id=stream_id, channel_id=channel,
                                          ingest_host="test"), channel)
    produce(hooks.settings, Followed(occurred_at=now_ms(), follower_id=follower_id, channel_id=channel),
            f"{follower_id}:{channel}")

    note = eventually(lambda: [x for x in receiver.at("/online") if x.type == "notification"], 30,
                      "the stream.online notification")[0]
    assert note.signature_ok
    assert note.headers["twitch-eventsub-subscription-type"] == "stream.online"
    assert note.headers["twitch-eventsub-subscription-version"] == "1"
    assert note.headers["twitch-eventsub-message-retry"] == "0"
    assert note.headers["twitch-eventsub-message-timestamp"].endswith("Z")
    assert note.json["subscription"]["id"] == online["id"]
    assert note.json["event"]["id"] == stream_id
    assert note.json["event"]["broadcaster_user_id"] == channel
    assert note.json["event"]["type"] == "live"

    fnote = eventually(lambda: [x for x in receiver.at("/follow") if x.type == "notification"], 30,
                       "the channel.follow notification")[0]
    assert fnote.signature_ok
    assert fnote.headers["twitch-eventsub-subscription-type"] == "channel.follow"
    event = fnote.json["event"]
    assert event["user_id"] == follower_id and event["user_login"] == follower_name.lower()
    assert event["broadcaster_user_id"] == channel and event["followed_at"].endswith("Z")
    assert all(x.signature_ok for x in receiver.received)

    # The secret is nowhere on the topic in clear, nor in the processors' log.
    serde = make_serde(hooks.settings)
    consumer = EventConsumer(hooks.settings.kafka, serde, ["eventsub"], wake_on_doorbell=False)
    try:
        consumer.assign("beginning")
        seen: list[str] = []
        eventually(lambda: (seen.extend(repr(e.value) for e in consumer.consume(1000, 0.2)),
                            consumer.caught_up())[1], 30, "the end of the eventsub topic")
    finally:
        consumer.close()
        serde.close()
    assert any(online["id"] in v for v in seen)
    assert not any(SECRET in v for v in seen)
    assert SECRET not in hooks.log.read_text(errors="replace")

    r = httpx.delete(f"{hooks.url}/v1/eventsub/subscriptions", params={"id": online["id"]}, headers=auth(token))
    assert r.status_code == 204, r.text
    assert status_of(hooks.url, token, online["id"]) is None


def test_retries_then_revocation(hooks: Hooks, receiver: Receiver) -> None:
    _, _, token = signup(hooks.url)
    channel = new_channel(hooks.url, token)
    r = subscribe(hooks.url, token, "stream.offline", "1", {"broadcaster_user_id": channel}, f"{receiver.url}/flaky")
    assert r.status_code == 202, r.text
    sub_id = r.json()["data"][0]["id"]
    wait_status(hooks.url, token, sub_id, "enabled")

    def ended() -> StreamEnded:
        t = now_ms()
        return StreamEnded(occurred_at=t, stream_id=str(uuid.uuid4()), channel_id=channel, started_at=t - 1000,
                           duration_ms=1000)

    receiver.fail_next["/flaky"] = 2  # under the revocation limit (3 in a row): the third attempt succeeds
    produce(hooks.settings, ended(), channel)
    attempts = eventually(lambda: (n := [x for x in receiver.at("/flaky") if x.type == "notification"])
                          and len(n) >= 3 and n, 30, "three attempts of one notification")
    assert len({a.headers["twitch-eventsub-message-id"] for a in attempts}) == 1
    assert [a.headers["twitch-eventsub-message-retry"] for a in attempts] == ["0", "1", "2"]
    assert len({a.body for a in attempts}) == 1 and all(a.signature_ok for a in attempts)
    assert status_of(hooks.url, token, sub_id) == "enabled"

    receiver.always_fail.add("/flaky")
    produce(hooks.settings, ended(), channel)
    wait_status(hooks.url, token, sub_id, "notification_failures_exceeded")
    revocation = eventually(lambda: [x for x in receiver.at("/flaky") if x.type == "revocation"], 30,
                            "the revocation message")[0]
    assert revocation.signature_ok
    assert revocation.json["subscription"]["status"] == "notification_failures_exceeded"
    failing = [x for x in receiver.at("/flaky") if x.type == "notification"][3:]
    assert len(failing) == 3 and len({a.headers["twitch-eventsub-message-id"] for a in failing}) == 1


def test_a_wrong_challenge_fails_verification(hooks: Hooks, receiver: Receiver) -> None:
    _, _, token = signup(hooks.url)
    channel = new_channel(hooks.url, token)
    receiver.wrong_challenge.add("/wrong")
    r = subscribe(hooks.url, token, "channel.update", "2", {"broadcaster_user_id": channel}, f"{receiver.url}/wrong")
    assert r.status_code == 202, r.text
    wait_status(hooks.url, token, r.json()["data"][0]["id"], "webhook_callback_verification_failed")


def test_bad_subscriptions_are_refused(hooks: Hooks, receiver: Receiver) -> None:
    _, _, token = signup(hooks.url)
    channel = new_channel(hooks.url, token)
    _, _, other = signup(hooks.url)
    cond = {"broadcaster_user_id": channel}

    r = subscribe(hooks.url, token, "channel.ban", "1", cond, f"{receiver.url}/x")
    assert r.status_code == 400 and "supported: stream.online" in r.json()["detail"], r.text
    r = subscribe(hooks.strict_url, token, "stream.online", "1", cond, "http://example.com/hook")
    assert r.status_code == 400 and "https" in r.json()["detail"], r.text
    for private in ("https://127.0.0.1/hook", "https://10.1.2.3/hook", "https://169.254.169.254/hook",
                    "https://[::1]/hook", f"{receiver.url}/x"):
        r = subscribe(hooks.strict_url, token, "stream.online", "1", cond, private)
        assert r.status_code == 400, (private, r.text)
    r = subscribe(hooks.url, token, "stream.online", "1", cond, f"{receiver.url}/x", secret="short")
    assert r.status_code == 400 and "10 to 100" in r.json()["detail"], r.text
    assert "short" not in r.text
    r = subscribe(hooks.url, token, "stream.online", "2", cond, f"{receiver.url}/x")
    assert r.status_code == 400, r.text
    r = subscribe(hooks.url, other, "channel.chat.message", "1", cond, f"{receiver.url}/x")
    assert r.status_code == 403, r.text
    r = httpx.post(f"{hooks.url}/v1/eventsub/subscriptions", json={"type": "stream.online"})
    assert r.status_code == 401, r.text
    r = httpx.delete(f"{hooks.url}/v1/eventsub/subscriptions/{uuid.uuid4()}", headers=auth(token))
    assert r.status_code == 404, r.text


def test_events_logged_while_the_processors_are_down_are_delivered_after(
        backbone: Backbone, tmp_path: Path, receiver: Receiver) -> None:
    from gateways.app import create_app

    s = platform_settings(backbone, tmp_path / "data", eventsub=EVENTSUB)
    log = tmp_path / "processors.log"
    with serve_app(create_app(s), s.gateway.port) as url:
        with run_service(s, "processors", log) as proc:
            wait_processors_assigned(s, proc, log)
            _, _, token = signup(url)
            channel = new_channel(url, token)
            r = subscribe(url, token, "stream.online", "1", {"broadcaster_user_id": channel}, f"{receiver.url}/later")
            assert r.status_code == 202, r.text
            wait_status(url, token, r.json()["data"][0]["id"], "enabled")
        stream_id = str(uuid.uuid4())  # the processors are stopped: only the log has this
        produce(s, StreamStarted(occurred_at=now_ms(), stream_id=stream_id, channel_id=channel, ingest_host="t"),
                channel)
        assert not [x for x in receiver.at("/later") if x.type == "notification"]
        with run_service(s, "processors", log):
            notes = eventually(lambda: [x for x in receiver.at("/later") if x.type == "notification"], 60,
                               "the notification after the restart")
    assert notes[0].json["event"]["id"] == stream_id and notes[0].signature_ok
    # Platforms sharing the log (each test has its own) never verify each other's subscriptions: the
    # restarted dispatcher read every earlier SubscriptionCreated, and each callback was challenged once.
    with receiver.lock:
        challenged = [x.path for x in receiver.received if x.type == "webhook_callback_verification"]
    assert len(challenged) == len(set(challenged)), challenged

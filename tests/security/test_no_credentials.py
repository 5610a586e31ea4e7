"""Issue 13: no credential in any log, topic, archive or Valkey AOF after a full session.

The session runs on ``glasscast up`` as a newcomer would: two accounts (and a
wrong password), a channel, its stream key revealed, used by a real ffmpeg
publish and then rotated, playback tokens fetched and refreshed and used on
the HLS origin, chat over a socket signed in with an auth frame, and an old
client that still puts its JWT in the socket URL (uvicorn logs every socket
URL it accepts).  Then every topic is read through ``glasscast tail``, the
platform is stopped cleanly (the archive drained, Valkey's AOF flushed), and
every file of the data directory and the supervisor's output are searched
for each JWT, playback token (and each one's signature on its own), stream
key and password used; the logs also for the embedded Valkey's and registry's
own passwords.  Only ``secrets/`` (where the platform keeps its own secrets
by design) is left out; the encoder's own log (ffmpeg, on the creator's side)
is not the platform's.

While it runs, Valkey and the registry refuse clients without their password.
The redaction itself (infra/log_redaction.py) is checked on its own first.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import structlog
import websockets
from starlette.responses import PlainTextResponse
from websockets.asyncio.client import connect

from infra.embedded.credentials import embedded_secret, url_credentials, with_password, without_password
from infra.embedded.registry.auth import BasicAuth
from infra.launcher import GlasscastUp
from infra.log_redaction import redact
from infra.logs import configure_logging
from infra.runstate import read_state
from infra.settings import LogSettings
from media.testpattern import ffmpeg_push
from tests.integration.chat_client import Client
from tests.waiting import eventually

JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjMiLCJleHAiOjE5MDAwMDAwMDB9."
       "c2lnbmF0dXJlLW9mLXRoZS10b2tlbi1oZXJlLTEyMzQ1Njc4")
PLAYBACK = "eyJjIjoiY2gtMSIsImUiOjE5MDAwMDAwMDB9.bWFjLW9mLXRoZS1wbGF5YmFjay10b2tlbi0xMjM0NTY3OA"
STREAM_KEY = "live_" + "k" * 40
PLATFORM_ENV = {"GLASSCAST_CHAT_ML_FILTER": "false", "GLASSCAST_LADDER_MODE": "passthrough",
                "GLASSCAST_TRANSCODE_WORKERS": "1", "GLASSCAST_LOG_LEVEL": "INFO"}


# -- the redaction, on its own ------------------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    f'127.0.0.1:5555 - "WebSocket /v1/chat/ws?channel=abc&token={JWT}" [accepted]',
    f"HTTP Request: GET http://h/hls/s/source/00000001.m4s?_HLS_msn=3&token={PLAYBACK} 200",
    f"publishing rtmp://127.0.0.1:1935/live/{STREAM_KEY}",
    f"Authorization: Bearer {JWT}",
    '{"username": "u", "password": "hunter2-but-longer"}',
    "doorbell at redis://:valkey-pass-123@127.0.0.1:6379/0 and http://glasscast:reg-pass-456@127.0.0.1:8081",
    "login failed password=hunter2-but-longer key=abc123",
])
def test_redact_masks_every_kind_of_credential(line: str) -> None:
    clean = redact(line)
    for secret in (JWT, PLAYBACK, STREAM_KEY, "hunter2-but-longer", "valkey-pass-123", "reg-pass-456", "abc123",
                   JWT.rsplit(".", 1)[1], PLAYBACK.rsplit(".", 1)[1]):
        assert secret not in clean, clean
    assert "[redacted]" in clean


def test_redact_leaves_other_text_alone() -> None:
    line = ('GET /hls/0b0e/source/index.m3u8?_HLS_msn=12&_HLS_part=3&_HLS_skip=YES 200 channel=speedy '
            'key_prefix=gc: session_id=abc monkey=1 signal=15 stream 0b0e: GOP 4 stored')
    assert redact(line) == line


@pytest.fixture
def platform_logging() -> Iterator[io.StringIO]:
    """configure_logging writing to a buffer; the process's logging set-up is put back afterwards."""
    import sys

    root = logging.getLogger()
    handlers, level, config = root.handlers[:], root.level, structlog.get_config()
    named = [logging.getLogger(name) for name in ("uvicorn.error", "uvicorn.access", "httpx", "aiokafka", "faust",
                                                  "mode")]
    saved = [(logger, logger.level, logger.filters[:]) for logger in named]
    buffer, stderr = io.StringIO(), sys.stderr
    sys.stderr = buffer  # the handler configure_logging makes writes to the stderr of the moment
    try:
        configure_logging(LogSettings(level="INFO", format="json"), "test")
    finally:
        sys.stderr = stderr
    try:
        yield buffer
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**config)
        for logger, was, filters in saved:
            logger.setLevel(was)
            logger.filters[:] = filters


def test_uvicorn_and_platform_log_lines_leave_without_credentials(platform_logging: io.StringIO,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("uvicorn.error", "uvicorn.access"):  # a uvicorn server started earlier in this process with
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)  # access_log=False cut them off
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
    logging.getLogger("uvicorn.error").info('%s - "WebSocket %s" [accepted]', "127.0.0.1:40000",
                                            f"/v1/chat/ws?channel=speedy&token={JWT}")
    logging.getLogger("uvicorn.access").warning('%s - "%s %s HTTP/%s" %d', "127.0.0.1:40000", "GET",
                                                f"/hls/s/master.m3u8?token={PLAYBACK}", "1.1", 200)
    try:
        raise ValueError(f"cannot publish to rtmp://x/live/{STREAM_KEY}")
    except ValueError:
        logging.getLogger("glasscast.ingest").exception("session failed")
    structlog.get_logger("glasscast.test").info("login", password="hunter2-but-longer", token=JWT)
    out = platform_logging.getvalue()
    assert out.count("\n") == 4 and "channel=speedy" in out and "session failed" in out and "ValueError" in out
    for secret in (JWT, PLAYBACK, STREAM_KEY, "hunter2-but-longer"):
        assert secret not in out, out


def test_service_urls_carry_their_password_and_print_without_it(tmp_path: Path) -> None:
    password = embedded_secret(tmp_path, "valkey")
    assert embedded_secret(tmp_path, "valkey") == password and len(password) >= 40  # generated once, then kept
    assert stat.S_IMODE((tmp_path / "secrets" / "valkey.secret").stat().st_mode) == 0o600
    url = with_password("redis://127.0.0.1:6379/0", password)
    assert url_credentials(url) == ("", password) and without_password(url) == "redis://127.0.0.1:6379/0"
    assert password not in redact(f"connecting to {url}")
    assert url_credentials("http://127.0.0.1:8081") is None


async def test_the_registry_answers_only_with_its_credentials() -> None:
    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await PlainTextResponse("ok")(scope, receive, send)

    app = BasicAuth(ok, "glasscast", "s3cret-pass")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry") as client:
        for auth in (None, ("glasscast", "wrong"), ("other", "s3cret-pass")):
            r = await client.get("/subjects", auth=auth)
            assert r.status_code == 401 and r.json()["error_code"] == 401
            assert r.headers["www-authenticate"] == 'Basic realm="glasscast-registry"'
        assert (await client.get("/subjects", auth=("glasscast", "s3cret-pass"))).text == "ok"


# -- a full session on `glasscast up` ---------------------------------------------------------------------

def _credentials(session: dict[str, Any]) -> dict[str, str]:
    """What to search for, by label: each credential, and each token's signature on its own."""
    found = dict(session)
    for label, value in session.items():
        if label.startswith(("jwt", "playback")):
            found[f"{label} (signature)"] = value.rsplit(".", 1)[1]
    return found


def _session(up: GlasscastUp, tmp_path: Path) -> dict[str, str]:
    """Everything a creator and a viewer do, through the API, RTMP, HLS and chat; the credentials they used."""
    used: dict[str, str] = {}
    tag = secrets.token_hex(4)
    with httpx.Client(base_url=up.url, timeout=30) as http:
        for who in ("caster", "viewer"):
            used[f"password {who}"] = password = f"{who}-pw-{secrets.token_hex(8)}"
            r = http.post("/v1/users", json={"username": f"{who}_{tag}", "password": password})
            assert r.status_code == 201, r.text
        used["password wrong"] = wrong = f"wrong-pw-{secrets.token_hex(8)}"
        r = http.post("/v1/auth/login", json={"username": f"viewer_{tag}", "password": wrong})
        assert r.status_code == 401, r.text
        for who in ("caster", "viewer"):
            r = http.post("/v1/auth/login", json={"username": f"{who}_{tag}", "password": used[f"password {who}"]})
            assert r.status_code == 200, r.text
            used[f"jwt {who}"] = r.json()["access_token"]
        bearer = {"Authorization": f"Bearer {used['jwt caster']}"}
        r = http.post("/v1/channels", headers=bearer, json={"name": f"leak_{tag}", "title": "no leaks"})
        assert r.status_code == 201, r.text
        channel_id, used["stream key"] = str(r.json()["id"]), str(r.json()["stream_key"])
        assert http.get(f"/v1/channels/{channel_id}/stream-key", headers=bearer).json()["stream_key"] == \
            used["stream key"]

        push = ffmpeg_push(up.rtmp_url, used["stream key"], 4, size="320x240", log=tmp_path / "ffmpeg.log")
        assert push.wait(60) == 0, (tmp_path / "ffmpeg.log").read_text()

        def ended() -> str | None:
            lines = up.cli("tail", "stream.lifecycle", "--from-beginning", "--json", "--exit-at-end").splitlines()
            events = [json.loads(line) for line in lines]
            return next((str(e["value"]["stream_id"]) for e in events if e["type"] == "StreamEnded"), None)

        stream_id = eventually(ended, 60, "StreamEnded on stream.lifecycle", every_s=0.5)

        def playback() -> dict[str, Any] | None:
            r = http.get(f"/v1/streams/{stream_id}/playback")
            return r.json() if r.status_code == 200 else None  # type: ignore[no-any-return]

        used["playback token"] = token = str(eventually(playback, 60, "the playback answer", every_s=0.5)["token"])
        r = http.post(f"/v1/streams/{stream_id}/playback/refresh-token", json={"token": token})
        assert r.status_code == 200, r.text
        used["playback token refreshed"] = token = str(r.json()["token"])

        def segments() -> list[str]:
            vod = http.get(f"/hls/{stream_id}/source/vod.m3u8", params={"token": token})
            lines = vod.text.splitlines() if vod.status_code == 200 else []
            return [line for line in lines if line and not line.startswith("#")]

        segment = eventually(segments, 60, "the VOD playlist's segments", every_s=0.2)[0]  # "<n>.m4s?token=..."
        assert http.get(f"/hls/{stream_id}/source/{segment}").status_code == 200
        assert http.get(f"/hls/{stream_id}/master.m3u8", params={"token": token}).status_code == 200

        r = http.post(f"/v1/channels/{channel_id}/stream-key/regenerate", headers=bearer)
        assert r.status_code == 200, r.text
        used["stream key rotated"] = str(r.json()["stream_key"])
    asyncio.run(_chat(up.url.replace("http://", "ws://") + f"/v1/chat/ws?channel={channel_id}", used))
    return used


async def _chat(ws_url: str, used: dict[str, str]) -> None:
    """A signed-in sender and an anonymous watcher; then an old client with its JWT in the URL."""
    watcher = await Client.open(ws_url)
    sender = await Client.open(ws_url, used["jwt caster"])
    await sender.ws.send(json.dumps({"type": "send", "text": "anyone here?", "nonce": "n-1"}))
    ack = await sender.next(lambda m: m.get("type") != "MESSAGE" and m.get("nonce") == "n-1")
    assert ack["type"] == "ACK", ack
    await watcher.next(lambda m: m["type"] == "MESSAGE" and m.get("id") == ack["id"])
    # What the web app did before: uvicorn logs the URL as it accepts the socket, whatever happens next.
    async with connect(f"{ws_url}&token={used['jwt viewer']}") as legacy:
        try:
            async with asyncio.timeout(5):
                while True:
                    await legacy.recv()
        except (TimeoutError, websockets.ConnectionClosed):
            pass
    for client in (watcher, sender):
        await client.ws.close()


def _unauthenticated_clients_are_refused(data_dir: Path) -> None:
    state = read_state(data_dir)
    assert state is not None
    for url in (without_password(state.valkey_url), state.valkey_url.replace("@", "x@", 1)):
        client = redis.Redis.from_url(url, socket_timeout=5)
        try:
            with pytest.raises(redis.AuthenticationError):
                client.ping()
        finally:
            client.close()
    client = redis.Redis.from_url(state.valkey_url, socket_timeout=5)
    try:
        assert client.ping()
    finally:
        client.close()
    bare = httpx.get(f"{without_password(state.registry_url)}/subjects", timeout=10)
    assert bare.status_code == 401 and bare.headers["www-authenticate"].startswith("Basic")
    assert httpx.get(f"{state.registry_url}/subjects", timeout=10).status_code == 200


def _topics(up: GlasscastUp) -> dict[str, str]:
    """Every topic's records as `glasscast tail --json` prints them (internal ``_`` topics: in the archive)."""
    names = [line.split()[0] for line in up.cli("topics", "list").splitlines()[1:] if line.strip()]
    return {name: up.cli("tail", name, "--from-beginning", "--json", "--exit-at-end")
            for name in names if not name.startswith("_")}


def _files(data_dir: Path) -> Iterator[Path]:
    for path in sorted(data_dir.rglob("*")):
        if path.is_file() and not path.is_symlink() and "secrets" not in path.relative_to(data_dir).parts:
            yield path


@pytest.mark.integration
def test_no_credential_in_any_log_topic_archive_or_aof(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with GlasscastUp(data_dir, settings=PLATFORM_ENV) as up:
        used = _session(up, tmp_path)
        topics = _topics(up)
        _unauthenticated_clients_are_refused(data_dir)
    assert {"users", "channels", "stream.lifecycle", "chat.messages"} <= set(topics)
    assert any((data_dir / "archive").rglob("*.avro")), "the archive holds the topics' records"
    assert any((data_dir / "valkey").rglob("*.aof")), "Valkey's append-only file"

    credentials = _credentials(used)
    service_secrets = {f"{p.stem} secret": p.read_text().strip() for p in (data_dir / "secrets").glob("*.secret")}
    assert {"valkey secret", "registry secret", "jwt secret"} <= set(service_secrets)
    leaks: list[str] = []
    for path in [*_files(data_dir), up.log]:
        blob = path.read_bytes()
        is_log = path == up.log or path.suffix in (".log", ".out") or "logs" in path.parts
        for label, value in (credentials | service_secrets if is_log else credentials).items():
            if value.encode() in blob:
                leaks.append(f"{label} in {path}")
    for topic, records in topics.items():
        leaks += [f"{label} in topic {topic}" for label, value in credentials.items() if value in records]
    assert not leaks, "\n".join(leaks)

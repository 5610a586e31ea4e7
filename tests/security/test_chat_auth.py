"""Issue 13, chat sockets: the JWT never travels in the URL, and its expiry holds on an open socket.

Replayed against a running gateway (a real uvicorn socket) with the
processors, Valkey, broker and registry of the session.  The old client put
``?token=JWT`` in the socket URL, which uvicorn logs as it accepts the socket;
now the token comes in the first frame and a URL token is refused.  A socket
whose token expires is closed with 4401 "token expired" unless the client sent
a fresh token before then.  The log side (no token in any log line) is
tests/security/test_no_credentials.py's.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from gateways.auth import issue_token
from gateways.chat.frames import FrameError, parse_client_frame
from tests.conftest import Platform
from tests.integration.chat_client import Client

PASSWORD = "correct horse battery"
SHORT_TTL_S = 5  # a token that expires while the test watches (its slack covers a slow machine's auth round trip)


async def _user(client: httpx.AsyncClient, prefix: str) -> dict[str, Any]:
    """Sign up and log in: the login answer ({access_token, expires_in, user})."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    r = await client.post("/v1/users", json={"username": name, "password": PASSWORD})
    assert r.status_code == 201, r.text
    r = await client.post("/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def _room(platform: Platform) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A channel, its broadcaster's login and a viewer's login."""
    async with httpx.AsyncClient(base_url=platform.url, timeout=30) as client:
        caster, viewer = await _user(client, "caster"), await _user(client, "viewer")
        r = await client.post("/v1/channels", json={"name": f"room_{uuid.uuid4().hex[:10]}"},
                              headers={"Authorization": f"Bearer {caster['access_token']}"})
        assert r.status_code == 201, r.text
        return str(r.json()["id"]), caster, viewer


def _ws(platform: Platform, channel: str) -> str:
    return platform.url.replace("http://", "ws://") + f"/v1/chat/ws?channel={channel}"


def _short_token(platform: Platform, user: dict[str, Any]) -> str:
    auth = platform.settings.auth
    return issue_token(str(auth.jwt_secret), auth.jwt_issuer, user["user"]["id"], user["user"]["username"],
                       int(time.time()), SHORT_TTL_S)


async def _closed(client: Client, timeout_s: float = 30) -> tuple[int, str, list[dict[str, Any]]]:
    """Read until the server closes the socket: its close code and reason, and the frames it sent last."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await client.next(lambda m: False, timeout_s)
    assert closed.value.rcvd is not None, "the server did not send a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason, client.inbox


async def _auth(client: Client, token: str) -> dict[str, Any]:
    await client.ws.send(json.dumps({"type": "auth", "token": token}))
    return await client.next(lambda m: m["type"] in ("AUTHENTICATED", "ERROR"))


def test_the_auth_frame_carries_the_token_and_its_repr_hides_it() -> None:
    frame = parse_client_frame(json.dumps({"type": "auth", "token": "eyJ.header.sig"}), 8192)
    assert frame.type == "auth" and frame.token == "eyJ.header.sig" and "eyJ" not in repr(frame)
    for bad in ({"type": "auth"}, {"type": "auth", "token": ""}, {"type": "auth", "token": 7}):
        with pytest.raises(FrameError) as refused:
            parse_client_frame(json.dumps(bad), 8192)
        assert refused.value.code == "invalid_frame"


@pytest.mark.integration
async def test_a_token_in_the_url_is_refused_and_the_first_frame_signs_in(platform: Platform) -> None:
    channel, caster, viewer = await _room(platform)

    # The old way: the token in the URL (which uvicorn logs) is refused outright, with a reason.
    async with connect(f"{_ws(platform, channel)}&token={caster['access_token']}") as legacy:
        err = json.loads(str(await legacy.recv()))
        assert err["type"] == "ERROR" and err["code"] == "token_in_url" and '"type": "auth"' in err["reason"]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await legacy.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400

    # Anonymous sockets read only, as before.
    watcher = await Client.open(_ws(platform, channel))
    # The new way: CONNECTED (read only), then the auth frame makes the socket the broadcaster's.
    caster_ws = await Client.open(_ws(platform, channel))
    await caster_ws.ws.send(json.dumps({"type": "send", "text": "before signing in", "nonce": "n-0"}))
    assert (await caster_ws.next(lambda m: m.get("nonce") == "n-0"))["code"] == "login_required"
    answer = await _auth(caster_ws, caster["access_token"])
    assert answer["type"] == "AUTHENTICATED", answer
    assert answer["user"]["id"] == caster["user"]["id"] and answer["user"]["badges"] == ["broadcaster"]
    assert answer["expires_at_ms"] > time.time() * 1000
    await caster_ws.ws.send(json.dumps({"type": "send", "text": "hello room", "nonce": "n-1"}))
    ack = await caster_ws.next(lambda m: m.get("type") != "MESSAGE" and m.get("nonce") == "n-1")
    assert ack["type"] == "ACK", ack
    shown = await watcher.next(lambda m: m["type"] == "MESSAGE" and m.get("id") == ack["id"])
    assert shown["user"]["username"] == caster["user"]["username"]

    # Another user's token on a signed-in socket: refused, and the socket stays the broadcaster's.
    mismatch = await _auth(caster_ws, viewer["access_token"])
    assert mismatch["type"] == "ERROR" and mismatch["code"] == "user_mismatch"
    await caster_ws.ping()

    # Forged, and validly signed for an account that does not exist: ERROR, then 4401.
    auth = platform.settings.auth
    ghost = issue_token(str(auth.jwt_secret), auth.jwt_issuer, str(uuid.uuid4()), "ghost", int(time.time()), 600)
    for token, says in ((caster["access_token"][:-4] + "AAAA", "signature"), (ghost, "does not exist")):
        refused = await Client.open(_ws(platform, channel))
        await refused.ws.send(json.dumps({"type": "auth", "token": token}))
        code, reason, frames = await _closed(refused)
        assert code == 4401 and says in reason, (code, reason)
        assert [f["code"] for f in frames if f["type"] == "ERROR"] == ["unauthorized"]
    for client in (watcher, caster_ws):
        await client.ws.close()


@pytest.mark.integration
async def test_an_expired_token_closes_the_socket_unless_a_fresh_one_came(platform: Platform) -> None:
    channel, _, viewer = await _room(platform)
    short = _short_token(platform, viewer)
    refreshed = await Client.open(_ws(platform, channel))
    first = await _auth(refreshed, short)
    assert first["type"] == "AUTHENTICATED" and first["expires_at_ms"] <= (time.time() + SHORT_TTL_S) * 1000
    # A fresh token (the login's, an hour) before the short one expires moves the socket's expiry on.
    again = await _auth(refreshed, viewer["access_token"])
    assert again["type"] == "AUTHENTICATED" and again["expires_at_ms"] > first["expires_at_ms"]

    lapsing = await Client.open(_ws(platform, channel))
    assert (await _auth(lapsing, short))["type"] == "AUTHENTICATED"
    code, reason, frames = await _closed(lapsing, timeout_s=SHORT_TTL_S + 30)
    assert (code, reason) == (4401, "token expired")
    assert [f["code"] for f in frames if f["type"] == "ERROR"] == ["token_expired"]

    # The same short token has expired on the refreshed socket too, and it chats on.
    await refreshed.ws.send(json.dumps({"type": "send", "text": "still signed in", "nonce": "n-2"}))
    assert (await refreshed.next(lambda m: m.get("type") != "MESSAGE" and m.get("nonce") == "n-2"))["type"] == "ACK"
    await refreshed.ws.close()

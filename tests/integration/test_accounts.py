"""Command -> event -> view, end to end: the gateway on a socket, the Faust processors as a
child process, the embedded broker, registry and Valkey."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
import redis.asyncio as aioredis

from processors.rebuild import rebuild_views
from schemas.records.ops import DeadLetter
from tests.conftest import Platform
from tests.waiting import eventually_async
from topics.runtime import make_serde
from topics.tools import read_topic
from views.channels import hash_stream_key
from views.store import ViewStore

pytestmark = pytest.mark.integration


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def _signup(client: httpx.AsyncClient, username: str | None = None,
                  password: str = "correct horse battery") -> tuple[str, str, str]:
    username = username or _name("user")
    r = await client.post("/v1/users", json={"username": username, "password": password})
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    r = await client.post("/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return user_id, username, r.json()["access_token"]


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_register_login_create_and_read_channel(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.url) as client:
        username = _name("creator")
        r = await client.post("/v1/users", json={"username": username, "password": "pw-123456789",
                                                 "email": "creator@example.com"})
        assert r.status_code == 201
        body = r.json()
        assert set(body) == {"id", "username"} and body["username"] == username
        r = await client.post("/v1/auth/login", json={"username": username, "password": "pw-123456789"})
        assert r.status_code == 200
        login = r.json()
        assert login["token_type"] == "bearer" and login["expires_in"] == platform.settings.auth.jwt_ttl_s
        claims = jwt.decode(login["access_token"], options={"verify_signature": False})
        assert claims["sub"] == body["id"]

        name = _name("chan")
        r = await client.post("/v1/channels", headers=_auth(login["access_token"]),
                              json={"name": name, "title": "Speedrun practice", "category": "Games"})
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["stream_key"].startswith("live_") and created["rtmp_url"].startswith("rtmp://")
        assert {"id", "name", "stream_key", "rtmp_url"} <= set(created)

        r = await client.get(f"/v1/channels/{created['id']}")
        assert r.status_code == 200
        channel = r.json()
        assert channel["name"] == name and channel["title"] == "Speedrun practice"
        assert channel["category"] == "Games" and channel["owner_user_id"] == body["id"]
        assert "stream_key" not in channel and "stream_key_hash" not in channel
        assert (await client.get(f"/v1/channels/{name}")).json()["id"] == created["id"]


async def test_patch_and_rotate_stream_key(platform: Platform) -> None:
    s = platform.settings
    async with httpx.AsyncClient(base_url=platform.url) as client:
        _, _, token = await _signup(client)
        r = await client.post("/v1/channels", headers=_auth(token), json={"name": _name("chan")})
        created = r.json()
        r = await client.patch(f"/v1/channels/{created['id']}", headers=_auth(token),
                               json={"title": "New title", "tags": ["speedrun", "any-percent"]})
        assert r.status_code == 200, r.text
        assert r.json()["title"] == "New title" and r.json()["tags"] == ["speedrun", "any-percent"]
        assert r.json()["category"] is None

        r = await client.post(f"/v1/channels/{created['id']}/stream-key/regenerate", headers=_auth(token))
        assert r.status_code == 200
        new_key = r.json()["stream_key"]
        assert new_key != created["stream_key"]

    client_r = aioredis.Redis.from_url(s.valkey.url)
    views = ViewStore(client_r, s.valkey.key_prefix)
    try:
        assert await views.get_channel_by_key_hash(hash_stream_key(created["stream_key"])) is None
        found = await views.get_channel_by_key_hash(hash_stream_key(new_key))
        assert found is not None and found.id == created["id"]
    finally:
        await client_r.aclose()

    # Only hashes enter the log: no event carries either plaintext key.
    serde = make_serde(s)
    try:
        events = list(read_topic(s.kafka, serde, "channels", start="beginning", exit_at_end=True))
    finally:
        serde.close()
    assert any(e.key == created["id"] for e in events)
    text = repr([e.value for e in events])
    assert created["stream_key"] not in text and new_key not in text


async def test_names_stay_unique_under_concurrency(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.url, timeout=30) as client:
        username = _name("racer")
        answers = await asyncio.gather(*[
            client.post("/v1/users", json={"username": username.upper() if i % 2 else username,
                                           "password": "pw-123456789"}) for i in range(8)])
        codes = sorted(r.status_code for r in answers)
        assert codes == [201] + [409] * 7
        conflict = next(r for r in answers if r.status_code == 409)
        assert conflict.headers["content-type"] == "application/problem+json"
        assert "taken" in conflict.json()["detail"]

        _, _, token = await _signup(client)
        name = _name("chan")
        answers = await asyncio.gather(*[
            client.post("/v1/channels", headers=_auth(token), json={"name": name}) for _ in range(6)])
        assert sorted(r.status_code for r in answers) == [201] + [409] * 5


async def test_bad_input_gets_clear_4xx(platform: Platform) -> None:
    s = platform.settings
    async with httpx.AsyncClient(base_url=platform.url) as client:
        user_id, username, token = await _signup(client)
        cases: list[tuple[str, str, Any, dict[str, str], int, str]] = [
            ("POST", "/v1/users", b"{not json", {}, 400, "not valid JSON"),
            ("POST", "/v1/users", b"[1, 2]", {}, 400, "JSON object"),
            ("POST", "/v1/users", {"username": "ab", "password": "pw-123456789"}, {}, 422, "username"),
            ("POST", "/v1/users", {"username": _name("u")}, {}, 422, "'password' is required"),
            ("POST", "/v1/users", {"username": _name("u"), "password": "short"}, {}, 422, "at least"),
            ("POST", "/v1/users", {"username": username, "password": "pw-123456789"}, {}, 409, "taken"),
            ("POST", "/v1/users", {"username": _name("u"), "password": "pw-123456789", "admin": True},
             {}, 422, "unknown field 'admin'"),
            ("POST", "/v1/auth/login", {"username": username, "password": "wrong-password"}, {}, 401,
             "invalid username or password"),
            ("POST", "/v1/auth/login", {"username": _name("nobody"), "password": "whatever1"}, {}, 401,
             "invalid username or password"),
            ("POST", "/v1/channels", {"name": _name("c")}, {}, 401, "missing Authorization"),
            ("POST", "/v1/channels", {"name": _name("c")}, {"Authorization": "Basic abc"}, 401, "Bearer"),
            ("POST", "/v1/channels", {"name": "bad name!"}, _auth(token), 422, "'name'"),
            ("POST", "/v1/channels", {"name": _name("c"), "tags": ["ok", 5]}, _auth(token), 422, "tags"),
            ("GET", f"/v1/channels/{uuid.uuid4()}", None, {}, 404, "does not exist"),
        ]
        now = int(time.time())
        secret = str(s.auth.jwt_secret)
        expired = jwt.encode({"sub": user_id, "name": username, "iss": s.auth.jwt_issuer,
                              "iat": now - 7200, "exp": now - 3600}, secret, algorithm="HS256")
        forged = jwt.encode({"sub": user_id, "name": username, "iss": s.auth.jwt_issuer,
                             "iat": now, "exp": now + 3600}, "not-the-secret" * 4, algorithm="HS256")
        cases += [
            ("POST", "/v1/channels", {"name": _name("c")}, _auth(expired), 401, "expired"),
            ("POST", "/v1/channels", {"name": _name("c")}, _auth(forged), 401, "signature"),
            ("POST", "/v1/channels", {"name": _name("c")}, _auth("garbage.token.here"), 401, "invalid"),
        ]
        for method, path, body, headers, status, needle in cases:
            kwargs: dict[str, Any] = {"headers": headers}
            if isinstance(body, bytes):
                kwargs["content"] = body
                kwargs["headers"] = {**headers, "content-type": "application/json"}
            elif body is not None:
                kwargs["json"] = body
            r = await client.request(method, path, **kwargs)
            assert r.status_code == status, (method, path, body, r.text)
            problem = r.json()
            assert problem["status"] == status and needle in problem["detail"], (path, problem)

        big = {"username": _name("u"), "password": "x" * (s.gateway.max_body_bytes + 10)}
        assert (await client.post("/v1/users", json=big)).status_code == 413

        # Not the owner: 403, and the channel is unchanged.
        _, _, other = await _signup(client)
        r = await client.post("/v1/channels", headers=_auth(token), json={"name": _name("mine")})
        channel_id = r.json()["id"]
        r = await client.patch(f"/v1/channels/{channel_id}", headers=_auth(other), json={"title": "pwned"})
        assert r.status_code == 403
        r = await client.post(f"/v1/channels/{channel_id}/stream-key/regenerate", headers=_auth(other))
        assert r.status_code == 403
        assert (await client.get(f"/v1/channels/{channel_id}")).json()["title"] != "pwned"
        # The wrong password did not lock out or change the right one.
        r = await client.post("/v1/auth/login", json={"username": username, "password": "correct horse battery"})
        assert r.status_code == 200


async def test_health_ready_and_metrics(platform: Platform) -> None:
    async with httpx.AsyncClient(base_url=platform.url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        r = await client.get("/readyz")
        assert r.status_code == 200, r.text
        r = await client.get("/metrics")
        assert r.status_code == 200 and "glasscast_http_requests" in r.text
        assert "x-request-id" in r.headers


async def test_rebuild_views_reproduces_them(platform: Platform) -> None:
    s = platform.settings
    async with httpx.AsyncClient(base_url=platform.url) as client:
        _, _, token = await _signup(client)
        for i in range(3):
            r = await client.post("/v1/channels", headers=_auth(token), json={"name": _name(f"rb{i}")})
            await client.patch(f"/v1/channels/{r.json()['id']}", headers=_auth(token), json={"category": f"C{i}"})
        await client.post(f"/v1/channels/{r.json()['id']}/stream-key/regenerate", headers=_auth(token))
    client_r = aioredis.Redis.from_url(s.valkey.url)
    views = ViewStore(client_r, s.valkey.key_prefix)
    try:
        before = await views.dump()
        assert len(before) > 10
        serde = make_serde(s)
        try:
            report = await rebuild_views(s, serde)
        finally:
            serde.close()
        assert report.dropped_keys == len(before)
        after = await views.dump()
        assert after == before
    finally:
        await client_r.aclose()


async def test_broken_record_is_dead_lettered_and_the_view_moves_on(platform: Platform) -> None:
    from confluent_kafka import Producer

    s = platform.settings
    garbage_key = f"garbage-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": s.kafka.bootstrap_servers})
    delivered: list[Any] = []
    producer.produce("channels", b"\x00\x00\x00\x7f\xffnot avro at all", garbage_key.encode(),
                     on_delivery=lambda err, msg: delivered.append((err, msg.partition(), msg.offset())))
    producer.produce("channels", b"plain text, no magic byte", garbage_key.encode(),
                     on_delivery=lambda err, msg: delivered.append((err, msg.partition(), msg.offset())))
    assert producer.flush(10) == 0 and all(err is None for err, _, _ in delivered)

    # The processor keeps going: a channel created after the garbage is materialised.
    async with httpx.AsyncClient(base_url=platform.url) as client:
        _, _, token = await _signup(client)
        r = await client.post("/v1/channels", headers=_auth(token), json={"name": _name("after")})
        assert r.status_code == 201
        assert (await client.get(f"/v1/channels/{r.json()['id']}")).status_code == 200

    serde = make_serde(s)

    def both_dead_lettered() -> list[DeadLetter] | None:
        letters = [e.value for e in read_topic(s.kafka, serde, "deadletter", start="beginning", exit_at_end=True)]
        mine = [d for d in letters if isinstance(d, DeadLetter)
                and d.consumer_group == s.processors.app_id and d.key == garbage_key.encode()]
        return mine if len(mine) >= 2 else None

    try:
        found = await eventually_async(both_dead_lettered, 20, "both garbage records on the dead-letter topic",
                                       every_s=0.2)
    finally:
        serde.close()
    assert sorted((e.partition, e.offset) for e in found) == sorted((p, o) for _, p, o in delivered)
    assert all(e.source_topic == "channels" and e.error for e in found)
    assert any("magic byte" in e.error for e in found)

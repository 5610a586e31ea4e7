"""Issue 13, passwords and login, replayed against running gateways (real Valkey, broker, registry, processors).

Two gateways share one platform (the processors, Valkey namespace and data
directory): ``strict`` throttles logins with small allowances, ``open`` does
not throttle at all, so its one-thread, two-deep hash queue is what a flood
meets.  Each test starts from clean login counters.  Nothing here measures
time: speed is bench/login_flood.py's.
"""

from __future__ import annotations

import asyncio
import re
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette

from gateways.app import create_app
from gateways.auth import hash_password, verify_password
from gateways.login_throttle import backoff_ms
from gateways.passwords_store import CredentialStore, store_path
from gateways.services import Services
from infra.embedded.process import free_port
from infra.settings import Settings
from schemas.records.user import UserRegistered
from tests.conftest import wait_processors_assigned
from tests.factories import Backbone, platform_settings
from tests.servers import run_service, serve_app
from tests.waiting import eventually_async
from topics.producer import EventProducer
from topics.runtime import make_serde
from topics.tools import read_topic
from views.store import ViewStore

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
ACCOUNT_FREE, CLIENT_FREE = 3, 8  # the strict gateway's allowances
BACKOFF_S = 30  # its first wait: far longer than a burst takes to arrive (the tests move its clock instead)
FLOOD = 200


@dataclass
class Gateway:
    url: str
    app: Starlette

    @property
    def services(self) -> Services:
        return self.app.state.services  # type: ignore[no-any-return]


@dataclass
class Logins:
    settings: Settings
    data: Path
    strict: Gateway
    open: Gateway


@pytest.fixture(scope="module")
def logins(backbone: Backbone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logins]:
    data = tmp_path_factory.mktemp("logins")
    s = platform_settings(backbone, data, auth={
        "hash_workers": 1, "hash_queue_max": 8, "login_account_free_failures": ACCOUNT_FREE,
        "login_client_free_failures": CLIENT_FREE, "login_backoff_base_s": BACKOFF_S,
        "login_backoff_max_s": 20 * BACKOFF_S})
    unthrottled = s.with_section("auth", hash_queue_max=2, login_account_free_failures=10**6,
                                 login_client_free_failures=10**6)
    unthrottled = unthrottled.with_section("gateway", port=free_port())
    strict_app, open_app = create_app(s), create_app(unthrottled)
    with run_service(s, "processors", data / "processors.log") as proc:
        wait_processors_assigned(s, proc, data / "processors.log")
        with serve_app(strict_app, s.gateway.port) as strict_url, \
                serve_app(open_app, unthrottled.gateway.port) as open_url:
            yield Logins(s, data, Gateway(strict_url, strict_app), Gateway(open_url, open_app))


@pytest.fixture(autouse=True)
async def clean_counters(logins: Logins) -> None:
    """Every test starts with no login counted against any account or client (all come from 127.0.0.1)."""
    client = aioredis.Redis.from_url(logins.settings.valkey.url)
    try:
        keys = [k async for k in client.scan_iter(f"{logins.settings.valkey.key_prefix}login:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def _register(http: httpx.AsyncClient, logins: Logins) -> tuple[str, str]:
    """A new account, once the user view has it (a busy machine's processors may lag the sign-up's own wait)."""
    username = _name("user")
    r = await http.post("/v1/users", json={"username": username, "password": PASSWORD})
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    client = aioredis.Redis.from_url(logins.settings.valkey.url)
    try:
        views = ViewStore(client, logins.settings.valkey.key_prefix)
        await eventually_async(lambda: views.get_user(user_id), 60, "the new account's user view")
    finally:
        await client.aclose()
    return user_id, username


async def _login(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await http.post("/v1/auth/login", json={"username": username, "password": password})


def _retry_after(r: httpx.Response) -> int:
    value = r.headers.get("retry-after", "")
    assert value.isascii() and value.isdigit() and int(value) >= 1, r.headers
    return int(value)


def _advance(gateway: Gateway, seconds: float) -> Callable[[], None]:
    """Move the gateway's clock forward (it is the clock the throttle reads); returns the undo."""
    svc = gateway.services
    original = svc.clock
    svc.clock = lambda: original() + seconds
    return lambda: setattr(svc, "clock", original)


async def test_a_full_hash_queue_refuses_at_once_with_503(logins: Logins, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = logins.open.services
    capacity = svc.passwords.capacity
    # The hashes the flood starts are held until every other login has been answered: the queue stays full
    # however slowly the flood arrives, so what it refuses does not depend on the machine's speed.
    release = threading.Event()

    def stalled(password_hash: str, password: str) -> bool:
        release.wait(120)
        return verify_password(password_hash, password)

    async with httpx.AsyncClient(base_url=logins.open.url, timeout=120,
                                 limits=httpx.Limits(max_connections=FLOOD)) as http:
        _, username = await _register(http, logins)
        monkeypatch.setattr("gateways.passwords.verify_password", stalled)
        try:
            flood = [asyncio.create_task(_login(http, _name("nobody") if i % 2 else username, f"wrong-{i}"))
                     for i in range(FLOOD)]
            await eventually_async(lambda: sum(t.done() for t in flood) >= FLOOD - capacity, 60,
                                   "every login the queue has no room for to be answered")
        finally:
            release.set()
        answers = await asyncio.gather(*flood)
        codes = [r.status_code for r in answers]
        # One thread and two waiting: everything else is refused instead of queued behind argon2.
        assert codes.count(401) == capacity and codes.count(503) == FLOOD - capacity, codes
        for r in [r for r in answers if r.status_code == 503][:5]:
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["reason"] == "auth_busy" and "try again" in r.json()["detail"]
            _retry_after(r)
        assert svc.passwords.counts.peak_pending == capacity
        # The queue drains, and the right password works (no throttling on this gateway).
        r = await _login(http, username, PASSWORD)
        assert r.status_code == 200, r.text


async def test_failed_logins_back_off_per_account(logins: Logins) -> None:
    gateway = logins.strict
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60,
                                 limits=httpx.Limits(max_connections=FLOOD)) as http:
        _, username = await _register(http, logins)
        # The attack of the issue: a burst of wrong passwords, then the right one.
        answers = await asyncio.gather(*[_login(http, username, f"wrong-{i}") for i in range(FLOOD)])
        codes = [r.status_code for r in answers]
        # Counted as they start: the free failures and the one that sets the wait reach argon2, no more.
        assert codes.count(401) == ACCOUNT_FREE + 1 and codes.count(429) == FLOOD - ACCOUNT_FREE - 1, codes
        r = await _login(http, username, PASSWORD)
        assert r.status_code == 429, r.text
        assert r.json()["reason"] == "login_throttled"
        first_wait = _retry_after(r)
        assert first_wait <= BACKOFF_S

        undo = _advance(gateway, first_wait)
        try:
            r = await _login(http, username, "still-wrong")  # allowed once the wait is over, and doubles it
            assert r.status_code == 401, r.text
            r = await _login(http, username, PASSWORD)
            # The wait doubled: longer than the first could ever be.
            assert r.status_code == 429 and BACKOFF_S < _retry_after(r) <= 2 * BACKOFF_S, r.text
        finally:
            undo()
        undo = _advance(gateway, first_wait + 3 * BACKOFF_S)
        try:
            r = await _login(http, username, PASSWORD)
            assert r.status_code == 200, r.text
            # A success clears the account's count: the next wrong password is an ordinary 401.
            for _ in range(ACCOUNT_FREE):
                assert (await _login(http, username, "wrong-again")).status_code == 401
        finally:
            undo()


async def test_failed_logins_back_off_per_client(logins: Logins) -> None:
    async with httpx.AsyncClient(base_url=logins.strict.url, timeout=60) as http:
        # Different names every time, so only the client's counter can stop it.
        codes = [(await _login(http, _name("guess"), "hunter2-guess")).status_code for _ in range(CLIENT_FREE + 2)]
        assert codes == [401] * (CLIENT_FREE + 1) + [429], codes
    # Another client address is not held back by this one's failures.
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=logins.strict.url, timeout=60, transport=transport) as other:
        assert (await _login(other, _name("guess"), "hunter2-guess")).status_code == 401


async def test_unknown_and_known_names_do_the_same_argon2_work(logins: Logins,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    verified: list[str] = []
    def counting(password_hash: str, password: str) -> bool:
        verified.append(password_hash)
        return verify_password(password_hash, password)

    monkeypatch.setattr("gateways.passwords.verify_password", counting)
    counts = logins.strict.services.passwords.counts
    async with httpx.AsyncClient(base_url=logins.strict.url, timeout=60) as http:
        user_id, username = await _register(http, logins)
        before = (counts.account, counts.dummy)
        r = await _login(http, _name("nobody"), "a-guess-1")
        assert r.status_code == 401 and r.json()["detail"] == "invalid username or password"
        assert (counts.account, counts.dummy) == (before[0], before[1] + 1)
        r = await _login(http, username, "a-guess-2")
        assert r.status_code == 401 and r.json()["detail"] == "invalid username or password"
        assert (counts.account, counts.dummy) == (before[0] + 1, before[1] + 1)
    assert len(verified) == 2
    dummy, real_hash = verified
    stored = CredentialStore(store_path(logins.data)).get(user_id)
    assert real_hash == stored and dummy != stored
    # The same algorithm and cost parameters: $argon2id$v=19$m=...,t=...,p=...$salt$hash.
    params = [re.match(r"\$argon2id\$v=\d+\$m=\d+,t=\d+,p=\d+\$", h) for h in verified]
    assert params[0] is not None and params[1] is not None
    assert params[0].group() == params[1].group()


async def test_a_signed_token_for_a_missing_user_is_refused(logins: Logins) -> None:
    s = logins.settings
    now = int(time.time())
    ghost = jwt.encode({"sub": str(uuid.uuid4()), "name": "ghost", "iss": s.auth.jwt_issuer, "iat": now,
                        "exp": now + 600}, str(s.auth.jwt_secret), algorithm="HS256")
    async with httpx.AsyncClient(base_url=logins.strict.url, timeout=60) as http:
        headers = {"Authorization": f"Bearer {ghost}"}
        r = await http.post("/v1/channels", headers=headers, json={"name": _name("ghostchan")})
        assert r.status_code == 401, r.text
        assert "does not exist" in r.json()["detail"]
        r = await http.get("/v1/me", headers=headers)
        assert r.status_code == 401, r.text
        r = await http.post("/v1/streams", headers=headers, json={"channel_id": str(uuid.uuid4())})
        assert r.status_code == 401, r.text
        # A real account's token still works.
        _, username = await _register(http, logins)
        token = (await _login(http, username, PASSWORD)).json()["access_token"]
        r = await http.post("/v1/channels", headers={"Authorization": f"Bearer {token}"},
                            json={"name": _name("realchan")})
        assert r.status_code == 201, r.text


async def test_password_hashes_are_in_the_credential_store_only(logins: Logins) -> None:
    s = logins.settings
    async with httpx.AsyncClient(base_url=logins.strict.url, timeout=60) as http:
        user_id, username = await _register(http, logins)
        assert (await _login(http, username, PASSWORD)).status_code == 200

    serde = make_serde(s)
    try:
        events = [e for e in read_topic(s.kafka, serde, "users", start="beginning", exit_at_end=True)
                  if e.key == user_id]
    finally:
        serde.close()
    assert events, "the UserRegistered event"
    text = repr([e.value for e in events])
    assert "$argon2" not in text and PASSWORD not in text

    client = aioredis.Redis.from_url(s.valkey.url)
    try:
        values: list[Any] = []
        async for key in client.scan_iter(f"{s.valkey.key_prefix}*"):
            if await client.type(key) == b"string":
                values.append(await client.get(key))
        assert values and not [v for v in values if b"$argon2" in v]
    finally:
        await client.aclose()

    path = store_path(logins.data)
    stored = CredentialStore(path).get(user_id)
    assert stored is not None and stored.startswith("$argon2id$")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_the_wait_doubles_after_the_free_failures_up_to_its_cap() -> None:
    assert [backoff_ms(n, 3, 1000, 8000) for n in range(1, 9)] == [0, 0, 0, 1000, 2000, 4000, 8000, 8000]
    assert backoff_ms(10**9, 3, 1000, 8000) == 8000  # no overflow however long the attack


async def test_an_account_registered_before_the_credential_store_logs_in_and_moves_its_hash(logins: Logins) -> None:
    s = logins.settings
    user_id, username = str(uuid.uuid4()), _name("oldtimer")
    serde = make_serde(s)
    producer = EventProducer(s.kafka, serde)
    try:  # the event as sign-up wrote it before: the hash in the log
        await producer.send(UserRegistered(occurred_at=int(time.time() * 1000), user_id=user_id, username=username,
                                           email=None, password_hash=hash_password(PASSWORD)), user_id)
    finally:
        producer.close(10)
        serde.close()
    client = aioredis.Redis.from_url(s.valkey.url)
    try:
        views = ViewStore(client, s.valkey.key_prefix)
        await eventually_async(lambda: views.get_user(user_id), 60, "the legacy account's user view")
    finally:
        await client.aclose()
    store = CredentialStore(store_path(logins.data))
    assert store.get(user_id) is None
    async with httpx.AsyncClient(base_url=logins.strict.url, timeout=60) as http:
        assert (await _login(http, username, "not it")).status_code == 401
        assert (await _login(http, username, PASSWORD)).status_code == 200
    stored = store.get(user_id)
    assert stored is not None and stored.startswith("$argon2id$")

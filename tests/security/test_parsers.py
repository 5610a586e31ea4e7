"""Issue 13, point 5: every input parser is total, and the HTTP edge bounds slow clients.

Replayed against ``glasscast run gateway`` (a child process, so uvicorn runs
with the gateway's own server options, gateways/http_deadlines.py) and the
processors, on the session's broker, registry and Valkey.  Each attack gets a
4xx with a reason, or its socket closed, and the gateway's log holds no
traceback.  The gateway runs with one-second header and body deadlines so
the slow-client tests finish quickly; their loops are bounded, and they
assert what the server did, never how long it took.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import given
from hypothesis import strategies as st

from gateways.http_deadlines import http_options
from gateways.metrics_access import MetricsAccess
from gateways.validation import too_deep
from infra.embedded.process import free_port
from infra.settings import GatewaySettings, Secret, Settings
from tests.conftest import wait_processors_assigned
from tests.factories import Backbone, platform_settings
from tests.servers import run_service, wait_healthy
from tests.waiting import eventually

pytestmark = pytest.mark.integration

PUBLIC_URL = "https://glasscast.example"
METRICS_TOKEN = "metrics-token-" + "m" * 24
DEADLINE_S = 1.0  # the gateway's header and body deadlines here
SOCKET_BOUND_S = 20.0  # how long a test waits for the gateway to close a socket: a hang, not a benchmark
TRICKLE_EVERY_S = 0.25
TRICKLE_MAX = int(SOCKET_BOUND_S / TRICKLE_EVERY_S)
PASSWORD = "correct horse battery"
DEEP = 30_000  # levels: far past json's recursion limit, and the body stays under the 64 KiB limit


@dataclass
class Edge:
    settings: Settings
    url: str
    log: Path
    token: str
    channel_id: str
    channel_name: str
    stream_id: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


def _setup_account(url: str) -> tuple[str, str, str, str]:
    """(token, channel id, channel name, stream id) of a new creator with a configured stream."""
    name = f"edge_{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.post("/v1/users", json={"username": name, "password": PASSWORD}).status_code == 201
        r = http.post("/v1/auth/login", json={"username": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        r = http.post("/v1/channels", headers=auth, json={"name": name, "title": "edge"})
        assert r.status_code == 201, r.text
        channel_id = r.json()["id"]
        r = http.post("/v1/streams", headers=auth, json={"channel_id": channel_id, "title": "edge"})
        assert r.status_code == 201, r.text
        return token, channel_id, name, r.json()["id"]


@pytest.fixture(scope="module")
def edge(backbone: Backbone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    data = tmp_path_factory.mktemp("edge")
    s = platform_settings(backbone, data, gateway={
        "public_url": PUBLIC_URL, "header_timeout_s": DEADLINE_S, "body_timeout_s": DEADLINE_S,
        "keep_alive_s": 1, "metrics_networks": ("192.0.2.0/24",), "metrics_token": Secret(METRICS_TOKEN)})
    log = data / "gateway.log"
    with run_service(s, "processors", data / "processors.log") as proc:
        wait_processors_assigned(s, proc, data / "processors.log")
        with run_service(s, "gateway", log) as gateway:
            url = f"http://127.0.0.1:{s.gateway.port}"
            wait_healthy(url, gateway, log)
            yield Edge(s, url, log, *_setup_account(url))


def assert_no_traceback(edge: Edge) -> None:
    text = edge.log.read_text(errors="replace")
    for sign in ("Traceback", "Exception in ASGI application", "RecursionError"):
        assert sign not in text, f"{sign} in the gateway log:\n{text[-3000:]}"


def assert_problem(r: httpx.Response, status: int, words: str, field: str | None = None) -> dict[str, Any]:
    """A problem document with this status whose detail mentions ``words``."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    body: dict[str, Any] = r.json()
    assert r.headers["content-type"] == "application/problem+json" and words in body["detail"], body
    if field is not None:
        assert body.get("field") == field, body
    return body


def _json_endpoints(edge: Edge) -> list[tuple[str, str, dict[str, str]]]:
    """(method, path, headers) of every JSON endpoint, authenticated as the owner where it takes a token."""
    return [
        ("POST", "/v1/users", {}), ("POST", "/v1/auth/login", {}),
        ("POST", f"/v1/streams/{edge.stream_id}/heartbeat", {}),
        ("POST", f"/v1/streams/{edge.stream_id}/playback/refresh-token", {}),
        ("POST", "/v1/channels", edge.auth), ("PATCH", f"/v1/channels/{edge.channel_id}", edge.auth),
        ("POST", "/v1/streams", edge.auth), ("PATCH", f"/v1/streams/{edge.stream_id}", edge.auth),
        ("POST", f"/v1/chat/{edge.channel_name}/moderate", edge.auth),
    ]


def test_deeply_nested_json_is_a_400_on_every_json_endpoint(edge: Edge) -> None:
    bodies = [b"[" * DEEP + b"]" * DEEP, b'{"a":' * (DEEP // 5) + b"1" + b"}" * (DEEP // 5),
              b'{"title":' + b"[" * 40 + b"]" * 40 + b"}"]
    with edge.client() as http:
        for method, path, headers in _json_endpoints(edge):
            for body in bodies:
                r = http.request(method, path, content=body, headers={**headers, "Content-Type": "application/json"})
                assert_problem(r, 400, "more than 32 deep")
    assert_no_traceback(edge)


def test_json_that_python_reads_but_json_forbids_is_a_400(edge: Edge) -> None:
    cases = [
        (b'{"name": "x", "title": "\\ud800"}', "unpaired surrogate"),  # no UTF-8 for it: the log would refuse it
        (b'{"name": "x", "title": "\xed\xa0\x80"}', "not UTF-8"),  # an encoded surrogate
        (b'{"name": "x", "title": "\xff"}', "not UTF-8"),
        (b'{"name": "x", "tags": [NaN]}', "NaN"),
        (b'{"name": "x", "title": -Infinity}', "Infinity"),
        (b'{"name": "x", "title": ' + b"7" * 5000 + b"}", "number is too long"),
    ]
    with edge.client() as http:
        for body, words in cases:
            r = http.post("/v1/channels", content=body, headers={**edge.auth, "Content-Type": "application/json"})
            assert_problem(r, 400, words)
    assert_no_traceback(edge)


def test_huge_and_non_ascii_numbers_in_hls_paths_are_404s_with_a_reason(edge: Edge) -> None:
    base = f"/hls/{edge.stream_id}/source"
    with edge.client() as http:
        for name in ("9" * 5000 + ".m4s", "1." + "9" * 5000 + ".m4s", "1" * 300 + ".m4s", "1" * 300 + ".0.m4s",
                     "\u0661\u0662.m4s", "1.\u00b2.m4s", "-1.m4s"):
            r = http.get(f"{base}/{name}", params={"token": "x"})
            assert_problem(r, 404, "in ASCII digits")
    assert_no_traceback(edge)


def test_unicode_digits_in_query_integers_are_refused(edge: Edge) -> None:
    room = edge.channel_name
    with edge.client() as http:
        # Superscript two, Arabic-Indic ten, fullwidth one: str.isdigit() takes them all; and 5,000 digits.
        for limit in ("\u00b2", "\u0661\u0660", "\uff11", "1" * 5000):
            r = http.get(f"/v1/chat/{room}/moderation-log", params={"limit": limit}, headers=edge.auth)
            assert_problem(r, 422, "ASCII digits", field="limit")
            r = http.get("/v1/directory/streams", params={"limit": limit})
            assert r.status_code == 400 and r.json()["field"] == "limit", r.text
            r = http.get(f"/v1/chat/{room}/messages", params={"around_timestamp": "0", "before": limit})
            assert r.status_code == 422 and r.json()["field"] == "before", r.text
        assert http.get(f"/v1/chat/{room}/moderation-log", params={"limit": "5"}, headers=edge.auth).status_code == 200
    assert_no_traceback(edge)


@pytest.mark.parametrize("bad", ["\x00", "\x1b[31m", "\u0085", "\u202e", "\u202a", "\u2066", "\u2069"])
def test_titles_categories_and_reasons_refuse_control_and_bidi_characters(edge: Edge, bad: str) -> None:
    text = f"evil{bad}txt"
    with edge.client() as http:
        r = http.post("/v1/channels", headers=edge.auth, json={"name": f"c_{uuid.uuid4().hex[:8]}", "title": text})
        assert_problem(r, 422, "control or bidi", field="title")
        r = http.patch(f"/v1/channels/{edge.channel_id}", headers=edge.auth, json={"category": text})
        assert_problem(r, 422, "control or bidi", field="category")
        r = http.patch(f"/v1/streams/{edge.stream_id}", headers=edge.auth, json={"title": text})
        assert_problem(r, 422, "control or bidi", field="title")
        r = http.post(f"/v1/chat/{edge.channel_name}/moderate", headers=edge.auth,
                      json={"action": "ban", "user": "nobody_here", "reason": text})
        assert_problem(r, 422, "control or bidi", field="reason")
        r = http.patch(f"/v1/streams/{edge.stream_id}", headers=edge.auth, json={"title": "Ünïcode \u05e2\u05d1 😀"})
        assert r.status_code == 200 and r.json()["title"] == "Ünïcode \u05e2\u05d1 😀", r.text


def test_openapi_names_the_configured_public_url_whatever_the_host_header(edge: Edge) -> None:
    with edge.client() as http:
        r = http.get("/openapi.json", headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"})
    assert r.status_code == 200 and r.json()["servers"] == [{"url": PUBLIC_URL}]
    assert "evil.example" not in r.text


# -- the HTTP edge: slow clients, over raw sockets ----------------------------------------------------------


def _connect(edge: Edge) -> socket.socket:
    return socket.create_connection(("127.0.0.1", edge.settings.gateway.port), timeout=SOCKET_BOUND_S)


def _until_closed(sock: socket.socket) -> bytes:
    """All the gateway sends until it closes the socket; fails if it is still open after SOCKET_BOUND_S."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"the gateway kept the socket open (got {received[:200]!r})")
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def _trickle(sock: socket.socket, line: bytes) -> bytes:
    """Send ``line`` every TRICKLE_EVERY_S until the gateway answers or closes; what it sent until closing."""
    for _ in range(TRICKLE_MAX):
        readable, _, _ = select.select([sock], [], [], TRICKLE_EVERY_S)
        if readable:
            return _until_closed(sock)
        try:
            sock.sendall(line)
        except (BrokenPipeError, ConnectionResetError):
            return _until_closed(sock)
    pytest.fail("the gateway kept reading a request sent a line at a time")


def assert_problem_answer(answer: bytes, status: int, words: str) -> None:
    """A raw HTTP answer with this status and a problem document whose detail mentions ``words``."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status) and b"application/problem+json" in head, answer[:300]
    problem = json.loads(body)
    assert problem["status"] == status and words in problem["detail"], problem


def test_a_connection_that_sends_nothing_is_closed(edge: Edge) -> None:
    with _connect(edge) as sock:
        assert _until_closed(sock) == b""  # closed without a word: nothing was asked


def test_a_head_sent_a_line_at_a_time_gets_408_and_is_closed(edge: Edge) -> None:
    with _connect(edge) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: edge\r\n")
        answer = _trickle(sock, b"X-Slow: 1\r\n")
    assert_problem_answer(answer, 408, "request head not received")


def test_a_kept_alive_connection_that_starts_a_head_and_stalls_is_closed(edge: Edge) -> None:
    with _connect(edge) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n")
        first = b""
        while b'{"status":"ok"}' not in first:
            chunk = sock.recv(65536)
            assert chunk, first
            first += chunk
        assert first.startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: edge\r\n")  # its first byte stops uvicorn's keep-alive timer
        answer = _trickle(sock, b"X-Slow: 1\r\n")
    assert_problem_answer(answer, 408, "request head not received")


def test_a_body_sent_a_byte_at_a_time_gets_408_and_is_closed(edge: Edge) -> None:
    with _connect(edge) as sock:
        sock.sendall(b"POST /v1/auth/login HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 4000\r\n\r\n{")
        answer = _trickle(sock, b" ")
    assert_problem_answer(answer, 408, "request body not received")
    assert_no_traceback(edge)


def test_a_head_over_the_limit_gets_431_and_is_closed(edge: Edge) -> None:
    limit = edge.settings.gateway.max_header_bytes
    for head in (b"GET /healthz HTTP/1.1\r\nHost: edge\r\nX-Big: " + b"a" * (limit + 10) + b"\r\n\r\n",
                 b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"b" * 100) for i in range(700))):
        with _connect(edge) as sock:
            try:
                sock.sendall(head)
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed while we were still sending: read what it said
            answer = _until_closed(sock)
        assert_problem_answer(answer, 431, "request head over")


# -- /metrics ------------------------------------------------------------------------------------------------


def test_metrics_need_an_allowed_network_or_the_token_and_unknown_methods_fold(edge: Edge) -> None:
    with edge.client() as http:
        r = http.get("/metrics")  # from 127.0.0.1, which this gateway's metrics_networks leave out
        assert_problem(r, 403, "METRICS_NETWORKS")
        assert "glasscast_http_requests" not in r.text
        r = http.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
        assert r.status_code == 403
        for method in ("PROPFIND", "MKCOL", "PURGE", "REPORT", "LOCK", "SEARCH"):  # methods llhttp lets through
            assert http.request(method, f"/nowhere-{method.lower()}").status_code < 500
        r = http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200 and "glasscast_http_requests_total" in r.text
    methods = {line.split('method="', 1)[1].split('"', 1)[0] for line in r.text.splitlines()
               if line.startswith("glasscast_http_requests_total{")}
    assert "other" in methods and methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}


def test_the_playback_and_heartbeat_paths_still_answer_as_before(edge: Edge) -> None:
    """The strict parsers leave well-formed requests alone (a guard against over-refusing)."""
    with edge.client() as http:
        r = http.get(f"/hls/{edge.stream_id}/source/00000001.m4s", params={"token": "x"})
        assert r.status_code == 403 and "in ASCII digits" not in r.text
        r = http.get(f"/hls/{edge.stream_id}/source/00000001.2.m4s", params={"token": "x"})
        assert r.status_code == 403 and "in ASCII digits" not in r.text
        # An escaped surrogate pair is one character, not a lone surrogate.
        r = http.patch(f"/v1/channels/{edge.channel_id}", headers=edge.auth,
                       content=json.dumps({"tags": ["a", "b"], "title": "x \ud83d\ude00"}).encode())
        assert r.status_code == 200 and r.json()["title"] == "x 😀", r.text


# -- the pure pieces, without the platform -------------------------------------------------------------------


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab'),
                           lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
                               st.text(alphabet='[]{}"\\ab', max_size=4), kids, max_size=3), max_leaves=60)


@given(json_values, st.integers(min_value=0, max_value=6))
def test_too_deep_measures_nesting_as_the_parsed_value_has_it(value: Any, limit: int) -> None:
    assert too_deep(json.dumps(value).encode(), limit) == (_depth(value) > limit)


def test_metrics_access_takes_loopback_by_default_and_the_token_from_anywhere() -> None:
    default = GatewaySettings()
    access = MetricsAccess.of(default.metrics_networks, "tok")
    assert access.allows("127.0.0.1", None) and access.allows("::1", None) and access.allows("::ffff:127.0.0.1", None)
    assert not access.allows("10.1.2.3", None) and not access.allows(None, None) and not access.allows("x", None)
    assert access.allows("10.1.2.3", "Bearer tok") and not access.allows("10.1.2.3", "Bearer tok2")
    assert not MetricsAccess.of((), "").allows("10.1.2.3", "Bearer ")


@contextlib.contextmanager
def _tiny_server(header_timeout_s: float) -> Iterator[int]:
    """A tiny ASGI app under uvicorn with the gateway's protocol: /slow answers after 5 header deadlines."""
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        while (await receive()).get("more_body"):
            pass
        if scope["path"] == "/slow":
            await asyncio.sleep(5 * header_timeout_s)  # the app at work, as a blocking playlist reload is
        body = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    port = free_port()
    gateway = GatewaySettings(header_timeout_s=header_timeout_s, body_timeout_s=header_timeout_s)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off",
                                           **http_options(gateway)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started, 30, "the tiny server")
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def test_the_deadlines_never_cut_an_answer_in_the_works_or_pipelined_requests() -> None:
    with _tiny_server(0.2) as port, socket.create_connection(("127.0.0.1", port), timeout=SOCKET_BOUND_S) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"POST /fast HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}")
        answer = _until_closed(sock)  # both answers, then the head deadline closes the idle connection
    assert answer.count(b"HTTP/1.1 200 ") == 2 and answer.endswith(b"/fast") and b"/slow" in answer, answer

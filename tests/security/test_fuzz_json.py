"""Issue 13, point 6: a property-based fuzz of every JSON endpoint; no body may earn a 5xx.

The endpoints are enumerated from the gateway's own Starlette app: every
route that takes POST, PATCH or PUT (web pages aside), so a new endpoint is
fuzzed without anyone listing it.  Path parameters are filled with a real
channel, stream and room owned by the fuzzing user, so requests get past
the lookups to the body parser and the field checks.  Bodies are JSON text
built by hypothesis: objects with the API's field names and random ones,
values of every JSON type, integers past 64 bits and past ``int()``'s 4,300
digits, NaN and Infinity, control, bidi and lone-surrogate strings, nesting
far past the limit, and bytes that are not UTF-8, sent with a valid token, a
forged one and none.  The gateway and processors are real (uvicorn on a
socket, the session's broker and Valkey); example counts are bounded so the
whole file runs well under two minutes.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from gateways.app import create_app
from infra.settings import Secret, Settings
from tests.conftest import wait_processors_assigned
from tests.factories import Backbone, platform_settings
from tests.servers import run_service, serve_app

pytestmark = pytest.mark.integration

EXAMPLES_PER_ENDPOINT = 40
BODY_METHODS = {"POST", "PATCH", "PUT"}
NOT_JSON_API = ("gateways.web",)  # web pages and static files
PASSWORD = "correct horse battery"
FIELDS = ["username", "password", "email", "name", "title", "category", "tags", "channel_id", "action", "user",
          "duration_s", "reason", "message_id", "slow_mode_s", "subscribers_only", "followers_only_min",
          "emote_only", "banned_words", "token", "session_id", "rendition", "buffer_health_s", "bitrate_kbps",
          "latency_ms", "dropped_frames"]
ODD_TEXT = ["", " ", "\x00", "a\x00b", "\x1b[2J", "\u0085", "\u202e", "\u2066", "\u2069", "\ufeff", "\ud800",
            "\udfff", "\ud83d\ude00", "😀" * 50, "ä" * 300, "%s%n", "../../etc/passwd", "<script>", "ban", "timeout",
            "set_mode", "mod", "source", "x" * 5000, "\u0661\u0662", "\u00b2"]


def _endpoints() -> list[tuple[str, str]]:
    """(method, path template) of every route that takes a body, from the gateway's app."""
    app = create_app(Settings().with_section("auth", jwt_secret=Secret("s" * 40)))
    found = set()
    for route in app.routes:
        if isinstance(route, Route) and route.endpoint.__module__ not in NOT_JSON_API:
            found.update((method, route.path) for method in (route.methods or ()) if method in BODY_METHODS)
    return sorted(found)


ENDPOINTS = _endpoints()


def _text(value: str) -> str:
    return json.dumps(value)  # ASCII escapes: a lone surrogate becomes \\udXXX, as a client could send it


huge_ints = st.integers(min_value=10, max_value=6000).map(lambda n: "9" * n)
numbers = st.one_of(st.integers().map(str), st.integers(min_value=2**31 - 2, max_value=2**70).map(str), huge_ints,
                    st.floats().map(json.dumps),  # NaN, Infinity and -Infinity included
                    st.sampled_from(["1e999", "-1e999", "-0", "0.5", "1E-400", "-1"]))
strings = st.one_of(st.text(max_size=40).map(_text), st.sampled_from(ODD_TEXT).map(_text),
                    st.sampled_from(ODD_TEXT).map(lambda t: json.dumps(t, ensure_ascii=False)),  # raw, not escaped
                    st.sampled_from(FIELDS).map(_text))
scalars = st.one_of(st.sampled_from(["null", "true", "false"]), numbers, strings)
keys = st.one_of(st.sampled_from(FIELDS), st.text(max_size=12), st.sampled_from(ODD_TEXT)).map(_text)
values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=6).map(lambda items: "[" + ",".join(items) + "]"),
    st.lists(st.tuples(keys, children), max_size=6).map(
        lambda pairs: "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}")), max_leaves=24)
objects = st.lists(st.tuples(keys, values), max_size=8).map(
    lambda pairs: "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}")
# Depths around the limit, past json's recursion limit (about 1,000) and up to the body limit.
depths = st.one_of(st.sampled_from([31, 32, 33, 1_000, 2_000, 7_000]), st.integers(min_value=20, max_value=7_000))
deep = st.tuples(depths, st.sampled_from(["[", '{"title":', '{"tags":[', '[{"a":'])).map(
    lambda d: d[1] * d[0] + "1" + "".join("]" if c == "[" else "}" for c in reversed(d[1] * d[0]) if c in "[{"))
raw_bytes = st.one_of(st.binary(max_size=64), st.sampled_from([b"\xff", b'{"title": "\xed\xa0\x80"}', b"\xef\xbb\xbf{}",
                                                               b"", b"{", b"[" * 70_000]))


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a raw lone surrogate becomes the bytes a sloppy client sends


bodies = st.one_of(objects.map(_utf8), values.map(_utf8), deep.map(_utf8), raw_bytes)


@dataclass
class Target:
    url: str
    token: str
    params: dict[str, str]


@pytest.fixture(scope="module")
def target(backbone: Backbone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    data = tmp_path_factory.mktemp("fuzz")
    s = platform_settings(backbone, data)
    with run_service(s, "processors", data / "processors.log") as proc:
        wait_processors_assigned(s, proc, data / "processors.log")
        with serve_app(create_app(s), s.gateway.port) as url, httpx.Client(base_url=url, timeout=30) as http:
            name = f"fuzz_{uuid.uuid4().hex[:10]}"
            assert http.post("/v1/users", json={"username": name, "password": PASSWORD}).status_code == 201
            login = http.post("/v1/auth/login", json={"username": name, "password": PASSWORD}).json()
            token, user_id = login["access_token"], login["user"]["id"]
            auth = {"Authorization": f"Bearer {token}"}
            channel_id = http.post("/v1/channels", headers=auth, json={"name": name}).json()["id"]
            r = http.post("/v1/streams", headers=auth, json={"channel_id": channel_id})
            assert r.status_code == 201, r.text
            yield Target(url, token, {"channel_id": channel_id, "room": name, "stream_id": r.json()["id"],
                                      "user_id": user_id, "raid_id": str(uuid.uuid4())})


def _path(template: str, params: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: params[m.group(1)], template)


@pytest.mark.parametrize(("method", "template"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
def test_no_json_body_earns_a_5xx(target: Target, method: str, template: str) -> None:
    path = _path(template, target.params)
    # Mostly the valid token, so that authenticated endpoints read the body.
    tokens = st.sampled_from([target.token, target.token, None, "forged." + target.token.split(".", 1)[-1]])

    @settings(max_examples=EXAMPLES_PER_ENDPOINT, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(body=bodies, token=tokens)
    def fuzz(http: httpx.Client, body: bytes, token: str | None) -> None:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        r = http.request(method, path, content=body, headers=headers)
        assert r.status_code < 500, f"{method} {path} {body[:300]!r} -> {r.status_code} {r.text[:300]}"
        if r.status_code >= 400:
            assert r.headers["content-type"] == "application/problem+json" and r.json()["detail"], r.text[:300]

    assert ENDPOINTS, "no JSON endpoint found in the app"
    with httpx.Client(base_url=target.url, timeout=30) as http:
        fuzz(http)

"""Deploys without a stampede (gateways/drain.py), over real sockets against `glasscast run gateway`.

A gateway with chat clients and a request in flight gets SIGTERM: every
client receives RECONNECT and then a close with 1012, at moments spread over
``gateway.drain_window_s`` rather than all at once; new connections are
refused from the signal on; the request in flight still gets its answer; and
the process exits within the window plus a bound.

The room is written straight into the channel view, so no processors are
needed; the request in flight is a registration, which (with no processors
to fold its event) takes ``consistency_wait_ms`` to answer: a slow request
that the drain must let finish.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateways.drain import CLOSE_SERVICE_RESTART, HTTP_GRACE_S, RECONNECT_DELAY_MAX_MS, drain_schedule
from tests.factories import Backbone, platform_settings
from tests.servers import run_service, wait_healthy
from tests.waiting import eventually_async
from views.channels import ChannelView
from views.store import ViewStore

pytestmark = pytest.mark.integration

WINDOW_S = 3.0
CLIENTS = 8
SLOW_REQUEST_MS = 2500  # consistency_wait_ms: how long the registration in flight takes to answer
EXIT_BOUND_S = WINDOW_S + HTTP_GRACE_S + 10  # a hang, not a benchmark


class Watcher:
    """One anonymous chat client that records what it gets until the server closes it."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[tuple[float, dict[str, Any]]] = []
        self.close_code: int | None = None
        self.close_reason = ""

    async def run(self) -> None:
        try:
            while True:
                raw = await self.ws.recv()
                now = time.monotonic()
                self.frames.extend((now, json.loads(line)) for line in str(raw).split("\n"))
        except ConnectionClosed as exc:
            if exc.rcvd is not None:
                self.close_code, self.close_reason = exc.rcvd.code, exc.rcvd.reason

    def reconnects(self) -> list[tuple[float, dict[str, Any]]]:
        return [(t, f) for t, f in self.frames if f["type"] == "RECONNECT"]


async def _make_room(settings: Any) -> str:
    channel_id = str(uuid.uuid4())
    client = aioredis.Redis.from_url(settings.valkey.url)
    try:
        store = ViewStore(client, settings.valkey.key_prefix)
        view = ChannelView(id=channel_id, name=f"drain_{channel_id[:8]}", owner_user_id=str(uuid.uuid4()),
                           title="drain", category=None, tags=(), stream_key_hash="0" * 64, created_at_ms=0,
                           updated_at_ms=0, seq=0)
        await client.set(store.k_channel(channel_id), json.dumps(view.to_json()))
        return channel_id
    finally:
        await client.aclose()


async def _claimed(settings: Any, username: str) -> bool:
    client = aioredis.Redis.from_url(settings.valkey.url)
    try:
        return await ViewStore(client, settings.valkey.key_prefix).claimed("username", username) is not None
    finally:
        await client.aclose()


async def test_sigterm_drains_chat_over_the_window_and_finishes_requests(backbone: Backbone,
                                                                          tmp_path: Path) -> None:
    s = platform_settings(backbone, tmp_path, gateway={"drain_window_s": WINDOW_S,
                                                       "consistency_wait_ms": SLOW_REQUEST_MS},
                          chat={"ml_filter": False})
    url = f"http://127.0.0.1:{s.gateway.port}"
    log = tmp_path / "gateway.log"
    room = await _make_room(s)
    with run_service(s, "gateway", log) as proc:
        await asyncio.to_thread(wait_healthy, url, proc, log)
        ws_url = f"ws://127.0.0.1:{s.gateway.port}/v1/chat/ws?channel={room}"
        watchers = [Watcher(await connect(ws_url)) for _ in range(CLIENTS)]
        readers = [asyncio.create_task(w.run()) for w in watchers]
        await eventually_async(lambda: all(any(f["type"] == "CONNECTED" for _, f in w.frames) for w in watchers),
                               10, "CONNECTED on every client")

        # A request in flight when the signal comes: it must still be answered.
        username = f"drain_{uuid.uuid4().hex[:10]}"
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            slow = asyncio.create_task(http.post("/v1/users", json={"username": username,
                                                                    "password": "correct horse battery"}))
            await eventually_async(lambda: _claimed(s, username), 10, "the registration under way")
            sent_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)

            # From the signal on (the first RECONNECT shows the drain has begun), new connections are refused.
            await eventually_async(lambda: any(w.reconnects() for w in watchers), WINDOW_S + 5, "a RECONNECT")
            with pytest.raises(OSError):
                await connect(ws_url, open_timeout=5)
            with pytest.raises(httpx.ConnectError):
                async with httpx.AsyncClient(timeout=5) as fresh:
                    await fresh.get(f"{url}/healthz")

            answer = await asyncio.wait_for(slow, EXIT_BOUND_S)
            assert answer.status_code == 201, answer.text

        await asyncio.wait_for(asyncio.gather(*readers), EXIT_BOUND_S)
        code = await asyncio.to_thread(proc.wait, EXIT_BOUND_S)
        exited_after = time.monotonic() - sent_at
        assert code in (0, -signal.SIGTERM), log.read_text()[-3000:]
        assert exited_after < EXIT_BOUND_S

    arrivals = []
    for w in watchers:
        told = w.reconnects()
        assert len(told) == 1, w.frames
        at, frame = told[0]
        assert frame["type"] == "RECONNECT" and 0 <= frame["delay_ms"] <= RECONNECT_DELAY_MAX_MS
        assert w.frames[-1][1]["type"] == "RECONNECT"  # nothing after it
        assert w.close_code == CLOSE_SERVICE_RESTART and w.close_reason == "service restart"
        arrivals.append(at - sent_at)
    # Spread over the window: one socket per slice of WINDOW_S / CLIENTS, so the first and last are at
    # least (CLIENTS - 2) slices apart; half the window is a safe bound that all-at-once would fail.
    assert max(arrivals) - min(arrivals) >= WINDOW_S / 2, sorted(arrivals)
    assert len({round(a, 3) for a in arrivals}) == CLIENTS, sorted(arrivals)


def test_the_schedule_puts_one_socket_in_each_slice_of_the_window() -> None:
    rng = random.Random(7)
    offsets = drain_schedule(10, 5.0, rng)
    assert [int(o // 0.5) for o in offsets] == list(range(10))
    assert drain_schedule(0, 5.0, rng) == [] and drain_schedule(3, 0.0, rng) == [0.0, 0.0, 0.0]

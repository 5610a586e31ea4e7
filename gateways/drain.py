"""Deploys without a stampede: a gateway stopped with SIGTERM drains before it exits.

uvicorn's own shutdown closes every WebSocket at once (code 1012), so a
deploy would make every chat client of the gateway reconnect in the same
instant, to the same few remaining gateways.  ``DrainingServer`` hooks in
before that:

1. it stops listening (new connections are refused) and asks every plain
   HTTP connection to close once its response is sent, so playlist and
   segment requests in flight finish and idle keep-alive connections go;
2. it tells each chat socket to reconnect (a RECONNECT frame with a
   suggested ``delay_ms``, then close code 1012 "service restart"), one at
   a time at moments spread evenly over ``gateway.drain_window_s`` (each in
   its own slice of the window, at a random point of it, in random order);
3. then uvicorn's shutdown runs as usual: it waits up to
   ``HTTP_GRACE_S`` for requests still in flight, and the lifespan closes
   the services.

A second Ctrl-C (uvicorn's force exit) cuts the drain short.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette

from gateways.chat import frames
from gateways.chat.fanout import ChatHub
from gateways.quiet import QuietServer

log = logging.getLogger("glasscast.gateway")

CLOSE_SERVICE_RESTART = 1012  # RFC 6455 section 7.4.1 registry (IANA): the server is restarting
RESTART_REASON = "service restart"
RECONNECT_DELAY_MAX_MS = 1000  # each client is told to wait a random 0..this before it reconnects
HTTP_GRACE_S = 5  # after the chat drain, how long requests in flight may still take


def drain_schedule(count: int, window_s: float, rng: random.Random) -> list[float]:
    """Offsets from the drain's start for ``count`` sockets: one in each equal slice of the window, at random."""
    if count <= 0:
        return []
    return [(i + rng.random()) * window_s / count for i in range(count)]


async def drain_chat(hub: ChatHub, window_s: float, rng: random.Random | None = None,
                     abandon: Callable[[], bool] = lambda: False) -> int:
    """Tell every chat socket of ``hub`` to reconnect, spread over ``window_s``; the number told."""
    rng = rng or random.Random()
    socks = hub.sockets()
    rng.shuffle(socks)
    loop = asyncio.get_running_loop()
    start = loop.time()
    told = 0
    for sock, at in zip(socks, drain_schedule(len(socks), window_s, rng), strict=True):
        if abandon():
            break
        delay = start + at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await sock.restart(reconnect_frame(rng), CLOSE_SERVICE_RESTART, RESTART_REASON)
        told += 1
    for sock in hub.sockets():  # joined during the drain (accepted just before the listener closed)
        await sock.restart(reconnect_frame(rng), CLOSE_SERVICE_RESTART, RESTART_REASON)
        told += 1
    return told


def reconnect_frame(rng: random.Random) -> str:
    return frames.encode({"type": "RECONNECT", "reason": RESTART_REASON,
                          "delay_ms": rng.randint(0, RECONNECT_DELAY_MAX_MS)})


def _is_plain_http(connection: object) -> bool:
    """An HTTP/1.1 connection (h11 or httptools, or a subclass such as gateways/http_deadlines.py), not a
    WebSocket (the chat drain closes those)."""
    return any(cls.__module__.startswith("uvicorn.protocols.http.") for cls in type(connection).__mro__)


class DrainingServer(QuietServer):
    """uvicorn's server, with the gateway's drain before its shutdown (see the module docstring).

    A ``QuietServer``: idle, its main loop wakes once a second, not ten times (gateways/quiet.py).
    """

    def __init__(self, config: uvicorn.Config, app: Starlette, drain_window_s: float) -> None:
        super().__init__(config)
        self.app = app
        self.drain_window_s = drain_window_s

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # refuse new connections from now on
        for connection in list(self.server_state.connections):
            if _is_plain_http(connection):
                connection.shutdown()  # close after the response in flight, if any
        svc = getattr(self.app.state, "services", None)
        if svc is not None and not self.force_exit:
            hub = svc.chat.hub
            count = len(hub.sockets())
            log.info("gateway draining: %d chat sockets told to reconnect over %.1f s", count,
                     self.drain_window_s)
            try:
                await drain_chat(hub, self.drain_window_s, abandon=lambda: self.force_exit)
            except Exception:  # never let the drain keep the rest of the shutdown from running
                log.exception("gateway drain failed; closing what is left at once")
        await super().shutdown(sockets)


def serve_gateway(app: Starlette, host: str, port: int, drain_window_s: float, **options: object) -> None:
    """Run ``app`` under uvicorn until SIGTERM or Ctrl-C, then drain (blocks)."""
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=HTTP_GRACE_S, **options)  # type: ignore[arg-type]
    DrainingServer(config, app, drain_window_s).run()

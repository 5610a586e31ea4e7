"""ASGI middleware: a request id on every request and its log lines, and request metrics."""

from __future__ import annotations

import logging
import time
import uuid

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("glasscast.gateway")


class RequestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("glasscast_http_requests", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=registry)
        self.latency = Histogram("glasscast_http_request_seconds", "HTTP request latency by route",
                                 ["method", "route"], registry=registry,
                                 buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


class RequestContextMiddleware:
    """Tags each request with ``X-Request-ID`` (kept from the client when sane) and measures it."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                route = scope.get("route")
                path = getattr(route, "path", "unmatched")
                elapsed = time.perf_counter() - start
                self.metrics.requests.labels(scope["method"], path, str(status)).inc()
                self.metrics.latency.labels(scope["method"], path).observe(elapsed)
                if status >= 500:
                    log.error("%s %s -> %s", scope["method"], scope["path"], status)

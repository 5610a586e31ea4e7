"""ASGI middleware: a request id on every request and its log lines, request metrics, and hot routes.

They run on every request, heartbeats and segments included (thousands a
second per gateway), so each is a plain ASGI callable with nothing per
request that it can build once: request ids are a per-process random prefix
and a counter rather than a ``uuid4()`` (a ``getrandom()`` system call each),
the Prometheus children for a route are looked up once and kept, and the
busiest routes are matched before the router's scan of every route.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Sequence

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateways.errors import (
    DEPENDENCY_ERRORS,
    ApiError,
    api_error_handler,
    dependency_error_handler,
    http_exception_handler,
)

log = logging.getLogger("glasscast.gateway")

MAX_REQUEST_ID_LENGTH = 64
# The methods metrics are labelled with (RFC 9110 section 9 and RFC 5789); any other method token a client
# sends is counted as "other", so a client cannot add a time series per made-up method.
METRIC_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# What the hot routes answer themselves: the app's errors, the router's, and its dependencies' (errors.py).
HANDLED: tuple[type[Exception], ...] = (ApiError, HTTPException, *DEPENDENCY_ERRORS)


class RequestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("glasscast_http_requests", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=registry)
        self.latency = Histogram("glasscast_http_request_seconds", "HTTP request latency by route",
                                 ["method", "route"], registry=registry,
                                 buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        # labels() takes a lock and builds a tuple per call; the children never change.
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._histograms: dict[tuple[str, str], Histogram] = {}

    def observe(self, method: str, route: str, status: int, elapsed_s: float) -> None:
        """Count one request and record its latency."""
        counter = self._counters.get((method, route, status))
        if counter is None:
            counter = self._counters[(method, route, status)] = self.requests.labels(method, route, str(status))
        histogram = self._histograms.get((method, route))
        if histogram is None:
            histogram = self._histograms[(method, route)] = self.latency.labels(method, route)
        counter.inc()
        histogram.observe(elapsed_s)


class RequestIds:
    """Request ids unique across processes: a random per-process prefix and a counter."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


def incoming_request_id(scope: Scope) -> str | None:
    """The client's ``X-Request-ID`` when it is sane (printable, at most 64 characters)."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            return text if 0 < len(text) <= MAX_REQUEST_ID_LENGTH and text.isprintable() else None
    return None


class RequestContextMiddleware:
    """Tags each request with ``X-Request-ID`` (kept from the client when sane) and measures it."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self.ids = RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope) or self.ids.next()
        header = (b"x-request-id", request_id.encode("latin-1"))
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in METRIC_METHODS else "other"
            self.metrics.observe(method, path, status, time.perf_counter() - start)
            if status >= 500:
                log.error("%s %s -> %s", scope["method"], scope["path"], status)
            structlog.contextvars.reset_contextvars(**tokens)


class HotRoutes:
    """Matches the busiest routes first, ahead of the router's scan of every route in order.

    Heartbeats and HLS requests are most of what a gateway answers, and they
    come late in the route list.  A route belongs here only if no route
    before it in the app can match its paths, so the answer is the router's.
    A path outside these routes' literal prefixes, or a method they do not
    take (405), goes on to the router.  These routes run outside Starlette's
    ``ExceptionMiddleware``, so the gateway's errors become responses here,
    with the app's own handlers.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[Route]) -> None:
        self.app = app
        # Each route with the literal start of its path: a cheap test before its regex.
        self.routes = tuple((route.path.split("{", 1)[0], route) for route in routes)
        self.prefixes = tuple({prefix for prefix, _ in self.routes})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefixes):
            path = scope["path"]
            for prefix, route in self.routes:
                if not path.startswith(prefix):
                    continue
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope["route"] = route
                    scope.update(child_scope)
                    await self._handle(route, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _handle(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sender(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await route.handle(scope, receive, sender)
        except HANDLED as exc:
            if started:
                raise
            request = Request(scope, receive)
            handler = (api_error_handler if isinstance(exc, ApiError) else http_exception_handler
                       if isinstance(exc, HTTPException) else dependency_error_handler)
            response = await handler(request, exc)
            await response(scope, receive, send)

"""The gateway's middleware (gateways/middleware.py) on a tiny Starlette app: request ids, metrics, hot routes."""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gateways.errors import ApiError, NotFound, api_error_handler, http_exception_handler
from gateways.middleware import HotRoutes, RequestContextMiddleware, RequestIds, RequestMetrics


async def which(request: Request) -> Response:
    return PlainTextResponse(f"{request.scope['route'].path} {request.path_params}")


async def missing(request: Request) -> Response:
    raise NotFound(f"no {request.path_params['name']}")


EARLY = [Route("/early", which), Route("/other/{name}", which)]
HOT = [Route("/hot/{n:int}", which, methods=["GET"]), Route("/hot/missing/{name}", missing)]


def app(registry: CollectorRegistry) -> Starlette:
    return Starlette(routes=[*EARLY, *HOT],
                     middleware=[Middleware(RequestContextMiddleware, metrics=RequestMetrics(registry)),
                                 Middleware(HotRoutes, routes=HOT)],
                     exception_handlers={ApiError: api_error_handler, HTTPException: http_exception_handler})


def client(registry: CollectorRegistry) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app(registry)), base_url="http://test")


async def test_hot_routes_answer_as_the_router_would() -> None:
    async with client(CollectorRegistry()) as http:
        r = await http.get("/hot/7")
        assert r.status_code == 200 and r.text == "/hot/{n:int} {'n': 7}"
        r = await http.get("/hot/missing/thing")  # an ApiError from a hot route: the app's problem document
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["detail"] == "no thing" and r.json()["instance"] == "/hot/missing/thing"
        r = await http.post("/hot/7")  # a method the route does not take: the router's 405
        assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}
        assert (await http.get("/hot/x")).status_code == 404  # no hot route matches: the router decides
        assert (await http.get("/other/a")).text == "/other/{name} {'name': 'a'}"


async def test_request_ids_are_kept_when_sane_and_made_otherwise() -> None:
    async with client(CollectorRegistry()) as http:
        assert (await http.get("/early", headers={"X-Request-ID": "abc-123"})).headers["x-request-id"] == "abc-123"
        made = {(await http.get("/early", headers={"X-Request-ID": "x" * 65})).headers["x-request-id"]
                for _ in range(3)}
        assert len(made) == 3 and all(len(i) == 32 for i in made)


def test_request_ids_differ_across_processes_and_requests() -> None:
    a, b = RequestIds(), RequestIds()
    ids = [a.next() for _ in range(100)] + [b.next() for _ in range(100)]
    assert len(set(ids)) == 200


async def test_metrics_count_hot_and_routed_requests_by_route_and_status() -> None:
    registry = CollectorRegistry()
    async with client(registry) as http:
        for path in ("/hot/1", "/hot/2", "/early", "/hot/missing/x", "/nowhere"):
            await http.get(path)

    def count(route: str, status: str) -> float | None:
        return registry.get_sample_value("glasscast_http_requests_total",
                                         {"method": "GET", "route": route, "status": status})

    assert count("/hot/{n:int}", "200") == 2 and count("/early", "200") == 1
    assert count("/hot/missing/{name}", "404") == 1 and count("unmatched", "404") == 1
    assert registry.get_sample_value("glasscast_http_request_seconds_count",
                                     {"method": "GET", "route": "/hot/{n:int}"}) == 2

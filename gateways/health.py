"""Health (``/healthz``: the process answers), readiness (``/readyz``: its dependencies
answer) and Prometheus metrics (``/metrics``)."""

from __future__ import annotations

import asyncio

import httpx
import redis
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateways.errors import Forbidden
from gateways.metrics_access import MetricsAccess
from gateways.services import services
from infra.log_redaction import redact


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def _check_valkey(request: Request) -> str | None:
    try:
        await services(request).redis.ping()
        return None
    except (redis.RedisError, OSError) as exc:
        return f"valkey: {exc}"


async def _check_kafka(request: Request) -> str | None:
    producer = services(request).producer
    try:
        await asyncio.to_thread(producer.metadata, 2.0)
        return None
    except Exception as exc:  # librdkafka raises KafkaException with varied causes
        return f"kafka: {exc}"


async def _check_registry(request: Request) -> str | None:
    url = services(request).settings.registry.url
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            (await client.get(f"{url.rstrip('/')}/subjects")).raise_for_status()
        return None
    except httpx.HTTPError as exc:  # its message names the URL, which may carry the registry's password
        return f"registry: {redact(str(exc))}"


async def _check_processors(request: Request) -> str | None:
    from views.readiness import ready_key

    svc = services(request)
    try:
        if await svc.redis.exists(ready_key(svc.settings)):
            return None
        return "processors: no worker has been assigned its partitions yet"
    except (redis.RedisError, OSError) as exc:
        return f"processors: {exc}"


async def readyz(request: Request) -> JSONResponse:
    problems = [p for p in await asyncio.gather(
        _check_valkey(request), _check_kafka(request), _check_registry(request),
        _check_processors(request)) if p]
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    """Prometheus metrics, for the networks and token the settings allow (gateways/metrics_access.py)."""
    svc = services(request)
    gateway = svc.settings.gateway
    access = MetricsAccess.of(gateway.metrics_networks, str(gateway.metrics_token))
    client = request.client.host if request.client is not None else None
    if not access.allows(client, request.headers.get("authorization")):
        raise Forbidden("metrics are open to the networks in GLASSCAST_GATEWAY_METRICS_NETWORKS, "
                        "or with the bearer token GLASSCAST_GATEWAY_METRICS_TOKEN", reason="metrics_restricted")
    return Response(generate_latest(svc.metrics), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]

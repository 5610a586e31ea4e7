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

from gateways.services import services


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
    except httpx.HTTPError as exc:
        return f"registry: {exc}"


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
    return Response(generate_latest(services(request).metrics), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]

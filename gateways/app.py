"""The Starlette edge gateway: ``create_app(settings)`` is a list of routes and middleware.

The Kafka producer, Valkey client and view store open in the lifespan and
reach handlers through ``app.state.services`` (STYLE.md, Starlette anchor).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from gateways import (accounts, channels, chat_history, directory, health, heartbeats, hls, openapi, playback,
                      streams, thumbs, web)
from gateways.chat import moderate as chat_moderate, ws as chat_ws
from gateways.chat.service import close_chat, open_chat
from gateways.errors import ApiError, api_error_handler, http_exception_handler
from gateways.middleware import HotRoutes, RequestContextMiddleware, RequestMetrics
from gateways.services import Services
from infra.errors import SettingsError
from infra.settings import Settings
from media.blob import FileBlobStore
from views.chat_history.errors import HistoryUnavailable
from views.store import ViewStore
from topics.admin import ensure_topics
from topics.catalogue import CATALOGUE
from topics.producer import EventProducer
from topics.runtime import make_serde

log = logging.getLogger("glasscast.gateway")

# uvicorn options for the gateway's WebSockets: no permessage-deflate (chat writes one pre-built
# frame to every socket, gateways/chat/fanout.py), and frames over 64 KiB close the socket (1009).
VALKEY_CONNECTIONS = 256  # per gateway process
VALKEY_POOL_TIMEOUT_S = 10.0
WEBSOCKET_OPTIONS = {"ws_per_message_deflate": False, "ws_max_size": 64 * 1024}


def create_app(settings: Settings) -> Starlette:
    """The gateway for ``settings``; nothing connects until the lifespan starts."""
    if not settings.auth.jwt_secret:
        raise SettingsError("GLASSCAST_AUTH_JWT_SECRET is empty; the gateway cannot sign tokens")
    if len(str(settings.auth.jwt_secret)) < 32:  # RFC 7518 section 3.2: HS256 keys of 256 bits or more
        raise SettingsError("GLASSCAST_AUTH_JWT_SECRET must be at least 32 characters")
    metrics = CollectorRegistry()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(ensure_topics, settings.kafka)
        serde = make_serde(settings)
        # Register every schema now so no request pays for it.
        await asyncio.to_thread(lambda: [serde.prepare(s.name, r) for s in CATALOGUE for r in s.records])
        producer = EventProducer(settings.kafka, serde)
        # A blocking pool: a burst of requests or chat connections waits for a connection rather than failing.
        client = aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(
            settings.valkey.url, max_connections=VALKEY_CONNECTIONS, timeout=VALKEY_POOL_TIMEOUT_S))
        svc = app.state.services = Services(settings=settings, redis=client,
                                            views=ViewStore(client, settings.valkey.key_prefix),
                                            producer=producer, metrics=metrics,
                                            origin=FileBlobStore(settings.data_dir / "origin"))
        chat = svc.extra["chat"] = await open_chat(settings, client)
        try:
            history = svc.extra[chat_history.STORE_KEY] = await chat_history.open_history(settings)
        except HistoryUnavailable as exc:  # replay answers 503 until a gateway restart finds the store
            log.warning("chat history store unavailable: %s", exc)
            history = None
        log.info("gateway ready on %s", settings.gateway_url)
        try:
            yield
        finally:
            await close_chat(chat)
            if history is not None:
                await history.close()
            await asyncio.to_thread(producer.close, 10.0)
            await client.aclose()
            serde.close()

    middleware = [Middleware(RequestContextMiddleware, metrics=RequestMetrics(metrics))]
    if settings.gateway.cors_origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(settings.gateway.cors_origins),
                                     allow_methods=["*"], allow_headers=["*"]))
    middleware.append(Middleware(HotRoutes, routes=[*heartbeats.routes, *hls.routes]))
    return Starlette(
        routes=[*health.routes, *accounts.routes, *channels.routes, *streams.routes, *playback.routes,
                *heartbeats.routes, *openapi.routes, *thumbs.routes, *hls.routes, *directory.routes,
                *chat_ws.routes, *chat_moderate.routes, *chat_history.routes, *web.routes],
        middleware=middleware,
        exception_handlers={ApiError: api_error_handler, HTTPException: http_exception_handler},
        lifespan=lifespan,
    )

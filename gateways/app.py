"""The Starlette edge gateway: ``create_app(settings)`` is a list of routes and middleware.

Everything the handlers share is one typed ``Services`` object, opened in the
lifespan (gateways/services.py) and reached through ``app.state.services``
(docs/ARCHITECTURE.md, "Gateway").
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from gateways import (
    accounts,
    analytics,
    avatars,
    bits,
    channels,
    chat_history,
    clips,
    directory,
    donations,
    eventsub,
    follows,
    health,
    heartbeats,
    hls,
    hosting,
    notifications,
    openapi,
    playback,
    profiles,
    raids,
    recommendations,
    streams,
    subscriptions,
    thumbs,
    videos,
    web,
)
from gateways.chat import moderate as chat_moderate
from gateways.chat import ws as chat_ws
from gateways.errors import (
    DEPENDENCY_ERRORS,
    ApiError,
    api_error_handler,
    dependency_error_handler,
    http_exception_handler,
)
from gateways.middleware import HotRoutes, RequestContextMiddleware, RequestMetrics
from gateways.payments import webhook as payments_webhook
from gateways.services import open_services
from infra.errors import SettingsError
from infra.settings import Settings

log = logging.getLogger("glasscast.gateway")

# uvicorn options for the gateway's WebSockets: no permessage-deflate (chat writes one pre-built
# frame to every socket, gateways/chat/fanout.py), and frames over 64 KiB close the socket (1009).
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
        async with open_services(settings, metrics) as svc:
            app.state.services = svc
            log.info("gateway ready on %s", settings.gateway_url)
            yield

    middleware = [Middleware(RequestContextMiddleware, metrics=RequestMetrics(metrics))]
    if settings.gateway.cors_origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(settings.gateway.cors_origins),
                                     allow_methods=["*"], allow_headers=["*"]))
    middleware.append(Middleware(HotRoutes, routes=[*heartbeats.routes, *hls.routes]))
    return Starlette(
        routes=[*health.routes, *accounts.routes, *channels.routes, *streams.routes, *playback.routes,
                *heartbeats.routes, *openapi.routes, *thumbs.routes, *hls.routes, *directory.routes,
                *chat_ws.routes, *chat_moderate.routes, *chat_history.routes, *follows.routes, *notifications.routes,
                *profiles.routes, *avatars.routes, *videos.routes, *clips.routes,
                *eventsub.routes, *raids.routes, *hosting.routes, *recommendations.routes,
                *subscriptions.routes, *bits.routes, *donations.routes, *analytics.routes,
                *payments_webhook.routes, *web.routes],
        middleware=middleware,
        exception_handlers={ApiError: api_error_handler, HTTPException: http_exception_handler,
                            # Valkey down: 503 with a reason, never a 500 (gateways/errors.py).
                            **{cls: dependency_error_handler for cls in DEPENDENCY_ERRORS}},
        lifespan=lifespan,
    )

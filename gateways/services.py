"""What gateway handlers share, opened in the app's lifespan and reached through ``request.app.state``."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from starlette.requests import Request

from gateways.auth import Principal, bearer_token, read_token
from gateways.errors import PayloadTooLarge, Unavailable
from gateways.validation import parse_object
from infra.settings import Settings
from media.blob import FileBlobStore
from views.store import ViewStore
from topics.errors import DeliveryError, SerializationError
from topics.producer import Ack, EventProducer


@dataclass
class Services:
    settings: Settings
    redis: aioredis.Redis
    views: ViewStore
    producer: EventProducer
    metrics: CollectorRegistry
    origin: FileBlobStore
    clock: Callable[[], float] = time.time
    extra: dict[str, Any] = field(default_factory=dict)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def envelope(self) -> dict[str, Any]:
        """The fields every event starts with."""
        return {"event_id": str(uuid.uuid4()), "occurred_at": self.now_ms()}

    async def emit(self, record: str, key: str, value: Mapping[str, Any]) -> Ack:
        """Produce an event and wait for the broker's acknowledgement."""
        try:
            return await self.producer.send(record, key, value)
        except DeliveryError as exc:
            raise Unavailable(f"the event log did not accept the change: {exc}") from exc
        except SerializationError as exc:  # a bug, not the client's fault: fail loudly
            raise RuntimeError(str(exc)) from exc

    async def wait_for(self, check: Callable[[], Awaitable[bool]]) -> bool:
        """Poll until the view reflects a change (read-your-writes), bounded by settings."""
        deadline = time.monotonic() + self.settings.gateway.consistency_wait_ms / 1000
        while True:
            if await check():
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)

    def principal(self, request: Request) -> Principal:
        token = bearer_token(request.headers.get("authorization"))
        auth = self.settings.auth
        return read_token(str(auth.jwt_secret), auth.jwt_issuer, token, int(self.clock()))


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, refusing bodies over the configured limit."""
    limit = services(request).settings.gateway.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
    return parse_object(bytes(body))

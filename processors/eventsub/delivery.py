"""Outbound webhook requests: one bounded POST, to public addresses only.

Requests go through httpcore with a network backend that resolves the
callback's host itself and connects only when every address is allowed
(``views.eventsub.address_allowed``), so the check and the connection use the
same DNS answer: a name that resolved to a public address when the
subscription was made cannot later send a delivery into the platform's own
network.  TLS still verifies the certificate against the host name (SNI).
Redirects are not followed (Twitch does not follow them either), and at most
``MAX_RESPONSE_BYTES`` of an answer are read.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import typing
from dataclasses import dataclass

import httpcore

from infra.settings import EventSubSettings
from views.eventsub import resolve_allowed

log = logging.getLogger("glasscast.processors.eventsub")

MAX_RESPONSE_BYTES = 64 * 1024  # a challenge is short; nothing else of an answer is used
NETWORK_ERRORS = (httpcore.ConnectError, httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError,
                  httpcore.UnsupportedProtocol, ssl.SSLError, OSError, TimeoutError)


@dataclass(frozen=True)
class Attempt:
    """What one request got: a 2xx (``ok``), another status, or a connection error."""

    ok: bool
    status: int | None
    body: bytes
    error: str | None = None

    def describe(self) -> str:
        return f"HTTP {self.status}" if self.status is not None else f"no answer ({self.error})"


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to allowed addresses of the host it resolves itself."""

    def __init__(self, allow_private: bool) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.allow_private = allow_private

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: typing.Iterable[typing.Any] | None = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolve_allowed(host, port, self.allow_private)
        except ValueError as exc:
            raise httpcore.ConnectError(str(exc)) from None
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host!r} timed out") from None
        error: Exception = httpcore.ConnectError(f"could not connect to {host!r}")
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: typing.Iterable[typing.Any] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks go over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class Sender:
    """POSTs webhook messages through one connection pool."""

    def __init__(self, settings: EventSubSettings) -> None:
        self.pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl.create_default_context(), max_connections=settings.max_in_flight,
            keepalive_expiry=5.0, network_backend=GuardedBackend(settings.allow_private_callbacks))

    async def post(self, url: str, headers: dict[str, str], body: bytes, timeout_s: float) -> Attempt:
        """One attempt, bounded by ``timeout_s`` in all (connect, send, answer)."""
        limits = {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": timeout_s}
        try:
            async with asyncio.timeout(timeout_s):
                async with self.pool.stream("POST", url, headers=list(headers.items()), content=body,
                                            extensions={"timeout": limits}) as response:
                    data = bytearray()
                    async for chunk in response.aiter_stream():
                        data += chunk
                        if len(data) > MAX_RESPONSE_BYTES:
                            break
                    return Attempt(200 <= response.status < 300, response.status, bytes(data[:MAX_RESPONSE_BYTES]))
        except NETWORK_ERRORS as exc:
            return Attempt(False, None, b"", f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    async def close(self) -> None:
        await self.pool.aclose()

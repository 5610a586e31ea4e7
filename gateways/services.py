"""The gateway's state: one typed object, opened in the app's lifespan and closed there.

``open_services`` makes every resource the handlers share (the Kafka
producer, the Valkey pool and views, the chat rooms and fan-out, the chat
history store, the origin cache, the LL-HLS live edge, the hot routes'
in-process caches, the derived secrets) and closes them in reverse order when the app stops.
Handlers reach it as ``services(request)`` (``app.state.services``) and
create nothing themselves (docs/ARCHITECTURE.md, "Gateway").  It sits on
``app.state`` rather than in a per-request lifespan state dict, which
Starlette copies for every request: the heartbeat and HLS routes are hot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Gauge
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from starlette.requests import ClientDisconnect, Request

from gateways.auth import KnownUsers, Principal, bearer_token, read_token, stream_key_secret
from gateways.chat.service import ChatContext, close_chat, open_chat
from gateways.errors import PayloadTooLarge, RequestTimeout, Unauthorized, Unavailable
from gateways.heartbeat_intake import Intake
from gateways.last_good import LastGood
from gateways.live_edge import EdgeFeed
from gateways.login_throttle import LoginThrottle
from gateways.origin_cache import OriginCache
from gateways.passwords import PasswordPool
from gateways.passwords_store import CredentialStore
from gateways.payments.provider import PaymentProvider
from gateways.payments.providers import open_provider
from gateways.playback_token import PlaybackClaims, derive_secret
from gateways.push_hub import PushHub
from gateways.validation import parse_object
from infra.settings import Settings
from media.blob import BlobStore
from media.blob_stores import open_store
from schemas.record import Record
from topics.admin import ensure_topics
from topics.catalogue import CATALOGUE
from topics.errors import DeliveryError, SerializationError
from topics.producer import Ack, EventProducer
from topics.runtime import make_serde
from topics.serde import AvroSerde
from views.analytics.cowatch import NeighbourCache
from views.analytics.store import AnalyticsStore, open_analytics
from views.chat_history.backends import open_history
from views.chat_history.errors import HistoryUnavailable
from views.chat_history.store import HistoryStore
from views.ledger_store import LedgerStore
from views.personal_data import PersonalKeys
from views.store import ViewStore

AVATAR_JOBS = 2  # avatar re-encodes at once per gateway

log = logging.getLogger("glasscast.gateway")

VALKEY_CONNECTIONS = 256  # per gateway process
VALKEY_POOL_TIMEOUT_S = 10.0
VALKEY_COMMAND_TIMEOUT_S = 5.0
VALKEY_RETRIES = 2  # per command, on a connection error or timeout
# How many live playlists' last renderings are kept to stand in while Valkey does not answer
# (gateways/last_good.py; how long: GLASSCAST_GATEWAY_PLAYLIST_LAST_GOOD_S).
PLAYLIST_LAST_GOOD_MAX = 10_000


@dataclass
class Services:
    """What gateway handlers share; every field is made in ``open_services``."""

    settings: Settings
    redis: aioredis.Redis
    views: ViewStore
    producer: EventProducer
    metrics: CollectorRegistry
    origin: BlobStore
    origin_cache: OriginCache  # single-flight reads and an LRU in front of ``origin`` (HLS, thumbnails)
    chat: ChatContext  # rooms, fan-out, rate limiter, classifier
    chat_history: HistoryStore | None  # None: the store did not open; replay answers 503
    heartbeats: Intake  # the heartbeat route's stream cache and event ids
    playlists: LastGood  # the last rendering of each live playlist, for a Valkey outage (gateways/hls.py)
    edge: EdgeFeed  # the LL-HLS live edge folded from media.parts, and the blocking reloads it wakes
    playback_secret: bytes  # HMAC key of playback tokens
    stream_key_secret: bytes  # HMAC key stream keys are derived with
    passwords: PasswordPool  # argon2 in its own bounded pool, and the credential store (gateways/passwords.py)
    login_throttle: LoginThrottle  # failed sign-ins per account and client, in Valkey
    personal_keys: PersonalKeys  # each user's key for their sealed e-mail, display name, bio (views/personal_data.py)
    push_hub: PushHub  # the notification sockets' one pub/sub connection (gateways/push_hub.py)
    payments: PaymentProvider  # sandbox or Stripe (gateways/payments/)
    ledger: LedgerStore  # bits balances, cheer holds, leaderboards (views/ledger_store.py)
    analytics: AnalyticsStore  # ClickHouse or the analytics process (views/analytics/store.py); connects lazily
    cowatch: NeighbourCache  # channel-to-channel co-watching for recommendations (gateways/recommendations.py)
    # The HLS origin's caches: stream id -> channel id (never changes), and tokens whose signature checked out.
    stream_channels: dict[str, str] = field(default_factory=dict)
    verified_tokens: dict[str, PlaybackClaims] = field(default_factory=dict)
    known_users: KnownUsers = field(default_factory=KnownUsers)  # user ids seen in the view store
    # Avatar re-encodes (gateways/avatars.py): a few at once per gateway, one at a time per user.
    avatar_jobs: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(AVATAR_JOBS))
    avatar_uploads: set[str] = field(default_factory=set)
    clock: Callable[[], float] = time.time

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def emit(self, event: Record, key: str) -> Ack:
        """Produce an event and wait for the broker's acknowledgement."""
        try:
            return await self.producer.send(event, key)
        except DeliveryError as exc:
            raise Unavailable(f"the event log did not accept the change: {exc}", reason="log_unavailable") from exc
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

    async def user_principal(self, request: Request) -> Principal:
        """The bearer token's principal, whose account must exist: a validly signed token is not enough."""
        principal = self.principal(request)
        await self.check_account(principal)
        return principal

    async def check_account(self, principal: Principal) -> None:
        """401 unless the principal's account exists, was not deleted and has not changed its password since
        the token was issued (cached a while: ``KnownUsers``)."""
        version = self.known_users.version(principal.user_id)
        if version is None:
            user = await self.views.get_user(principal.user_id)
            if user is None or user.deleted:
                raise Unauthorized("the token's account does not exist")
            version = user.credentials_version
            self.known_users.add(principal.user_id, version)
        if principal.credentials_version != version:
            raise Unauthorized("the password changed since this token was issued; log in again")


@contextlib.asynccontextmanager
async def open_services(settings: Settings, metrics: CollectorRegistry) -> AsyncIterator[Services]:
    """Open everything the handlers share; on exit, close it all (last opened first)."""
    async with contextlib.AsyncExitStack() as stack:
        await asyncio.to_thread(ensure_topics, settings.kafka)
        serde = make_serde(settings)
        stack.callback(serde.close)
        # Register every schema now so no request pays for it.
        await asyncio.to_thread(lambda: [serde.prepare(s.name, r) for s in CATALOGUE for r in s.records])
        producer = EventProducer(settings.kafka, serde)
        # A blocking pool: a burst of requests or chat connections waits for a connection rather than failing.
        # Bounded commands: a Valkey that stops answering (not just refusing) is a 503, not a hung request.
        # A command that finds its pooled connection closed (Valkey restarted) reconnects and is sent again,
        # a couple of times within a fraction of a second, so recovery costs no request an error.
        client = aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(
            settings.valkey.url, max_connections=VALKEY_CONNECTIONS, timeout=VALKEY_POOL_TIMEOUT_S,
            socket_timeout=VALKEY_COMMAND_TIMEOUT_S, socket_connect_timeout=VALKEY_COMMAND_TIMEOUT_S,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), VALKEY_RETRIES)))
        stack.push_async_callback(client.aclose)
        stack.push_async_callback(asyncio.to_thread, producer.close, 10.0)
        log_timeout_s = settings.chat.log_timeout_ms / 1000
        chat_log = chat_producer(settings, serde, log_timeout_s)
        stack.push_async_callback(asyncio.to_thread, chat_log.close, 10.0)
        chat = await open_chat(settings, client, chat_log, log_timeout_s)
        stack.push_async_callback(close_chat, chat)
        history = await _open_history(settings)
        if history is not None:
            stack.push_async_callback(history.close)
        edge = EdgeFeed(settings, serde)
        stack.push_async_callback(edge.close)
        await edge.start()  # a restarted gateway rebuilds the edge from the log before it serves
        Gauge("glasscast_hls_held_requests", "LL-HLS requests held for a part (blocking reload, preload hint)",
              registry=metrics).set_function(lambda: edge.held)
        Gauge("glasscast_live_edge_streams", "Streams in the LL-HLS live edge",
              registry=metrics).set_function(lambda: len(edge.edge))
        auth = settings.auth
        # Password hashing gets its own small pool; the credential store is opened once, here.
        passwords = PasswordPool(auth, await asyncio.to_thread(CredentialStore.open, settings.data_dir))
        stack.callback(passwords.close)
        await passwords.start()
        push_hub = PushHub(client, settings.notifications.sockets_per_user)
        stack.push_async_callback(push_hub.close)
        payments = open_provider(settings.payments)
        stack.push_async_callback(payments.close)
        analytics = open_analytics(settings)
        stack.push_async_callback(analytics.close)
        yield Services(
            settings=settings, redis=client, views=ViewStore(client, settings.valkey.key_prefix),
            producer=producer, metrics=metrics, origin=await asyncio.to_thread(open_store, settings, "origin"),
            origin_cache=OriginCache(settings.gateway.origin_cache_bytes), chat=chat, chat_history=history,
            heartbeats=Intake(), playlists=LastGood(settings.gateway.playlist_last_good_s, PLAYLIST_LAST_GOOD_MAX),
            edge=edge, passwords=passwords, login_throttle=LoginThrottle(client, settings.valkey.key_prefix, auth),
            personal_keys=await asyncio.to_thread(PersonalKeys.open, settings.data_dir), push_hub=push_hub,
            payments=payments, ledger=LedgerStore(client, settings.valkey.key_prefix), analytics=analytics,
            cowatch=NeighbourCache(analytics),
            playback_secret=derive_secret(str(auth.jwt_secret), str(auth.playback_secret)),
            stream_key_secret=stream_key_secret(str(auth.jwt_secret), str(auth.stream_key_secret)))


def chat_producer(settings: Settings, serde: AvroSerde, timeout_s: float) -> EventProducer:
    """The producer of chat messages: the log acknowledges a message, or refuses it, within ``timeout_s``.

    librdkafka itself gives up on a record after ``message.timeout.ms``, so a
    message refused to its sender is not delivered later behind its back (one
    already on the wire when the broker died may still be: replays dedupe by
    message id).  Not idempotent: an idempotent producer turns a restarted
    embedded broker, which has forgotten its producer ids, into a fatal error
    it never recovers from (UNKNOWN_PRODUCER_ID); one request in flight keeps
    the order that idempotence would have kept, and a retried duplicate is
    harmless because the history store keeps each message id once.
    """
    return EventProducer(settings.kafka, serde, **{
        "enable.idempotence": False, "max.in.flight.requests.per.connection": 1,
        "message.timeout.ms": max(1, int(timeout_s * 1000))})


async def _open_history(settings: Settings) -> HistoryStore | None:
    try:
        return await open_history(settings)
    except HistoryUnavailable as exc:  # replay answers 503 until a gateway restart finds the store
        log.warning("chat history store unavailable: %s", exc)
        return None


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, refusing bodies over the configured limit."""
    limit = services(request).settings.gateway.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and (
            len(declared) > 18 or int(declared) > limit):
        raise PayloadTooLarge(f"request body over {limit} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise PayloadTooLarge(f"request body over {limit} bytes")
    except ClientDisconnect:  # gone, or too slow (gateways/http_deadlines.py): nobody reads this answer
        raise RequestTimeout("the request body did not arrive in full") from None
    return parse_object(bytes(body))

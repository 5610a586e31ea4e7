"""EventSub subscriptions: the view, its fold, its Valkey keys, the sealed secrets and the callback rules.

A subscription is a small state machine folded from the ``eventsub`` topic
(docs/ARCHITECTURE.md, "EventSub"), with Twitch's status names:

    SubscriptionCreated  -> webhook_callback_verification_pending
    SubscriptionVerified -> enabled                                  (from pending only)
    SubscriptionRevoked  -> webhook_callback_verification_failed | notification_failures_exceeded
    SubscriptionDeleted  -> deleted (kept as a tombstone, listed nowhere)

Statuses only move forward, so the fold is idempotent and commutes with a
late redelivery: the gateway applies its own events at once and the
dispatcher folds them again from the log without undoing anything, and a
replayed ``SubscriptionCreated`` cannot bring a deleted subscription back.

The webhook secret is on the log only sealed (AES-256-GCM, the subscription id
as associated data) under a key derived from a platform secret (Twitch's rule:
10-100 ASCII characters); an analyst reading topics sees no secret.  Callbacks
must be https on public addresses unless ``eventsub.allow_private_callbacks``
says otherwise (also checked again at every connection by the dispatcher, so a
DNS answer that changes cannot point a delivery at the platform's own network).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import os
import socket
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis.exceptions import WatchError

from schemas.record import Record
from schemas.records.eventsub import (
    SubscriptionCreated,
    SubscriptionDeleted,
    SubscriptionRevoked,
    SubscriptionVerified,
)
from views.transactions import multi, unwatch

#: The types served now and their versions (Twitch's); the owner-only ones need the caller to own the channel.
SUPPORTED: dict[str, str] = {"stream.online": "1", "stream.offline": "1", "channel.update": "2",
                             "channel.follow": "2", "channel.chat.message": "1", "channel.subscribe": "1",
                             "channel.subscription.gift": "1", "channel.raid": "1", "channel.cheer": "1"}
# Twitch asks the broadcaster's channel:read:subscriptions scope for the subscription types, bits:read for cheers.
OWNER_ONLY = frozenset({"channel.follow", "channel.chat.message", "channel.subscribe", "channel.subscription.gift",
                        "channel.cheer"})

PENDING = "webhook_callback_verification_pending"
ENABLED = "enabled"
VERIFICATION_FAILED = "webhook_callback_verification_failed"
FAILURES_EXCEEDED = "notification_failures_exceeded"
DELETED = "deleted"
LIVE_STATUSES = frozenset({PENDING, ENABLED})

SECRET_MIN, SECRET_MAX = 10, 100  # Twitch: "between 10 and 100 characters"
CALLBACK_MAX_LENGTH = 2048
NONCE_BYTES = 12  # AES-GCM's standard nonce (NIST SP 800-38D, section 8.2)


@dataclass(frozen=True)
class SubscriptionView:
    """One subscription as the API lists it and the dispatcher uses it."""

    id: str
    user_id: str
    type: str
    version: str
    broadcaster_user_id: str
    moderator_user_id: str | None
    condition_user_id: str | None
    callback: str
    secret_sealed: str  # base64 of the nonce and the sealed secret (``seal``)
    status: str
    created_at_ms: int
    updated_at_ms: int

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> SubscriptionView:
        data: dict[str, Any] = json.loads(raw)
        return cls(**data)

    def condition(self) -> dict[str, str]:
        """The condition object, as Twitch spells it for this type."""
        cond = {"broadcaster_user_id": self.broadcaster_user_id}
        if self.type == "channel.follow":
            cond["moderator_user_id"] = self.moderator_user_id or self.user_id
        elif self.type == "channel.chat.message":
            cond["user_id"] = self.condition_user_id or self.user_id
        elif self.type == "channel.raid":  # one side given, the other "": condition_user_id marks "from"
            raiding = self.condition_user_id is not None
            return {"from_broadcaster_user_id": self.broadcaster_user_id if raiding else "",
                    "to_broadcaster_user_id": "" if raiding else self.broadcaster_user_id}
        return cond


def rfc3339(ms: int) -> str:
    """Twitch's timestamps: RFC 3339 in UTC with nanoseconds."""
    whole = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{ms % 1000:03d}000000Z"


def subscription_object(sub: SubscriptionView) -> dict[str, Any]:
    """A subscription as Twitch shows it (the API and every webhook message); never its secret."""
    return {"id": sub.id, "status": sub.status, "type": sub.type, "version": sub.version,
            "condition": sub.condition(), "transport": {"method": "webhook", "callback": sub.callback},
            "created_at": rfc3339(sub.created_at_ms), "cost": 0 if sub.type in OWNER_ONLY else 1}


def created_view(event: SubscriptionCreated) -> SubscriptionView:
    return SubscriptionView(
        id=event.subscription_id, user_id=event.user_id, type=event.type, version=event.version,
        broadcaster_user_id=event.broadcaster_user_id, moderator_user_id=event.moderator_user_id,
        condition_user_id=event.condition_user_id, callback=event.callback, secret_sealed=event.secret_sealed,
        status=PENDING, created_at_ms=event.occurred_at, updated_at_ms=event.occurred_at)


def fold(event: Record, view: SubscriptionView | None) -> SubscriptionView | None:
    """The subscription after ``event`` (pure; statuses only move forward)."""
    if isinstance(event, SubscriptionCreated):
        return view if view is not None else created_view(event)
    if view is None:
        return None
    if isinstance(event, SubscriptionVerified) and view.status == PENDING:
        return replace(view, status=ENABLED, updated_at_ms=event.occurred_at)
    if isinstance(event, SubscriptionRevoked) and view.status in LIVE_STATUSES:
        return replace(view, status=event.status, updated_at_ms=event.occurred_at)
    if isinstance(event, SubscriptionDeleted) and view.status != DELETED:
        return replace(view, status=DELETED, updated_at_ms=event.occurred_at)
    return view


def subscription_id_of(event: Record) -> str | None:
    """The subscription an ``eventsub`` record is about."""
    if isinstance(event, SubscriptionCreated | SubscriptionVerified | SubscriptionRevoked | SubscriptionDeleted):
        return event.subscription_id
    return None


class EventSubViews:
    """The subscriptions in Valkey: one JSON value each, a set per owner and per (type, broadcaster)."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.base = f"{prefix}eventsub:"

    def k_sub(self, sub_id: str) -> str:
        return f"{self.base}sub:{sub_id}"

    def k_user(self, user_id: str) -> str:
        return f"{self.base}user:{user_id}"

    def k_match(self, type_: str, broadcaster_user_id: str) -> str:
        return f"{self.base}match:{type_}:{broadcaster_user_id}"

    def k_failures(self, sub_id: str) -> str:
        return f"{self.base}failures:{sub_id}"

    async def get(self, sub_id: str) -> SubscriptionView | None:
        raw = await self.r.get(self.k_sub(sub_id))
        return None if raw is None else SubscriptionView.from_json(raw)

    async def _many(self, set_key: str) -> list[SubscriptionView]:
        ids = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in await self.r.smembers(set_key))
        raws = await self.r.mget([self.k_sub(i) for i in ids]) if ids else []
        views = [SubscriptionView.from_json(raw) for raw in raws if raw is not None]
        return [v for v in views if v.status != DELETED]

    async def of_user(self, user_id: str) -> list[SubscriptionView]:
        """The owner's subscriptions, oldest first."""
        return sorted(await self._many(self.k_user(user_id)), key=lambda v: (v.created_at_ms, v.id))

    async def matching(self, type_: str, broadcaster_user_id: str) -> list[SubscriptionView]:
        """Every subscription of a type on a broadcaster (any status but deleted)."""
        return await self._many(self.k_match(type_, broadcaster_user_id))

    async def apply(self, event: Record) -> SubscriptionView | None:
        """Fold one ``eventsub`` record into the view (optimistic: retried if another writer got there first)."""
        sub_id = subscription_id_of(event)
        if sub_id is None:
            return None
        key = self.k_sub(sub_id)
        async with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    old = None if raw is None else SubscriptionView.from_json(raw)
                    new = fold(event, old)
                    if new is None or new == old:
                        await unwatch(pipe)
                        return new
                    multi(pipe)
                    pipe.set(key, new.to_json())
                    if new.status == DELETED:
                        pipe.srem(self.k_user(new.user_id), new.id)
                        pipe.srem(self.k_match(new.type, new.broadcaster_user_id), new.id)
                        pipe.delete(self.k_failures(new.id))
                    else:
                        pipe.sadd(self.k_user(new.user_id), new.id)
                        pipe.sadd(self.k_match(new.type, new.broadcaster_user_id), new.id)
                    await pipe.execute()
                    return new
                except WatchError:
                    continue

    async def failed(self, sub_id: str) -> int:
        """Count one more failed delivery attempt in a row; returns the count."""
        return int(await self.r.incr(self.k_failures(sub_id)))

    async def succeeded(self, sub_id: str) -> None:
        await self.r.delete(self.k_failures(sub_id))


# -- sealed secrets -----------------------------------------------------------------------------

def sealing_key(jwt_secret: str, secret_key: str) -> bytes:
    """The AES-256 key webhook secrets are sealed with: from ``eventsub.secret_key``, else the JWT secret."""
    if secret_key:
        return hashlib.sha256(secret_key.encode()).digest()
    return hmac.new(jwt_secret.encode(), b"glasscast eventsub webhook secrets v1", hashlib.sha256).digest()


def seal(key: bytes, subscription_id: str, secret: str) -> str:
    """The secret sealed for the log: base64 of the nonce and the ciphertext (events carry no raw bytes)."""
    nonce = os.urandom(NONCE_BYTES)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, secret.encode(), subscription_id.encode())).decode()


def unseal(key: bytes, subscription_id: str, sealed: str) -> str | None:
    """The secret, or None when it was sealed under another key (the platform secret changed)."""
    try:
        data = base64.b64decode(sealed, validate=True)
        return AESGCM(key).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], subscription_id.encode()).decode()
    except (InvalidTag, ValueError):
        return None


def secret_problem(secret: object) -> str | None:
    """What is wrong with a webhook secret, or None (never echoes it)."""
    if not isinstance(secret, str) or not secret.isascii() or not SECRET_MIN <= len(secret) <= SECRET_MAX:
        return f"transport.secret must be a string of {SECRET_MIN} to {SECRET_MAX} ASCII characters"
    if not secret.isprintable():
        return "transport.secret must not contain control characters"
    return None


# -- callbacks ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Callback:
    host: str
    port: int


def parse_callback(url: object, allow_private: bool) -> Callback:
    """The callback's host and port; ``ValueError`` says what is wrong with it."""
    if not isinstance(url, str) or not url or len(url) > CALLBACK_MAX_LENGTH or not url.isascii():
        raise ValueError(f"transport.callback must be a URL of at most {CALLBACK_MAX_LENGTH} ASCII characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("transport.callback is not a valid URL") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise ValueError("transport.callback must be an https URL")
    if not parts.hostname or parts.username is not None or parts.password is not None or parts.fragment:
        raise ValueError("transport.callback must name a host, without credentials or a fragment")
    if any(c.isspace() or ord(c) < 0x21 for c in url):
        raise ValueError("transport.callback must not contain spaces or control characters")
    return Callback(parts.hostname, port or (443 if parts.scheme == "https" else 80))


def address_allowed(address: str, allow_private: bool) -> bool:
    """Whether a delivery may connect to ``address``: a public one, or any with the setting."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if allow_private:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve_allowed(host: str, port: int, allow_private: bool, timeout_s: float = 5.0) -> list[str]:
    """The addresses ``host`` resolves to; ``ValueError`` if it does not, or if any of them is not public."""
    try:
        async with asyncio.timeout(timeout_s):
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, TimeoutError):
        raise ValueError(f"transport.callback host {host!r} does not resolve") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise ValueError(f"transport.callback host {host!r} does not resolve")
    refused = [a for a in addresses if not address_allowed(a, allow_private)]
    if refused:
        raise ValueError(f"transport.callback resolves to a loopback, private or link-local address ({refused[0]}); "
                         "callbacks must be public")
    return addresses

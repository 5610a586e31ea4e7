"""Paid subscriptions as views: each user's subscription to a channel, and each channel's subscribers.

Folded from ``billing.subscriptions`` (keyed ``user_id:channel_id``, so one
subscription's events stay in order) by the views agent, beside the chat
rooms' entitlement hash (views/chat_rooms.py).  Keys under the Valkey prefix:

    view:subscription:{user}:{channel}     JSON SubscriptionView (kept after it ends: months carry on)
    view:channel-subscribers:{channel}     sorted set user id -> expires at (ms), while not ended
    view:user-subscriptions:{user}         sorted set channel id -> expires at (ms), while not ended

A view records the log offset of the last event folded into it (``seq``), so a
redelivered event changes nothing; and since a subscription's months only grow,
a period granted again later in the log (a decision produced twice, once
late) changes nothing either, nor does the expiry of a period since renewed.  Twitch counts a channel's "sub points" by
tier: 1 for tier 1 (1000), 2 for tier 2 (2000), 6 for tier 3 (3000)
(``POINTS``).

Random gifts go to signed-in viewers who watched or chatted the channel
recently.  That is exactly the notification processor's engagement index
(processors/notifications/index.py: ``notify:engaged:{channel}``, a sorted set
user id -> last heartbeat or chat message, folded from signed-in
``viewer.heartbeats`` and ``chat.messages``); ``recent_viewers`` reads it here,
where the gateway may (tests/unit/test_subscriptions_view.py keeps the key the same).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, replace
from typing import Any, cast

import redis.asyncio as aioredis

from schemas.record import Record
from schemas.records.billing import (
    SubscriptionCancelRequested,
    SubscriptionEnded,
    SubscriptionRenewed,
    SubscriptionStarted,
)
from views.fold import Applied

#: Twitch's tier ids and the enum symbols the log carries.
TIERS: dict[int, str] = {1000: "TIER_1", 2000: "TIER_2", 3000: "TIER_3"}
TIER_IDS: dict[str, int] = {symbol: tier for tier, symbol in TIERS.items()}
#: Sub points per tier, as Twitch counts them (tier 3 is worth 6).
POINTS: dict[str, int] = {"TIER_1": 1, "TIER_2": 2, "TIER_3": 6}

SUBSCRIPTION_NAMESPACE = uuid.UUID("0f6d1c2a-8a43-4c4e-9a55-3e1f7b0c9d21")


def subscription_id(user_id: str, channel_id: str) -> str:
    """The subscription of a user to a channel: the same id for every period, renewal and gap."""
    return str(uuid.uuid5(SUBSCRIPTION_NAMESPACE, f"{user_id}:{channel_id}"))


SUBSCRIPTION_RECORDS: frozenset[type[Record]] = frozenset(
    {SubscriptionStarted, SubscriptionRenewed, SubscriptionEnded, SubscriptionCancelRequested})


@dataclass(frozen=True)
class SubscriptionView:
    """One user's subscription to one channel, as the log says it stands."""

    subscription_id: str
    user_id: str
    channel_id: str
    tier: str
    started_at_ms: int  # when this run of periods began
    expires_at_ms: int
    months_total: int
    is_gift: bool = False
    gifted_by_user_id: str | None = None
    cancelled: bool = False  # no renewal is taken; it ends at expires_at
    ended: bool = False
    end_reason: str | None = None
    provider_subscription_ref: str | None = None
    seq: int = -1  # log offset of the last event folded in

    def active(self, now_ms: int) -> bool:
        return not self.ended and self.expires_at_ms > now_ms

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SubscriptionView:
        return cls(**data)

    def public(self, now_ms: int) -> dict[str, Any]:
        """The API's shape of it."""
        return {"subscription_id": self.subscription_id, "user_id": self.user_id, "channel_id": self.channel_id,
                "tier": str(TIER_IDS.get(self.tier, 1000)), "months_total": self.months_total,
                "started_at_ms": self.started_at_ms, "expires_at_ms": self.expires_at_ms,
                "is_gift": self.is_gift, "gifted_by_user_id": self.gifted_by_user_id,
                "cancelled": self.cancelled, "active": self.active(now_ms),
                "status": "ended" if self.ended else "cancelled" if self.cancelled else "active",
                "end_reason": self.end_reason}


SubscriptionEvent = SubscriptionStarted | SubscriptionRenewed | SubscriptionEnded | SubscriptionCancelRequested


def fold(event: Applied[SubscriptionEvent], old: SubscriptionView | None) -> SubscriptionView | None:
    """The view after one event (None: nothing changes); a redelivered or older event changes nothing."""
    e, offset = event.value, event.offset
    if old is not None and offset <= old.seq:
        return None
    if old is not None and isinstance(e, SubscriptionStarted | SubscriptionRenewed) and (
            e.months_total <= old.months_total):
        return None  # a period already granted
    if old is not None and isinstance(e, SubscriptionEnded) and e.reason == "EXPIRED" and (
            e.occurred_at < old.expires_at_ms):
        return None  # the end of a period that was renewed after all
    if isinstance(e, SubscriptionStarted):
        return SubscriptionView(
            subscription_id=e.subscription_id, user_id=e.user_id, channel_id=e.channel_id, tier=e.tier,
            started_at_ms=e.occurred_at, expires_at_ms=e.expires_at, months_total=e.months_total,
            is_gift=e.is_gift, gifted_by_user_id=e.gifted_by_user_id,
            provider_subscription_ref=e.provider_subscription_ref, seq=offset)
    if isinstance(e, SubscriptionRenewed):
        if old is None:  # a renewal whose start is not in this log (a trimmed history): start from it
            return SubscriptionView(
                subscription_id=e.subscription_id, user_id=e.user_id, channel_id=e.channel_id, tier=e.tier,
                started_at_ms=e.occurred_at, expires_at_ms=e.expires_at, months_total=e.months_total,
                is_gift=e.is_gift, gifted_by_user_id=e.gifted_by_user_id,
                provider_subscription_ref=e.provider_subscription_ref, seq=offset)
        return replace(old, tier=e.tier, expires_at_ms=e.expires_at, months_total=e.months_total, ended=False,
                       end_reason=None, is_gift=e.is_gift, gifted_by_user_id=e.gifted_by_user_id,
                       provider_subscription_ref=e.provider_subscription_ref or old.provider_subscription_ref,
                       seq=offset)
    if old is None:  # an end or a cancellation of a subscription this log never started
        return None
    if isinstance(e, SubscriptionEnded):
        return replace(old, ended=True, end_reason=e.reason, seq=offset)
    return replace(old, cancelled=True, seq=offset)


def points(views: list[SubscriptionView]) -> int:
    """A channel's sub points, as Twitch counts them."""
    return sum(POINTS.get(v.tier, 1) for v in views)


class Subscriptions:
    """Read and write the subscription views in Valkey."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = prefix

    def k_sub(self, user_id: str, channel_id: str) -> str:
        return f"{self.prefix}view:subscription:{user_id}:{channel_id}"

    def k_channel(self, channel_id: str) -> str:
        return f"{self.prefix}view:channel-subscribers:{channel_id}"

    def k_user(self, user_id: str) -> str:
        return f"{self.prefix}view:user-subscriptions:{user_id}"

    def k_engaged(self, channel_id: str) -> str:
        """The notification processor's engagement index of the channel (see the module docstring)."""
        return f"{self.prefix}notify:engaged:{channel_id}"

    async def get(self, user_id: str, channel_id: str) -> SubscriptionView | None:
        raw = await self.r.get(self.k_sub(user_id, channel_id))
        return None if raw is None else SubscriptionView.from_json(json.loads(raw))

    async def apply(self, event: Applied[Record]) -> bool:
        """Fold one event into the views; False if it is not a subscription event or changed nothing."""
        e = event.value
        if type(e) not in SUBSCRIPTION_RECORDS:
            return False
        assert isinstance(e, SubscriptionStarted | SubscriptionRenewed | SubscriptionEnded
                          | SubscriptionCancelRequested)
        old = await self.get(e.user_id, e.channel_id)
        new = fold(Applied(event.offset, e), old)
        if new is None:
            return False
        async with self.r.pipeline(transaction=True) as tx:
            tx.set(self.k_sub(new.user_id, new.channel_id), json.dumps(new.to_json(), sort_keys=True))
            if new.ended:
                tx.zrem(self.k_channel(new.channel_id), new.user_id)
                tx.zrem(self.k_user(new.user_id), new.channel_id)
            else:
                tx.zadd(self.k_channel(new.channel_id), {new.user_id: new.expires_at_ms})
                tx.zadd(self.k_user(new.user_id), {new.channel_id: new.expires_at_ms})
            await tx.execute()
        return True

    async def _views(self, keys: list[str]) -> list[SubscriptionView]:
        raw = await self.r.mget(keys) if keys else []
        return [SubscriptionView.from_json(json.loads(x)) for x in raw if x is not None]

    async def of_user(self, user_id: str, now_ms: int) -> list[SubscriptionView]:
        """The user's subscriptions that have not expired, the one expiring last first."""
        members = cast("list[bytes]", await self.r.zrevrangebyscore(self.k_user(user_id), "+inf", f"({now_ms}"))
        return await self._views([self.k_sub(user_id, _text(m)) for m in members])

    async def of_channel(self, channel_id: str, now_ms: int) -> list[SubscriptionView]:
        """The channel's subscribers whose subscription runs now, the one expiring last first."""
        key = self.k_channel(channel_id)
        members = [_text(m) for m in cast("list[bytes]", await self.r.zrevrangebyscore(key, "+inf", f"({now_ms}"))]
        return [s for s in await self._views([self.k_sub(u, channel_id) for u in members]) if s.active(now_ms)]

    async def subscribed_among(self, channel_id: str, user_ids: list[str], now_ms: int) -> set[str]:
        """Those of ``user_ids`` subscribed to the channel now."""
        if not user_ids:
            return set()
        scores = await self.r.zmscore(self.k_channel(channel_id), user_ids)
        return {u for u, s in zip(user_ids, scores, strict=True) if s is not None and s > now_ms}

    async def recent_viewers(self, channel_id: str, since_ms: int) -> list[str]:
        """Signed-in users who watched or chatted the channel since ``since_ms``, most recent first."""
        raw = cast("list[bytes]", await self.r.zrevrangebyscore(self.k_engaged(channel_id), "+inf", since_ms))
        return [_text(m) for m in raw]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

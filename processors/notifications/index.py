"""The notification processor's own keys in Valkey: who wants go-live notifications, who is engaged.

Under ``settings.valkey.key_prefix``, outside ``view:`` (``rebuild-views`` does not
replay into them; the processor's consumer group folds them from the log):

    notify:followers:{channel}   set of user ids following with notifications on
    notify:engaged:{channel}     sorted set user id -> last watched or chatted (ms)
    notify:last:{channel}        JSON LastNotified: the broadcast that last notified
    notify:emailed:{id}          set once a notification's e-mail was sent (a redelivery skips it)

Follows are folded with SADD/SREM in log order (the topic is keyed by
follower:channel, so a pair's events stay in order), which is idempotent under
redelivery; engagement keeps the latest time per user and is trimmed to its window.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import cast

import redis.asyncio as aioredis

from processors.notifications.plan import LastNotified

MEMBERS_MAX = 5000  # members asked about in one SMISMEMBER
EMAILED_TTL_S = 7 * 86_400


@dataclass(frozen=True)
class FollowChange:
    """A follow fact as the index needs it: notifications on (True) or off/unfollowed (False)."""

    channel_id: str
    user_id: str
    notify: bool


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class NotifyIndex:
    """The follower and engagement index, and the fan-out's bookkeeping."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = prefix

    def k_followers(self, channel_id: str) -> str:
        return f"{self.prefix}notify:followers:{channel_id}"

    def k_engaged(self, channel_id: str) -> str:
        return f"{self.prefix}notify:engaged:{channel_id}"

    def k_last(self, channel_id: str) -> str:
        return f"{self.prefix}notify:last:{channel_id}"

    def k_emailed(self, notification_id: str) -> str:
        return f"{self.prefix}notify:emailed:{notification_id}"

    async def apply_follows(self, changes: Sequence[FollowChange]) -> None:
        """Fold follow changes, in log order, in one pipeline."""
        pipe = self.r.pipeline(transaction=False)
        for c in changes:
            if c.notify:
                pipe.sadd(self.k_followers(c.channel_id), c.user_id)
            else:
                pipe.srem(self.k_followers(c.channel_id), c.user_id)
        await pipe.execute()

    async def touch_engaged(self, seen: dict[tuple[str, str], int], window_ms: int) -> None:
        """Record (channel, user) -> last seen ms; keeps the later time, expires with the window."""
        pipe = self.r.pipeline(transaction=False)
        for (channel_id, user_id), at_ms in seen.items():
            key = self.k_engaged(channel_id)
            pipe.zadd(key, {user_id: at_ms}, gt=True)
            pipe.pexpire(key, window_ms)
        await pipe.execute()

    async def engaged(self, channel_id: str, since_ms: int) -> set[str]:
        """Users who watched or chatted the channel since ``since_ms``."""
        key = self.k_engaged(channel_id)
        await self.r.zremrangebyscore(key, "-inf", f"({since_ms}")
        return {text(m) for m in cast("list[bytes]", await self.r.zrangebyscore(key, since_ms, "+inf"))}

    async def followers(self, channel_id: str, batch: int) -> AsyncIterator[list[str]]:
        """The channel's followers with notifications on, about ``batch`` at a time.

        SSCAN keeps memory bounded for any follower count; it may repeat a member when the set is rehashed
        meanwhile, which costs nothing (the same notification id, deduplicated by the feed).
        """
        cursor = 0
        key = self.k_followers(channel_id)
        while True:
            cursor, members = await self.r.sscan(key, cursor=cursor, count=batch)
            if members:
                yield [text(m) for m in members]
            if int(cursor) == 0:
                return

    async def follower_count(self, channel_id: str) -> int:
        """How many follow the channel with notifications on."""
        return int(await self.r.scard(self.k_followers(channel_id)))

    async def notified_of(self, channel_id: str, user_ids: Sequence[str]) -> list[str]:
        """Those of ``user_ids`` who follow the channel with notifications on, in the same order."""
        out: list[str] = []
        for i in range(0, len(user_ids), MEMBERS_MAX):
            chunk = list(user_ids[i:i + MEMBERS_MAX])
            flags = await self.r.smismember(self.k_followers(channel_id), chunk)
            out += [u for u, on in zip(chunk, flags, strict=True) if on]
        return out

    async def last_notified(self, channel_id: str) -> LastNotified | None:
        raw = await self.r.get(self.k_last(channel_id))
        if raw is None:
            return None
        data = json.loads(raw)
        return LastNotified(str(data["stream_id"]), int(data["started_at_ms"]))

    async def set_last_notified(self, channel_id: str, last: LastNotified) -> None:
        await self.r.set(self.k_last(channel_id),
                         json.dumps({"stream_id": last.stream_id, "started_at_ms": last.started_at_ms}))

    async def emailed(self, notification_ids: Sequence[str]) -> list[bool]:
        if not notification_ids:
            return []
        values = await self.r.mget([self.k_emailed(n) for n in notification_ids])
        return [v is not None for v in values]

    async def mark_emailed(self, notification_id: str) -> None:
        await self.r.set(self.k_emailed(notification_id), b"1", ex=EMAILED_TTL_S)

"""The in-app notification feed in Valkey: a user's notifications, newest first, with an unread count.

Keys under ``settings.valkey.key_prefix``:

    notif:feed:{user}     sorted set notification id -> feed score (delivery time, see ``feed_score``)
    notif:item:{user}     hash notification id -> JSON FeedItem
    notif:unread:{user}   set of unread notification ids
    notif:push:{user}     pub/sub channel: each newly added item, for open notification sockets

They are not under ``view:``: the deliverer writes them as it delivers, and
read marks are no event, so ``rebuild-views`` (which drops ``view:*`` and
replays the view folds) must leave them alone.

``add`` is one Lua script per item, so a redelivered notification (at-least-once
delivery) is recognised by its id and neither listed nor pushed twice; the feed keeps
the newest ``feed_max`` items.  Pages go by score: the cursor is the last score seen.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

import redis.asyncio as aioredis

# KEYS: item hash, feed zset, unread set.  ARGV: id, JSON, score, feed_max.  1 if added, 0 if already there.
_ADD = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if extra > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, extra - 1)) do
    redis.call('ZREM', KEYS[2], old)
    redis.call('HDEL', KEYS[1], old)
    redis.call('SREM', KEYS[3], old)
  end
end
return 1
"""

PAGE_MAX = 100


@dataclass(frozen=True)
class FeedItem:
    """One notification as the feed shows it."""

    id: str
    kind: str
    title: str
    body: str
    url: str | None
    channel_id: str | None
    stream_id: str | None
    queued_at_ms: int
    delivered_at_ms: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeedItem:
        return cls(**data)


@dataclass(frozen=True)
class FeedPage:
    """A page of the feed: items with their read state, the unread count and the next cursor."""

    items: list[tuple[FeedItem, bool]]  # (item, read)
    unread: int
    next_cursor: str | None


def feed_score(item: FeedItem) -> int:
    """Delivery time in ms times 1000 plus a hash of the id: unique enough to page by, exact in a double."""
    return item.delivered_at_ms * 1000 + zlib.crc32(item.id.encode()) % 1000


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class NotificationFeed:
    """Every user's feed, unread set and push channel."""

    def __init__(self, client: aioredis.Redis, prefix: str, feed_max: int = 200) -> None:
        self.r = client
        self.prefix = prefix
        self.feed_max = feed_max
        self._add = client.register_script(_ADD)

    def k_feed(self, user_id: str) -> str:
        return f"{self.prefix}notif:feed:{user_id}"

    def k_item(self, user_id: str) -> str:
        return f"{self.prefix}notif:item:{user_id}"

    def k_unread(self, user_id: str) -> str:
        return f"{self.prefix}notif:unread:{user_id}"

    def k_push(self, user_id: str) -> str:
        return f"{self.prefix}notif:push:{user_id}"

    async def add(self, items: Sequence[tuple[str, FeedItem]]) -> list[bool]:
        """Add (user id, item) pairs in one pipeline; True for each that was new (and was pushed)."""
        pipe = self.r.pipeline(transaction=False)
        for user_id, item in items:
            await self._add(keys=[self.k_item(user_id), self.k_feed(user_id), self.k_unread(user_id)],
                            args=[item.id, json.dumps(item.to_json()), feed_score(item), self.feed_max],
                            client=pipe)
        added = [bool(v) for v in await pipe.execute()]
        new = [(user_id, item) for (user_id, item), ok in zip(items, added, strict=True) if ok]
        if new:
            pipe = self.r.pipeline(transaction=False)
            for user_id, _item in new:
                pipe.scard(self.k_unread(user_id))
            unread = await pipe.execute()
            pipe = self.r.pipeline(transaction=False)
            for (user_id, item), count in zip(new, unread, strict=True):
                pipe.publish(self.k_push(user_id), json.dumps({"notification": {**item.to_json(), "read": False},
                                                               "unread_count": int(count)}))
            await pipe.execute()
        return added

    async def page(self, user_id: str, cursor: int | None, limit: int) -> FeedPage:
        """Items older than ``cursor`` (a score), newest first."""
        top = f"({cursor}" if cursor is not None else "+inf"
        rows = cast("list[tuple[bytes, float]]", await self.r.zrevrangebyscore(
            self.k_feed(user_id), top, "-inf", start=0, num=limit + 1, withscores=True))
        more = len(rows) > limit
        rows = rows[:limit]
        ids = [text(m) for m, _ in rows]
        if not ids:
            return FeedPage([], await self.unread(user_id), None)
        pipe = self.r.pipeline(transaction=False)
        pipe.hmget(self.k_item(user_id), ids)
        for nid in ids:
            pipe.sismember(self.k_unread(user_id), nid)
        pipe.scard(self.k_unread(user_id))
        results = await pipe.execute()
        raw_items, flags, unread = results[0], results[1:-1], int(results[-1])
        items = [(FeedItem.from_json(json.loads(raw)), not bool(flag))
                 for raw, flag in zip(raw_items, flags, strict=True) if raw is not None]
        next_cursor = str(int(rows[-1][1])) if more else None
        return FeedPage(items, unread, next_cursor)

    async def unread(self, user_id: str) -> int:
        return int(await self.r.scard(self.k_unread(user_id)))

    async def mark_read(self, user_id: str, ids: Sequence[str] | None) -> int:
        """Mark some (or, with None, all) notifications read; the unread count after."""
        if ids is None:
            await self.r.delete(self.k_unread(user_id))
            return 0
        if ids:
            await self.r.srem(self.k_unread(user_id), *ids)
        return await self.unread(user_id)

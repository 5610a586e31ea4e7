"""The in-app notification feed in Valkey: a user's notifications, newest first, with an unread count.

Keys under ``settings.valkey.key_prefix``:

    notif:feed:{user}     sorted set notification id -> feed score (delivery time, see ``feed_score``)
    notif:item:{user}     hash notification id -> JSON FeedItem
    notif:unread:{user}   set of unread notification ids
    notif:push:{user}     pub/sub channel: each newly added item, for open notification sockets

They are not under ``view:``: the deliverer writes them as it delivers, and
read marks are no event, so ``rebuild-views`` (which drops ``view:*`` and
replays the view folds) must leave them alone.

``add`` is one Lua script call per batch of items, atomic per item: a redelivered
notification (at-least-once delivery) is recognised by its id and neither listed
nor pushed twice, and a new one is pushed with the unread count it made; the feed
keeps the newest ``feed_max`` items.  The script names every key it touches
(four per item), which a single Valkey serves; a Valkey cluster would need the
batch split by hash slot.  Pages go by score: the cursor is the last score seen.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis

# KEYS: per item its item hash, feed zset, unread set and push channel.  ARGV: feed_max, then per item its id,
# JSON, score and push message less its end (the unread count and "}" are appended here).
# Returns per item 1 if added (and pushed), 0 if it was there already.
_ADD = """
local feed_max = tonumber(ARGV[1])
local out = {}
for i = 0, #KEYS / 4 - 1 do
  local item, feed, unread, push = KEYS[4 * i + 1], KEYS[4 * i + 2], KEYS[4 * i + 3], KEYS[4 * i + 4]
  local id = ARGV[4 * i + 2]
  if redis.call('HSETNX', item, id, ARGV[4 * i + 3]) == 0 then
    out[i + 1] = 0
  else
    redis.call('ZADD', feed, ARGV[4 * i + 4], id)
    redis.call('SADD', unread, id)
    local extra = redis.call('ZCARD', feed) - feed_max
    if extra > 0 then
      for _, old in ipairs(redis.call('ZRANGE', feed, 0, extra - 1)) do
        redis.call('ZREM', feed, old)
        redis.call('HDEL', item, old)
        redis.call('SREM', unread, old)
      end
    end
    redis.call('PUBLISH', push, ARGV[4 * i + 5] .. redis.call('SCARD', unread) .. '}')
    out[i + 1] = 1
  end
end
return out
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
        return {"id": self.id, "kind": self.kind, "title": self.title, "body": self.body, "url": self.url,
                "channel_id": self.channel_id, "stream_id": self.stream_id, "queued_at_ms": self.queued_at_ms,
                "delivered_at_ms": self.delivered_at_ms}

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
        """Add (user id, item) pairs in one script call; True for each that was new (and was pushed)."""
        if not items:
            return []
        keys: list[str] = []
        args: list[str | int] = [self.feed_max]
        for user_id, item in items:
            data = json.dumps(item.to_json())
            keys += [self.k_item(user_id), self.k_feed(user_id), self.k_unread(user_id), self.k_push(user_id)]
            # The push message: {"notification": {...item, "read": false}, "unread_count": N}
            push = f'{{"notification": {data[:-1]}, "read": false}}, "unread_count": '
            args += [item.id, data, feed_score(item), push]
        return [bool(v) for v in await self._add(keys=keys, args=args)]

    async def erase(self, user_id: str) -> None:
        """Drop a user's feed, items and unread set (their account was deleted)."""
        await self.r.delete(self.k_item(user_id), self.k_feed(user_id), self.k_unread(user_id))

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

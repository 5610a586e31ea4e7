"""View counts of videos and clips: distinct playback sessions in a HyperLogLog per item.

The viewer agents PFADD each VOD or CLIP heartbeat's session to its item's
HyperLogLog (the same estimator as live viewer counts) and mark the item as
changed; a timer reports each changed item's count as ``VideoViewsCounted`` or
``ClipViewsCounted``, which the videos and clips views fold.  The
HyperLogLogs are the processors' own state, not a view: ``rebuild-views``
rebuilds the counts from those events.  A PFADD is idempotent, so a
redelivered beat counts nothing twice.

Valkey layout under ``{prefix}``:

    plays:{kind}:{id}     HyperLogLog of session ids (kind: video or clip)
    plays:changed         set of "{kind}|{channel}|{id}" whose count grew since it was last reported
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis

# KEYS[1]: the changed set.  ARGV: triples of (mark, HyperLogLog key, the count reported).
_UNMARK_IF_SAME = """
for i = 1, #ARGV, 3 do
  if redis.call('pfcount', ARGV[i + 1]) == tonumber(ARGV[i + 2]) then redis.call('srem', KEYS[1], ARGV[i]) end
end
return 0
"""

Kind = Literal["video", "clip"]
VIDEO: Kind = "video"
CLIP: Kind = "clip"


@dataclass(frozen=True)
class ItemCount:
    kind: Kind
    channel_id: str
    item_id: str
    views: int


def group_plays(plays: Iterable[tuple[Kind, str, str, str]]) -> dict[tuple[Kind, str, str], set[str]]:
    """(kind, channel, item, session) quadruples grouped as {(kind, channel, item): sessions}."""
    groups: dict[tuple[Kind, str, str], set[str]] = {}
    for kind, channel_id, item_id, session_id in plays:
        groups.setdefault((kind, channel_id, item_id), set()).add(session_id)
    return groups


class PlaybackCounts:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = prefix

    def k_plays(self, kind: Kind, item_id: str) -> str:
        return f"{self.prefix}plays:{kind}:{item_id}"

    def k_changed(self) -> str:
        return f"{self.prefix}plays:changed"

    async def add(self, groups: dict[tuple[Kind, str, str], set[str]]) -> None:
        """Count the sessions in one round trip and mark the items whose estimate grew."""
        if not groups:
            return
        keys = list(groups)
        async with self.r.pipeline(transaction=False) as pipe:
            for kind, _channel, item_id in keys:
                pipe.pfadd(self.k_plays(kind, item_id), *sorted(groups[(kind, _channel, item_id)]))
            grew = await pipe.execute()
        changed = [f"{kind}|{channel}|{item}" for (kind, channel, item), g in zip(keys, grew, strict=True) if g]
        if changed:
            await self.r.sadd(self.k_changed(), *changed)

    async def changed(self, limit: int) -> list[ItemCount]:
        """Up to ``limit`` items whose count grew, with their counts now."""
        raw = await self.r.srandmember(self.k_changed(), limit)
        marks = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in raw or [])
        items: list[tuple[Kind, str, str]] = []
        for mark in marks:
            kind, channel_id, item_id = mark.split("|", 2)
            items.append((VIDEO if kind == VIDEO else CLIP, channel_id, item_id))
        if not items:
            return []
        async with self.r.pipeline(transaction=False) as pipe:
            for kind, _channel, item_id in items:
                pipe.pfcount(self.k_plays(kind, item_id))
            counts = await pipe.execute()
        return [ItemCount(kind, channel, item, int(n)) for (kind, channel, item), n in zip(items, counts, strict=True)]

    async def reported(self, items: list[ItemCount]) -> None:
        """Unmark items once their counts are on the log, unless a beat has grown one since it was read."""
        if not items:
            return
        args: list[str | int] = []
        for i in items:
            args += [f"{i.kind}|{i.channel_id}|{i.item_id}", self.k_plays(i.kind, i.item_id), i.views]
        await self.r.eval(_UNMARK_IF_SAME, 1, self.k_changed(), *args)

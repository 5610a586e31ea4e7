"""The clips view: each clip (a range over a broadcast's segments), its MP4 and its views.

Folded from the ``clips`` topic: ``ClipCreated``, ``ClipRendered`` (the MP4
made after), ``ClipViewsCounted``.  They share the topic's key, the clip id,
so they arrive in order; the folds still commute (a rendering or a count that
comes before its clip is kept until the clip arrives), so a replay gives the
same keys.

Valkey layout under ``{prefix}view:``:

    clip:{id}                   JSON ClipView
    clips:{channel}:time        lexicographic ranked list (views/ranked.py)
    clips:{channel}:views       the same, most viewed first
    clips-of-stream:{stream}    set of the clip ids over a broadcast (a video's purge keeps their segments)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import redis.asyncio as aioredis

from schemas.record import Record
from schemas.records.clip import ClipCreated, ClipRendered, ClipViewsCounted
from views.fold import Applied
from views.ranked import Ranked, Sort, page_ids, relist


@dataclass(frozen=True)
class ClipView:
    id: str
    channel_id: str = ""
    stream_id: str = ""
    created_by_user_id: str = ""
    title: str = ""
    created_at_ms: int = 0
    start_at_ms: int = 0  # program date time of the clip's first frame
    duration_ms: int = 0
    first_segment_seq: int = 0
    last_segment_seq: int = 0
    offset_ms: int = 0  # where it starts in the video's playhead time
    lead_in_ms: int = 0  # from the first segment's start (a keyframe) to the clip's start
    from_live: bool = False
    created: bool = False  # ClipCreated applied; a rendering or count may come first in a replay
    views: int = 0
    mp4_key: str | None = None
    mp4_bytes: int = 0
    mp4_duration_ms: int = 0
    mp4_error: str | None = None
    thumbnail_key: str | None = None

    @property
    def rendered(self) -> bool:
        return self.mp4_key is not None or self.mp4_error is not None

    def ranked(self) -> Ranked | None:
        return Ranked(self.id, self.created_at_ms, self.views) if self.created else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClipView:
        return cls(**data)


def apply_clip_created(event: Applied[ClipCreated], view: ClipView | None) -> ClipView | None:
    e = event.value
    if view is not None and view.created:
        return view
    base = view if view is not None else ClipView(id=e.clip_id)
    return replace(base, channel_id=e.channel_id, stream_id=e.stream_id, created_by_user_id=e.created_by_user_id,
                   title=e.title, created_at_ms=e.occurred_at, start_at_ms=e.start_at, duration_ms=e.duration_ms,
                   first_segment_seq=e.first_segment_seq, last_segment_seq=e.last_segment_seq,
                   offset_ms=e.offset_ms, lead_in_ms=e.lead_in_ms, from_live=e.from_live, created=True)


def apply_clip_rendered(event: Applied[ClipRendered], view: ClipView | None) -> ClipView | None:
    e = event.value
    base = view if view is not None else ClipView(id=e.clip_id)
    if base.mp4_key is not None:
        return view  # the first MP4 stands; a redelivered rendering is the same clip
    if e.mp4_key is None:
        return replace(base, mp4_error=e.error or "the MP4 could not be made")
    return replace(base, mp4_key=e.mp4_key, mp4_bytes=e.byte_size, mp4_duration_ms=e.duration_ms, mp4_error=None,
                   thumbnail_key=e.thumbnail_key)


def apply_clip_views(event: Applied[ClipViewsCounted], view: ClipView | None) -> ClipView | None:
    e = event.value
    base = view if view is not None else ClipView(id=e.clip_id, channel_id=e.channel_id)
    return replace(base, views=max(base.views, e.views))


CLIP_FOLDS: dict[type[Record], Callable[[Applied[Any], ClipView | None], ClipView | None]] = {
    ClipCreated: apply_clip_created,
    ClipRendered: apply_clip_rendered,
    ClipViewsCounted: apply_clip_views,
}


class Clips:
    """Read and write the clips view."""

    KIND = "clips"

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.views = f"{prefix}view:"

    def k_clip(self, clip_id: str) -> str:
        return f"{self.views}clip:{clip_id}"

    def k_list(self, channel_id: str, sort: Sort) -> str:
        return f"{self.views}clips:{channel_id}:{sort}"

    def k_of_stream(self, stream_id: str) -> str:
        return f"{self.views}clips-of-stream:{stream_id}"

    async def get(self, clip_id: str) -> ClipView | None:
        raw = await self.r.get(self.k_clip(clip_id))
        return None if raw is None else ClipView.from_json(json.loads(raw))

    async def get_many(self, clip_ids: list[str]) -> list[ClipView]:
        if not clip_ids:
            return []
        raws = await self.r.mget([self.k_clip(i) for i in clip_ids])
        return [ClipView.from_json(json.loads(raw)) for raw in raws if raw is not None]

    async def of_stream(self, stream_id: str) -> list[ClipView]:
        ids = sorted(m.decode() if isinstance(m, bytes) else str(m)
                     for m in await self.r.smembers(self.k_of_stream(stream_id)))
        return [c for c in await self.get_many(ids) if c.created]

    async def apply(self, event: Applied[Record]) -> bool:
        """Fold one event into the clips view; True if it changed."""
        fold = CLIP_FOLDS.get(type(event.value))
        v = event.value
        if fold is None or not isinstance(v, (ClipCreated, ClipRendered, ClipViewsCounted)):
            return False
        old = await self.get(v.clip_id)
        new = fold(event, old)
        if new is None or new == old:
            return False
        async with self.r.pipeline(transaction=True) as tx:
            tx.set(self.k_clip(new.id), json.dumps(new.to_json(), sort_keys=True))
            if new.created:
                relist(tx, lambda sort: self.k_list(new.channel_id, sort), old.ranked() if old else None,
                       new.ranked())
                tx.sadd(self.k_of_stream(new.stream_id), new.id)
            await tx.execute()
        return True

    async def page(self, channel_id: str, sort: Sort, after: str | None,
                   limit: int) -> tuple[list[ClipView], str | None]:
        ids, more = await page_ids(self.r, self.k_list(channel_id, sort), after, limit)
        return [c for c in await self.get_many(ids) if c.created], more

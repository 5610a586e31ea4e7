"""The videos view: every ended broadcast as a video, listed per channel by time and by views.

A video's id is its broadcast's ``stream_id``; its title and category are the
stream view's.  This view adds what only a video has, folded from
``StreamEnded`` (on ``stream.lifecycle``) and the ``videos`` topic
(``StoryboardReady``, ``VideoViewsCounted``, ``VideoDeleted``,
``VideoPurged``).  The two topics are not ordered against each other, so
every fold commutes with the others': the view is the same whichever arrives
first, and a replay (``rebuild-views``) gives the same keys.

Valkey layout under ``{prefix}view:``:

    video:{id}                  JSON VideoView
    videos:{channel}:time       lexicographic ranked list (views/ranked.py), listed videos only
    videos:{channel}:views      the same, most viewed first
    videos:ended                sorted set id -> ended_at_ms of listed videos (the retention sweep reads it)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import redis.asyncio as aioredis

from schemas.record import Record
from schemas.records.stream import StreamEnded
from schemas.records.video import StoryboardReady, VideoDeleted, VideoPurged, VideoViewsCounted
from views.fold import Applied
from views.ranked import Ranked, Sort, page_ids, relist


@dataclass(frozen=True)
class Storyboard:
    """Where a video's scrubbing previews are and how the sprite sheet is cut."""

    sprite_key: str
    vtt_key: str
    thumbnail_key: str
    interval_s: int
    tile_width: int
    tile_height: int
    columns: int
    tiles: int


@dataclass(frozen=True)
class VideoView:
    id: str
    channel_id: str
    started_at_ms: int | None = None
    ended_at_ms: int | None = None
    duration_ms: int = 0
    views: int = 0
    deleted_at_ms: int | None = None
    deleted_reason: str | None = None
    purged: bool = False
    storyboard: Storyboard | None = None

    @property
    def ended(self) -> bool:
        return self.ended_at_ms is not None

    @property
    def deleted(self) -> bool:
        return self.deleted_at_ms is not None

    @property
    def listed(self) -> bool:
        """Whether the channel's video lists show it: its broadcast has ended and nobody deleted it."""
        return self.ended and not self.deleted

    def ranked(self) -> Ranked | None:
        if not self.listed:
            return None
        return Ranked(self.id, self.started_at_ms or self.ended_at_ms or 0, self.views)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VideoView:
        board = data.get("storyboard")
        return cls(**{**data, "storyboard": Storyboard(**board) if board else None})


def _base(view: VideoView | None, video_id: str, channel_id: str) -> VideoView:
    return view if view is not None else VideoView(id=video_id, channel_id=channel_id)


def apply_stream_ended(event: Applied[StreamEnded], view: VideoView | None) -> VideoView | None:
    e = event.value
    v = _base(view, e.stream_id, e.channel_id)
    if v.ended:
        return view
    return replace(v, started_at_ms=e.started_at, ended_at_ms=e.occurred_at, duration_ms=max(0, e.duration_ms))


def apply_storyboard(event: Applied[StoryboardReady], view: VideoView | None) -> VideoView | None:
    e = event.value
    return replace(_base(view, e.video_id, e.channel_id), storyboard=Storyboard(
        e.sprite_key, e.vtt_key, e.thumbnail_key, e.interval_s, e.tile_width, e.tile_height, e.columns, e.tiles))


def apply_views_counted(event: Applied[VideoViewsCounted], view: VideoView | None) -> VideoView | None:
    e = event.value
    v = _base(view, e.video_id, e.channel_id)
    return replace(v, views=max(v.views, e.views))  # counts only grow: an older report changes nothing


def apply_video_deleted(event: Applied[VideoDeleted], view: VideoView | None) -> VideoView | None:
    e = event.value
    v = _base(view, e.video_id, e.channel_id)
    if v.deleted_at_ms is not None and v.deleted_at_ms <= e.occurred_at:
        return view  # the first deletion stands
    return replace(v, deleted_at_ms=e.occurred_at, deleted_reason=e.reason)


def apply_video_purged(event: Applied[VideoPurged], view: VideoView | None) -> VideoView | None:
    e = event.value
    return replace(_base(view, e.video_id, e.channel_id), purged=True)


VIDEO_FOLDS: dict[type[Record], Callable[[Applied[Any], VideoView | None], VideoView | None]] = {
    StreamEnded: apply_stream_ended,
    StoryboardReady: apply_storyboard,
    VideoViewsCounted: apply_views_counted,
    VideoDeleted: apply_video_deleted,
    VideoPurged: apply_video_purged,
}


def video_id_of(record: StreamEnded | StoryboardReady | VideoViewsCounted | VideoDeleted | VideoPurged) -> str:
    return record.stream_id if isinstance(record, StreamEnded) else record.video_id


class Videos:
    """Read and write the videos view."""

    KIND = "videos"

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.views = f"{prefix}view:"

    def k_video(self, video_id: str) -> str:
        return f"{self.views}video:{video_id}"

    def k_list(self, channel_id: str, sort: Sort) -> str:
        return f"{self.views}videos:{channel_id}:{sort}"

    def k_ended(self) -> str:
        return f"{self.views}videos:ended"

    async def get(self, video_id: str) -> VideoView | None:
        raw = await self.r.get(self.k_video(video_id))
        return None if raw is None else VideoView.from_json(json.loads(raw))

    async def get_many(self, video_ids: list[str]) -> list[VideoView]:
        if not video_ids:
            return []
        raws = await self.r.mget([self.k_video(i) for i in video_ids])
        return [VideoView.from_json(json.loads(raw)) for raw in raws if raw is not None]

    async def apply(self, event: Applied[Record]) -> bool:
        """Fold one event into the videos view; True if it changed."""
        fold = VIDEO_FOLDS.get(type(event.value))
        v = event.value
        if fold is None or not isinstance(v, (StreamEnded, StoryboardReady, VideoViewsCounted, VideoDeleted,
                                              VideoPurged)):
            return False
        old = await self.get(video_id_of(v))
        new = fold(event, old)
        if new is None or new == old:
            return False
        async with self.r.pipeline(transaction=True) as tx:
            tx.set(self.k_video(new.id), json.dumps(new.to_json(), sort_keys=True))
            relist(tx, lambda sort: self.k_list(new.channel_id, sort), old.ranked() if old else None, new.ranked())
            if new.listed and new.ended_at_ms is not None:
                tx.zadd(self.k_ended(), {new.id: new.ended_at_ms})
            else:
                tx.zrem(self.k_ended(), new.id)
            await tx.execute()
        return True

    async def page(self, channel_id: str, sort: Sort, after: str | None,
                   limit: int) -> tuple[list[VideoView], str | None]:
        """Up to ``limit`` listed videos of a channel and the member to continue after, if more follow."""
        ids, more = await page_ids(self.r, self.k_list(channel_id, sort), after, limit)
        return [v for v in await self.get_many(ids) if v.listed], more

    async def ended_before(self, before_ms: int, limit: int, start: int = 0) -> list[str]:
        """Up to ``limit`` listed videos whose broadcast ended before ``before_ms``, oldest first, from ``start``."""
        found = await self.r.zrangebyscore(self.k_ended(), "-inf", f"({before_ms}", start=start, num=limit)
        return [m.decode() if isinstance(m, bytes) else str(m) for m in found]

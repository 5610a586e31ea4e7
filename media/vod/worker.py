"""The VOD worker: what the media plane does for videos and clips after the fact.

It runs in every media worker process, as two consumer groups that commit an
offset only once its work is done (a worker killed mid-way does it again on
restart; every step is idempotent: same keys, same bytes, events the views
fold once):

* ``<transcode group>-vod-videos`` on ``stream.lifecycle`` and ``videos``:
  - ``StreamEnded``: the storyboard.  The media workers wrote a thumbnail
    every 10 s of media while the stream was live
    (media/transcode/thumbnail.py); once they are all there (or
    ``vod.storyboard_wait_s`` has passed) they become one sprite sheet and a
    WebVTT track (media/vod/storyboard.py), stored under ``vod/<video>/`` and
    announced by ``StoryboardReady``.  The wait runs from the end, so an end
    read long after it waits for nothing.
  - ``VideoDeleted``: the purge.  Every object of the video goes from both
    stores (GOPs, segments, parts, thumbnails, storyboard) except the source
    and audio segments (and init segments) a clip still covers; then
    ``VideoPurged`` says what went.
* ``<transcode group>-vod-clips`` on ``clips``: ``ClipCreated`` -> the clip's MP4,
  remuxed from its segments without a decode (media/vod/remux.py), and its
  thumbnail (the preview nearest its start, copied), announced by
  ``ClipRendered``.

A timer sweeps for expired videos (a channel's ``vod_retention_days``, else
``vod.retention_days``) and deletes them with ``VideoDeleted`` (RETENTION);
each sweep is claimed with a Valkey lease, so one worker does it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import av
import redis
import redis.asyncio as aioredis

from infra.settings import Settings
from media.blob import BlobError, BlobNotFound, BlobStore
from media.transcode.thumbnail import STORYBOARD_INTERVAL_S, storyboard_thumb_key
from media.vod.remux import Track, remux_clip
from media.vod.storyboard import build_storyboard
from schemas.record import Record
from schemas.records.clip import ClipCreated, ClipRendered
from schemas.records.stream import StreamEnded
from schemas.records.video import StoryboardReady, VideoDeleted, VideoPurged
from topics.consumer import Event, EventConsumer
from topics.errors import TopicsError
from topics.producer import EventProducer
from topics.serde import AvroSerde
from views.clips import ClipView
from views.store import ViewStore

log = logging.getLogger("glasscast.media.vod")
T = TypeVar("T")

SOURCE, AUDIO = "source", "audio"
BATCH, POLL_S = 50, 1.0
POOL_THREADS = 4  # two consumers polling, and the work they hand out
RETRY_S = 1.0
DAY_MS = 86_400_000
MIN_RETENTION_DAYS = 1
SWEEP_PAGE = 500
# A purge waits this long after the deletion, so a clip made just before it is in the clips view when the
# purge decides what to keep.
PURGE_GRACE_MS = 5_000
TRANSIENT = (redis.RedisError, OSError, TopicsError)


def video_prefixes(video_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(origin prefixes, GOP-store prefixes) holding a video's objects."""
    return (f"hls/{video_id}/", f"thumbs/{video_id}/", f"vod/{video_id}/"), (f"gops/{video_id}/",)


def clip_keys(clip: ClipView) -> frozenset[str]:
    """The origin objects a clip's playlist and MP4 were made from."""
    keys = set()
    for rendition in (SOURCE, AUDIO):
        keys.add(f"hls/{clip.stream_id}/{rendition}/init.mp4")
        keys.update(f"hls/{clip.stream_id}/{rendition}/{seq:08d}.m4s"
                    for seq in range(clip.first_segment_seq, clip.last_segment_seq + 1))
    return frozenset(keys)


def clip_from(event: ClipCreated) -> ClipView:
    return ClipView(id=event.clip_id, channel_id=event.channel_id, stream_id=event.stream_id,
                    created_at_ms=event.occurred_at, start_at_ms=event.start_at, duration_ms=event.duration_ms,
                    first_segment_seq=event.first_segment_seq, last_segment_seq=event.last_segment_seq,
                    offset_ms=event.offset_ms, lead_in_ms=event.lead_in_ms, from_live=event.from_live, created=True)


@dataclass(frozen=True)
class StorageUse:
    objects: int
    bytes: int


def storage_of(origin: BlobStore, gops: BlobStore, video_id: str) -> StorageUse:
    """What a video's objects take in the stores now (blocking: run in a thread)."""
    origin_prefixes, gop_prefixes = video_prefixes(video_id)
    blobs = [b for p in origin_prefixes for b in origin.list(p)] + [b for p in gop_prefixes for b in gops.list(p)]
    return StorageUse(len(blobs), sum(b.size for b in blobs))


class VodWorker:
    def __init__(self, settings: Settings, serde: AvroSerde, origin: BlobStore, gops: BlobStore,
                 client: aioredis.Redis, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.serde = serde
        self.origin = origin
        self.gops = gops
        self.views = ViewStore(client, settings.valkey.key_prefix)
        self.r = client
        self.clock = clock
        self.producer = EventProducer(settings.kafka, serde)
        self._consumers: list[EventConsumer] = []
        # Its own threads: the transcoder in the same process keeps asyncio's default pool busy while a
        # stream is live, and a clip must not wait for it.
        self._pool = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="vod")

    def _blocking(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run a blocking call (a consumer poll, the store, a remux) on the worker's own threads."""
        return asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def run(self, stop: asyncio.Event) -> None:
        for topic, record in (("videos", StoryboardReady.RECORD), ("videos", VideoPurged.RECORD),
                              ("videos", VideoDeleted.RECORD), ("clips", ClipRendered.RECORD)):
            await self._blocking(self.serde.prepare, topic, record)
        # Beside the transcoders' own groups: <transcode group>-vod-videos and -vod-clips.
        group = self.settings.transcode.group_id
        videos = await self._blocking(self._consumer, ["stream.lifecycle", "videos"], f"{group}-vod-videos")
        clips = await self._blocking(self._consumer, ["clips"], f"{group}-vod-clips")
        tasks = [asyncio.create_task(self._loop(videos, self.handle_video_event, stop)),
                 asyncio.create_task(self._loop(clips, self.handle_clip_event, stop)),
                 asyncio.create_task(self._sweeps(stop))]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _consumer(self, topics: list[str], group: str) -> EventConsumer:
        consumer = EventConsumer(self.settings.kafka, self.serde, topics, group_id=group,
                                 dead_letter=self.producer, **{"enable.auto.commit": False})
        self._consumers.append(consumer)
        return consumer

    def close(self) -> None:
        for consumer in self._consumers:
            consumer.close()
        self.producer.close(10.0)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _loop(self, consumer: EventConsumer, handle: Callable[[Event], Awaitable[None]],
                    stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                events = await self._blocking(consumer.consume, BATCH, POLL_S)
            except TopicsError as exc:
                log.warning("vod consumer error: %s", exc)
                await asyncio.sleep(RETRY_S)
                continue
            for event in events:
                await self._until_done(functools.partial(handle, event),
                                       f"{event.topic}[{event.partition}]@{event.offset}")
                consumer.commit_offset(event.topic, event.partition, event.offset + 1)

    async def _until_done(self, work: Callable[[], Awaitable[None]], what: str) -> None:
        """Retry a passing failure (Valkey, the broker, the store's OS) until the work is done."""
        while True:
            try:
                await work()
                return
            except TRANSIENT as exc:
                log.warning("%s: %s; trying again", what, exc)
                await asyncio.sleep(RETRY_S)

    async def _emit(self, event: Record, key: str) -> None:
        await self.producer.send(event, key)

    # -- videos --------------------------------------------------------------------------------------

    async def _ours(self, channel_id: str) -> bool:
        """Whether this platform knows the channel (a broker shared by several platforms carries others')."""
        return await self.views.get_channel(channel_id) is not None

    async def handle_video_event(self, event: Event) -> None:
        value = event.value
        if isinstance(value, StreamEnded) and await self._ours(value.channel_id):
            await self.storyboard(value)
        elif isinstance(value, VideoDeleted) and await self._ours(value.channel_id):
            await self.purge(value)

    def k_compact(self) -> str:
        """Sorted set: video id -> when its live-only copies may go (ms)."""
        return f"{self.settings.valkey.key_prefix}vod-compact"

    async def storyboard(self, ended: StreamEnded, wait_s: float | None = None) -> bool:
        """Make and announce the video's storyboard; False when there is nothing to make it from."""
        video_id = ended.stream_id
        due = ended.occurred_at + int(self.settings.vod.compact_after_s * 1000)
        await self.r.zadd(self.k_compact(), {video_id: due}, nx=True)
        video = await self.views.videos.get(video_id)
        if video is not None and (video.storyboard is not None or video.deleted):
            return False
        wanted = max(1, -(-max(0, ended.duration_ms) // (STORYBOARD_INTERVAL_S * 1000)))
        # The wait runs from the end itself: an end read long after (a replay, a worker catching up) waits
        # for nothing, as its thumbnails are all made by then.
        wait_ms = int((self.settings.vod.storyboard_wait_s if wait_s is None else wait_s) * 1000)
        deadline_ms = ended.occurred_at + wait_ms
        while True:
            listed = await self._blocking(lambda: list(self.origin.list(f"thumbs/{video_id}/")))
            if len(listed) >= wanted or self.now_ms() >= deadline_ms:
                break
            await asyncio.sleep(1.0)  # the last GOPs' thumbnails are still being made by the workers
        thumbs: list[tuple[int, bytes]] = []
        for blob in listed:
            stem = blob.key.rsplit("/", 1)[1].split(".", 1)[0]
            if stem.isdigit():
                try:
                    thumbs.append((int(stem), await self._blocking(self.origin.get, self.origin.ref(blob.key))))
                except BlobNotFound:
                    continue
        if not thumbs:
            log.info("video %s: no thumbnails, no storyboard", video_id)
            return False
        board = await self._blocking(build_storyboard, thumbs, "sprite.jpg")
        first = min(thumbs)[1] if len(thumbs) == 1 else sorted(thumbs)[min(1, len(thumbs) - 1)][1]
        keys = (f"vod/{video_id}/sprite.jpg", f"vod/{video_id}/storyboard.vtt", f"vod/{video_id}/thumb.jpg")
        for key, data in zip(keys, (board.sprite_jpeg, board.vtt.encode(), first), strict=True):
            await self._blocking(self.origin.put, key, data)
        await self._emit(StoryboardReady(
            occurred_at=self.now_ms(), video_id=video_id, channel_id=ended.channel_id, sprite_key=keys[0],
            vtt_key=keys[1], thumbnail_key=keys[2], interval_s=board.interval_s, tile_width=board.tile_width,
            tile_height=board.tile_height, columns=board.columns, tiles=board.count), video_id)
        return True

    async def purge(self, deleted: VideoDeleted) -> VideoPurged:
        """Delete the video's objects but those its clips use, and record it."""
        video_id = deleted.video_id
        wait_ms = min(deleted.occurred_at + PURGE_GRACE_MS - self.now_ms(), PURGE_GRACE_MS)
        if wait_ms > 0:
            await asyncio.sleep(wait_ms / 1000)
        keep: frozenset[str] = frozenset()
        for clip in await self.views.clips.of_stream(video_id):
            keep |= clip_keys(clip)
        purged = await self._blocking(self._purge_objects, video_id, deleted.channel_id, keep)
        await self._emit(purged, video_id)
        return purged

    def _purge_objects(self, video_id: str, channel_id: str, keep: frozenset[str]) -> VideoPurged:
        origin_prefixes, gop_prefixes = video_prefixes(video_id)
        deleted = kept = freed = 0
        for store, prefixes in ((self.origin, origin_prefixes), (self.gops, gop_prefixes)):
            for prefix in prefixes:
                blobs = list(store.list(prefix))
                kept += sum(1 for b in blobs if b.key in keep)
                freed += sum(b.size for b in blobs if b.key not in keep)
                deleted += store.delete_prefix(prefix, keep)
        try:
            self.origin.delete(self.origin.ref(f"thumbs/{video_id}.jpg"))  # the live thumbnail
        except BlobError:
            pass
        return VideoPurged(occurred_at=self.now_ms(), video_id=video_id, channel_id=channel_id, objects_deleted=deleted,
                           bytes_freed=freed, objects_kept=kept)

    # -- retention -----------------------------------------------------------------------------------

    async def _sweeps(self, stop: asyncio.Event) -> None:
        interval = self.settings.vod.sweep_interval_s
        while not stop.is_set():
            try:
                await self.compact(self.now_ms())
                await self.sweep(self.now_ms())
            except TRANSIENT as exc:
                log.warning("video retention sweep skipped: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass

    async def compact(self, now_ms: int) -> list[str]:
        """Delete the LL-HLS parts and GOPs of the videos ended long enough ago; the ids compacted.

        Live playback and the transcoders need them; a video plays from its segments.  Each video is
        taken off the schedule only once its copies are gone, so a worker that dies meanwhile leaves it
        for the next one (deleting twice deletes nothing more).
        """
        due = [m.decode() if isinstance(m, bytes) else str(m)
               for m in await self.r.zrangebyscore(self.k_compact(), "-inf", now_ms, start=0, num=SWEEP_PAGE)]
        for video_id in due:
            removed = await self._blocking(self._compact_objects, video_id)
            await self.r.zrem(self.k_compact(), video_id)
            log.info("video %s: deleted %d live-only objects", video_id, removed)
        return due

    def _compact_objects(self, video_id: str) -> int:
        parts = frozenset(b.key for b in self.origin.list(f"hls/{video_id}/")
                          if b.key.rsplit("/", 1)[1].count(".") == 2)  # <seq>.<part>.m4s
        segments = frozenset(b.key for b in self.origin.list(f"hls/{video_id}/")) - parts
        return self.origin.delete_prefix(f"hls/{video_id}/", keep=segments) + self.gops.delete_prefix(
            f"gops/{video_id}/")

    async def sweep(self, now_ms: int) -> list[str]:
        """Delete the videos past their channel's retention at ``now_ms``; the ids deleted."""
        interval_ms = int(self.settings.vod.sweep_interval_s * 1000)
        lease = f"{self.settings.valkey.key_prefix}vod-sweep:{now_ms // interval_ms}"
        if not await self.r.set(lease, "1", nx=True, px=2 * interval_ms):
            return []
        expired: list[str] = []
        start = 0
        while True:
            ids = await self.views.videos.ended_before(now_ms - MIN_RETENTION_DAYS * DAY_MS, SWEEP_PAGE, start)
            start += len(ids)
            for video in await self.views.videos.get_many(ids):
                channel = await self.views.get_channel(video.channel_id)
                days = (channel.vod_retention_days if channel is not None else None) or \
                    self.settings.vod.retention_days
                if video.listed and video.ended_at_ms is not None and video.ended_at_ms + days * DAY_MS <= now_ms:
                    await self._emit(VideoDeleted(occurred_at=self.now_ms(), video_id=video.id,
                                                  channel_id=video.channel_id, reason="RETENTION"), video.id)
                    expired.append(video.id)
            if len(ids) < SWEEP_PAGE:
                return expired

    # -- clips ---------------------------------------------------------------------------------------

    async def handle_clip_event(self, event: Event) -> None:
        if isinstance(event.value, ClipCreated) and await self._ours(event.value.channel_id):
            await self.render(event.value)

    async def render(self, created: ClipCreated) -> ClipRendered | None:
        """Remux the clip's MP4 and copy its thumbnail; None when it was made before (a redelivery)."""
        seen = await self.views.clips.get(created.clip_id)
        if seen is not None and seen.mp4_key is not None:
            return None
        clip = clip_from(created)
        rendered = await self._blocking(self._render, clip)
        await self._emit(rendered, clip.id)
        log.info("clip %s: %s %.1f s after it was made", clip.id, "MP4 ready" if rendered.mp4_key else "no MP4",
                 (self.now_ms() - created.occurred_at) / 1000)
        return rendered

    def _track(self, clip: ClipView, rendition: str) -> Track:
        base = f"hls/{clip.stream_id}/{rendition}"
        return Track(init=self.origin.get(self.origin.ref(f"{base}/init.mp4")),
                     segments=[self.origin.get(self.origin.ref(f"{base}/{seq:08d}.m4s"))
                               for seq in range(clip.first_segment_seq, clip.last_segment_seq + 1)])

    def _render(self, clip: ClipView) -> ClipRendered:
        now = self.now_ms()
        try:
            video = self._track(clip, SOURCE)
            try:
                audio: Track | None = self._track(clip, AUDIO)
            except BlobNotFound:
                audio = None  # a stream without sound
            mp4 = remux_clip(video, audio, clip.lead_in_ms, clip.duration_ms)
        except (BlobNotFound, ValueError, av.FFmpegError) as exc:
            log.warning("clip %s: no MP4: %s", clip.id, exc)
            return ClipRendered(occurred_at=now, clip_id=clip.id, error=f"the clip's media could not be remuxed: "
                                                                        f"{exc}"[:500])
        mp4_key = f"clips/{clip.id}/clip.mp4"
        self.origin.put(mp4_key, mp4)
        thumbnail_key: str | None = f"clips/{clip.id}/thumb.jpg"
        index = clip.offset_ms // (STORYBOARD_INTERVAL_S * 1000)
        try:
            self.origin.put(f"clips/{clip.id}/thumb.jpg",
                            self.origin.get(self.origin.ref(storyboard_thumb_key(clip.stream_id, index))))
        except BlobNotFound:
            thumbnail_key = None
        return ClipRendered(occurred_at=now, clip_id=clip.id, mp4_key=mp4_key, byte_size=len(mp4),
                            duration_ms=clip.duration_ms, thumbnail_key=thumbnail_key)

"""Viewer-count agents: heartbeats into HyperLogLog buckets, snapshots out, snapshots into the view.

Three loops around the pure parts of ``views/viewers.py``:

* ``count_heartbeats`` takes ``viewer.heartbeats`` in batches and PFADDs each
  batch, grouped by channel and bucket, in one Valkey pipeline;
* ``snapshot_viewer_counts``, a timer, merges each live channel's recent
  buckets and produces ``ViewerCountUpdated`` to ``viewer.counts`` (and a 0
  for a channel that has gone offline);
* ``fold_viewer_counts`` folds ``viewer.counts`` into ``view:viewers:{channel}``.

Every worker runs the timer, so each tick is claimed with a Valkey lease
(SET NX) and only the first worker to claim it reports; the app's Faust
leader election is switched off (``topic_disable_leader``), so ``on_leader``
timers would never run.  ``add_viewer_agents`` is called by ``build_processors``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any, cast

import faust
import redis

from infra.settings import Settings
from processors.codec import Decoded, Undecodable
from processors.retrying import hold, release, until_done
from schemas.record import new_event_id
from schemas.records.clip import ClipViewsCounted
from schemas.records.video import VideoViewsCounted
from schemas.records.viewer import Heartbeat, ViewerCountUpdated
from topics.consumer import dead_letter_record
from topics.errors import DeliveryError, RegistryError
from topics.producer import EventProducer
from views.errors import VALKEY_UNAVAILABLE
from views.store import ViewStore
from views.view_counts import CLIP, VIDEO, Kind, PlaybackCounts, group_plays
from views.viewers import ViewerCounts, apply_viewer_count, group_beats, recent_buckets, snapshot

log = logging.getLogger("glasscast.processors.viewers")


def decoded(event: faust.EventT[Any], dead_letters: EventProducer, group: str) -> Decoded | None:
    """The event's decoded record; an undecodable one goes to the dead-letter topic instead."""
    msg, value = event.message, event.value
    if isinstance(value, Undecodable):
        log.warning("undecodable record %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, value.error)
        dead_letters.produce(dead_letter_record(
            msg.topic, msg.partition, msg.offset, int((msg.timestamp or 0) * 1000),
            msg.key, value.raw, value.error, group), key=msg.topic)
        return None
    return value if isinstance(value, Decoded) else None


class CountReporter:
    """Each tick, one ViewerCountUpdated per live channel (and a 0 per channel gone offline)."""

    def __init__(self, counts: ViewerCounts, producer: EventProducer, interval_s: float) -> None:
        self.counts = counts
        self.producer = producer
        self.interval_ms = max(1, int(interval_s * 1000))
        self._prepared = False

    async def tick(self, now_ms: int) -> int:
        """Report the counts at ``now_ms`` unless another worker has this tick; how many were sent."""
        if not await self.counts.lease(f"viewer-snapshot:{now_ms // self.interval_ms}", 2 * self.interval_ms):
            return 0
        if not self._prepared:  # the first encode registers the schema: keep that HTTP call off the loop
            await asyncio.to_thread(self.producer.serde.prepare, "viewer.counts", ViewerCountUpdated.RECORD)
            self._prepared = True
        live = await self.counts.live_channels()
        offline = await self.counts.shown_channels() - set(live)
        merged = await self.counts.count(list(live), now_ms)
        reports = [*live.items(), *((channel_id, None) for channel_id in offline)]
        for channel_id, stream_id in reports:
            self.producer.produce(snapshot(new_event_id(), now_ms, channel_id, stream_id, merged.get(channel_id, 0),
                                           self.counts.bucket_s, self.counts.window_s), channel_id)
        return len(reports)


def play_of(beat: Heartbeat) -> tuple[Kind, str, str, str] | None:
    """(kind, channel, item, session) for a VOD or clip beat; None for a live one."""
    if beat.playback == "VOD" and beat.stream_id is not None:
        return VIDEO, beat.channel_id, beat.stream_id, beat.session_id
    if beat.playback == "CLIP" and beat.clip_id is not None:
        return CLIP, beat.channel_id, beat.clip_id, beat.session_id
    return None


class PlayReporter:
    """Each tick, the view counts of the videos and clips whose counts grew (any worker may report them)."""

    BATCH = 1000

    def __init__(self, counts: PlaybackCounts, producer: EventProducer) -> None:
        self.counts = counts
        self.producer = producer
        self._prepared = False

    async def tick(self, now_ms: int) -> int:
        items = await self.counts.changed(self.BATCH)
        if not items:
            return 0
        if not self._prepared:  # the first encode registers the schemas: keep those HTTP calls off the loop
            for topic, record in (("videos", VideoViewsCounted.RECORD), ("clips", ClipViewsCounted.RECORD)):
                await asyncio.to_thread(self.producer.serde.prepare, topic, record)
            self._prepared = True
        await asyncio.gather(*(self.producer.send(
            VideoViewsCounted(occurred_at=now_ms, video_id=item.item_id, channel_id=item.channel_id,
                              views=item.views) if item.kind == VIDEO else
            ClipViewsCounted(occurred_at=now_ms, clip_id=item.item_id, channel_id=item.channel_id,
                             views=item.views), item.item_id) for item in items))
        await self.counts.reported(items)
        return len(items)


def add_viewer_agents(app: faust.App, settings: Settings, views: ViewStore, producer: EventProducer,
                      codec: str) -> None:
    """Add the heartbeat, snapshot and viewer-view loops to ``app``."""
    cfg = settings.viewers
    group = settings.processors.app_id
    counts = ViewerCounts(views.r, settings.valkey.key_prefix, cfg.bucket_s, cfg.window_s)
    play_counts = PlaybackCounts(views.r, settings.valkey.key_prefix)
    heartbeats = app.topic("viewer.heartbeats", key_serializer="raw", value_serializer=codec)
    snapshots = app.topic("viewer.counts", key_serializer="raw", value_serializer=codec)

    @app.agent(heartbeats)
    async def count_heartbeats(stream: faust.StreamT[Any]) -> None:
        batches = cast("faust.Stream[Any]", stream).take_events(cfg.batch_size, within=cfg.batch_within_s)
        async for events in batches:
            beats = []
            plays: list[tuple[Kind, str, str, str]] = []
            for event in events:
                value = decoded(event, producer, group)
                if value is not None and isinstance(beat := value.value, Heartbeat):
                    play = play_of(beat)
                    if play is None:
                        beats.append((beat.channel_id, beat.occurred_at, beat.session_id))
                    else:
                        plays.append(play)
            oldest = recent_buckets(int(time.time() * 1000), cfg.bucket_s, cfg.window_s)[0]
            grouped = group_beats(beats, cfg.bucket_s, oldest)
            hold(events)  # a write cut short leaves the batch uncommitted (processors/retrying.py)
            await until_done(functools.partial(counts.add, grouped), "viewer buckets write", VALKEY_UNAVAILABLE, log)
            await until_done(functools.partial(play_counts.add, group_plays(plays)), "view counts write",
                             VALKEY_UNAVAILABLE, log)
            release(events)

    reporter = CountReporter(counts, producer, cfg.snapshot_interval_s)
    play_reporter = PlayReporter(play_counts, producer)

    async def snapshot_viewer_counts() -> None:
        try:
            await reporter.tick(int(time.time() * 1000))
            await play_reporter.tick(int(time.time() * 1000))
        except (redis.RedisError, DeliveryError, RegistryError) as exc:  # a missed tick; the next one reports
            log.warning("viewer-count snapshot skipped: %s", exc)

    app.timer(interval=cfg.snapshot_interval_s)(snapshot_viewer_counts)

    @app.agent(snapshots)
    async def fold_viewer_counts(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            value = decoded(event, producer, group)
            if value is not None and isinstance(count := value.value, ViewerCountUpdated):
                hold([event])
                await until_done(functools.partial(counts.store, count.channel_id, count.stream_id,
                                                   apply_viewer_count(count)),
                                 "viewer count write", VALKEY_UNAVAILABLE, log)
                release([event])

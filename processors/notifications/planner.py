"""The planning agents: follows and engagement into the processor's index, StreamStarted into a fan-out.

* ``index_follows`` folds ``social.follows`` (Followed with notifications on or
  off, Unfollowed) into ``notify:followers:{channel}``;
* ``index_engagement`` folds signed-in ``viewer.heartbeats`` and ``chat.messages``
  into ``notify:engaged:{channel}``;
* ``erase_feeds`` drops the in-app feed of an account on its ``UserDeleted``
  (``users``; the gateway unfollowed its channels first, so no fan-out plans for it again);
* ``plan_go_live`` turns a ``StreamStarted`` that should notify (``plan.should_notify``)
  into one ``NotificationQueued`` per follower: first the engaged followers (due at
  once, on ``notifications``), then the rest as SSCAN reads them, a batch at a time,
  with due times ascending over the spread (``plan.plan_later``), each record carrying
  its due time (on ``notifications.later``: ``plan.topic_of``).
  Records are queued to librdkafka without waiting for each, with at most
  ``IN_FLIGHT_MAX`` unacknowledged, so neither the plan nor the producer's memory
  grows with the follower count; once every record is acknowledged the broadcast is
  recorded as notified.  A worker killed half-way re-reads the StreamStarted and
  plans it again: the same ids, which the deliverer's feed deduplicates.

Every write goes through ``until_done`` with ``hold``/``release`` (processors/retrying.py).
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, cast

import faust

from infra.settings import Settings
from processors.codec import Decoded
from processors.notifications.index import FollowChange, NotifyIndex
from processors.notifications.plan import (
    FanoutPolicy,
    GoLive,
    LastNotified,
    Planned,
    engagement,
    plan_first,
    plan_later,
    queued_values,
    should_notify,
    topic_of,
)
from processors.retrying import hold, release, until_done
from schemas.records.notification import NotificationQueued
from schemas.records.social import Followed, Unfollowed
from schemas.records.stream import StreamStarted
from schemas.records.user import UserDeleted
from topics.acks import AckCounter
from topics.errors import DeliveryError
from topics.producer import EventProducer
from topics.serde import AvroSerde
from views.errors import VALKEY_UNAVAILABLE
from views.notifications import NotificationFeed
from views.store import ViewStore

log = logging.getLogger("glasscast.processors.notifications")

BATCH_SIZE, BATCH_WITHIN_S = 1000, 0.1
TRANSIENT = (*VALKEY_UNAVAILABLE, DeliveryError)
IN_FLIGHT_MAX = 20_000  # records a fan-out keeps queued in librdkafka, not yet acknowledged


def record_of(event: faust.EventT[Any]) -> object:
    """The event's decoded record, or None.

    Every topic read here is also read by an agent that dead-letters what it cannot decode (the view,
    heartbeat and chat-history agents, in the same consumer group), so an undecodable record is skipped
    here rather than dead-lettered twice.
    """
    return event.value.value if isinstance(event.value, Decoded) else None


def policy_of(settings: Settings) -> FanoutPolicy:
    cfg = settings.notifications
    return FanoutPolicy(delay_min_ms=int(cfg.delay_min_s * 1000), delay_max_ms=int(cfg.delay_max_s * 1000),
                        cooldown_ms=int(cfg.cooldown_s * 1000), max_start_age_ms=int(cfg.max_start_age_s * 1000))


class Planner:
    """Plans the fan-out of one StreamStarted."""

    def __init__(self, settings: Settings, views: ViewStore, index: NotifyIndex, producer: EventProducer) -> None:
        self.settings = settings
        self.views = views
        self.index = index
        self.producer = producer
        self.policy = policy_of(settings)

    async def fanout(self, started: StreamStarted, now_ms: int) -> int:
        """Queue the broadcast's notifications unless it should not notify; how many were queued."""
        last = await self.index.last_notified(started.channel_id)
        if not should_notify(last, started.stream_id, started.occurred_at, now_ms, self.policy):
            return 0
        channel = await self.views.get_channel(started.channel_id)
        name = channel.name if channel is not None else "A channel you follow"
        url = f"{self.settings.gateway_url}/c/{channel.name}" if channel is not None else self.settings.gateway_url
        live = GoLive(started.channel_id, started.stream_id, name, started.title or "", url)
        # A start stamped ahead of this clock (skew) is planned from now, never further out.
        planned_at = min(now_ms, started.occurred_at)
        window_ms = int(self.settings.notifications.engaged_window_s * 1000)
        engaged = await self.index.engaged(started.channel_id, started.occurred_at - window_ms)
        batch = self.settings.notifications.plan_batch
        first = await self.index.notified_of(started.channel_id, sorted(engaged))
        later_total = max(0, await self.index.follower_count(started.channel_id) - len(first))
        acks, position = AckCounter(), 0
        for i in range(0, len(first), batch):
            self._produce(plan_first(started.stream_id, first[i:i + batch], planned_at), live, planned_at, acks)
            await acks.settled_to(IN_FLIGHT_MAX, "notifications")
        skip = set(first)
        async for followers in self.index.followers(started.channel_id, batch):
            rest = [u for u in followers if u not in skip]
            self._produce(plan_later(started.stream_id, rest, position, later_total, planned_at, self.policy),
                          live, planned_at, acks)
            position += len(rest)
            await acks.settled_to(IN_FLIGHT_MAX, "notifications")  # also lets the worker's other agents run
        await acks.flushed("notifications")
        total = acks.produced
        await self.index.set_last_notified(started.channel_id, LastNotified(started.stream_id, started.occurred_at))
        log.info("stream %s of channel %s: %d notifications queued (%d of them engaged, due at once)",
                 started.stream_id, started.channel_id, total, len(first))
        return total

    def _produce(self, planned: list[Planned], live: GoLive, planned_at: int, acks: AckCounter) -> None:
        for p, value in zip(planned, queued_values(planned, live, planned_at), strict=True):
            self.producer.produce_value_counted(NotificationQueued.RECORD, value, p.user_id, acks, topic_of(p))


def add_planning_agents(app: faust.App, settings: Settings, views: ViewStore, index: NotifyIndex,
                        serde: AvroSerde, codec: str) -> None:
    """Add the follow-index, engagement and fan-out agents to ``app``."""
    window_ms = int(settings.notifications.engaged_window_s * 1000)
    planner = Planner(settings, views, index, EventProducer(settings.kafka, serde))
    follows = app.topic("social.follows", key_serializer="raw", value_serializer=codec)
    activity = app.topic("viewer.heartbeats", "chat.messages", key_serializer="raw", value_serializer=codec)
    lifecycle = app.topic("stream.lifecycle", key_serializer="raw", value_serializer=codec)
    users = app.topic("users", key_serializer="raw", value_serializer=codec)
    feed = NotificationFeed(views.r, settings.valkey.key_prefix, settings.notifications.feed_max)

    @app.agent(follows)
    async def index_follows(stream: faust.StreamT[Any]) -> None:
        async for events in cast("faust.Stream[Any]", stream).take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
            changes = []
            for event in events:
                rec = record_of(event)
                if isinstance(rec, Followed):
                    changes.append(FollowChange(rec.channel_id, rec.follower_id, rec.notifications_enabled))
                elif isinstance(rec, Unfollowed):
                    changes.append(FollowChange(rec.channel_id, rec.follower_id, False))
            if changes:
                hold(events)
                await until_done(functools.partial(index.apply_follows, changes), "notification follower index",
                                 VALKEY_UNAVAILABLE, log)
                release(events)

    @app.agent(activity)
    async def index_engagement(stream: faust.StreamT[Any]) -> None:
        async for events in cast("faust.Stream[Any]", stream).take_events(BATCH_SIZE, within=BATCH_WITHIN_S):
            seen = engagement(record_of(event) for event in events)
            if seen:
                hold(events)
                await until_done(functools.partial(index.touch_engaged, seen, window_ms),
                                 "notification engagement index", VALKEY_UNAVAILABLE, log)
                release(events)

    @app.agent(users)
    async def erase_feeds(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            if isinstance(deleted := record_of(event), UserDeleted):
                hold([event])
                await until_done(functools.partial(feed.erase, deleted.user_id), "erasing a deleted user's feed",
                                 VALKEY_UNAVAILABLE, log)
                release([event])

    @app.agent(lifecycle)
    async def plan_go_live(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            if not isinstance(started := record_of(event), StreamStarted):
                continue  # StreamReconnected continues a broadcast: it never notifies
            hold([event])
            await until_done(functools.partial(planner.fanout, started, int(time.time() * 1000)),
                             f"go-live fan-out of stream {started.stream_id}", TRANSIENT, log)
            release([event])

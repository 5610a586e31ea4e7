"""The planning agents: follows and engagement into the processor's index, StreamStarted into a fan-out.

* ``index_follows`` folds ``social.follows`` (Followed with notifications on or
  off, Unfollowed) into ``notify:followers:{channel}``;
* ``index_engagement`` folds signed-in ``viewer.heartbeats`` and ``chat.messages``
  into ``notify:engaged:{channel}``;
* ``plan_go_live`` turns a ``StreamStarted`` that should notify (``plan.should_notify``)
  into one ``NotificationQueued`` per follower, a batch of followers at a time
  (SSCAN, one pipeline for the due times, the records queued to librdkafka without
  waiting for each), flushes, and only then records the broadcast as notified.  A
  worker killed half-way re-reads the StreamStarted and plans it again: the same
  ids and due times, which the deliverer's feed deduplicates.

Every write goes through ``until_done`` with ``hold``/``release`` (processors/retrying.py).
"""

from __future__ import annotations

import asyncio
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
    engagement,
    plan_batch,
    queued,
    should_notify,
)
from processors.retrying import hold, release, until_done
from schemas.records.social import Followed, Unfollowed
from schemas.records.stream import StreamStarted
from topics.errors import DeliveryError
from topics.producer import Ack, EventProducer
from topics.serde import AvroSerde
from views.errors import VALKEY_UNAVAILABLE
from views.store import ViewStore

log = logging.getLogger("glasscast.processors.notifications")

BATCH_SIZE, BATCH_WITHIN_S = 1000, 0.1
TRANSIENT = (*VALKEY_UNAVAILABLE, DeliveryError)


class Acks:
    """The outcome of records produced with ``acks.callback``: ``flushed`` raises if any was not acknowledged."""

    def __init__(self) -> None:
        self.failed = 0
        self.error: DeliveryError | None = None

    def callback(self, err: DeliveryError | None, _ack: Ack | None) -> None:
        if err is not None:  # on the producer's poll thread
            self.failed += 1
            self.error = self.error or err

    async def flushed(self, producer: EventProducer, what: str) -> None:
        remaining = await asyncio.to_thread(producer.flush, 30.0)
        if remaining or self.failed:
            raise DeliveryError(f"{remaining + self.failed} {what} not acknowledged by the log: {self.error}")


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
        total, acks = 0, Acks()
        async for followers in self.index.followers(started.channel_id, self.settings.notifications.plan_batch):
            planned = plan_batch(started.stream_id, followers, engaged, planned_at, self.policy)
            await self.index.set_due(started.stream_id, planned)  # before the records: the deliverer reads it
            for p in planned:
                self.producer.produce(queued(p, live, planned_at), p.user_id, on_delivery=acks.callback)
            total += len(planned)
            await asyncio.sleep(0)  # let the worker's heartbeats and other agents run between batches
        await acks.flushed(self.producer, "notifications")
        await self.index.set_last_notified(started.channel_id, LastNotified(started.stream_id, started.occurred_at))
        log.info("stream %s of channel %s: %d notifications queued (%d engaged followers)",
                 started.stream_id, started.channel_id, total, len(engaged))
        return total


def add_planning_agents(app: faust.App, settings: Settings, views: ViewStore, index: NotifyIndex,
                        serde: AvroSerde, codec: str) -> None:
    """Add the follow-index, engagement and fan-out agents to ``app``."""
    window_ms = int(settings.notifications.engaged_window_s * 1000)
    planner = Planner(settings, views, index, EventProducer(settings.kafka, serde))
    follows = app.topic("social.follows", key_serializer="raw", value_serializer=codec)
    activity = app.topic("viewer.heartbeats", "chat.messages", key_serializer="raw", value_serializer=codec)
    lifecycle = app.topic("stream.lifecycle", key_serializer="raw", value_serializer=codec)

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

    @app.agent(lifecycle)
    async def plan_go_live(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            if not isinstance(started := record_of(event), StreamStarted):
                continue  # StreamReconnected continues a broadcast: it never notifies
            hold([event])
            await until_done(functools.partial(planner.fanout, started, int(time.time() * 1000)),
                             f"go-live fan-out of stream {started.stream_id}", TRANSIENT, log)
            release([event])

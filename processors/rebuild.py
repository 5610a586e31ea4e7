"""``glasscast rebuild-views``: drop the views and replay the log into them.

The replay runs the same folds as the Faust agents, so the rebuilt views are
exactly what the processors had built (folds are deterministic and idempotent).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis.asyncio as aioredis

from infra.settings import Settings
from topics.consumer import EventConsumer
from topics.serde import AvroSerde
from views.fold import Applied
from views.store import VIEW_TOPICS, ViewStore

log = logging.getLogger("glasscast.processors.rebuild")


@dataclass(frozen=True)
class RebuildReport:
    dropped_keys: int
    events: int
    changed: int


async def rebuild_views(settings: Settings, serde: AvroSerde) -> RebuildReport:
    client = aioredis.Redis.from_url(settings.valkey.url)
    store = ViewStore(client, settings.valkey.key_prefix)
    consumer = EventConsumer(settings.kafka, serde, list(VIEW_TOPICS))
    try:
        dropped = await store.drop_views()
        consumer.assign("beginning")
        events = changed = 0
        while not consumer.caught_up():
            event = consumer.poll(0.2)
            if event is None:
                continue
            events += 1
            changed += await store.apply(Applied(event.offset, event.value))
        log.info("rebuilt views: dropped %d keys, replayed %d events", dropped, events)
        return RebuildReport(dropped, events, changed)
    finally:
        consumer.close()
        await client.aclose()

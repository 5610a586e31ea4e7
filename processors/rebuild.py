"""``glasscast rebuild-views``: drop the views and replay the log into them.

The replay runs the same folds as the processors, so the rebuilt views are
exactly what the processors had built (folds are deterministic and idempotent):

* ``VIEW_TOPICS`` into the ``ViewStore`` (users, channels, streams, chat rooms
  and subscriber entitlements, follows, subscriptions, videos, clips, ...);
* ``billing.ledger`` into the ledger's folded side (views/ledger_store.py
  ``READ_SIDE``: balances, leaderboards, bits by day, donations), as the
  ledger worker folds it.  Each event is counted once (its id is remembered
  in the same step), so the ledger worker may run meanwhile.  The holds of
  cheers in flight and the orders' records are the command side and stay;
* ``raids`` and the streams' starts and ends into the raid and host views
  (processors/raids/fold.py), as the raid worker folds them.  They are folded
  last, once the channels are known, in the order things happened: a host
  depends on ``raids`` and ``stream.lifecycle`` together, and two topics are
  not ordered against each other on the log.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from infra.settings import Settings
from processors.ledger.worker import LEDGER_RECORDS
from processors.raids.fold import FOLDED, Folded, fold
from topics.consumer import EventConsumer
from topics.serde import AvroSerde
from views.fold import Applied
from views.hosting import Hosts
from views.ledger_store import LedgerStore
from views.raids import RaidStore
from views.store import VIEW_TOPICS, ViewStore

log = logging.getLogger("glasscast.processors.rebuild")

#: Topics replayed besides the view topics: the ledger, and the raids (with ``stream.lifecycle``, a view topic).
LEDGER_TOPIC, RAIDS_TOPIC = "billing.ledger", "raids"


@dataclass(frozen=True)
class RebuildReport:
    dropped_keys: int
    events: int
    changed: int


async def rebuild_views(settings: Settings, serde: AvroSerde) -> RebuildReport:
    client = aioredis.Redis.from_url(settings.valkey.url)
    prefix = settings.valkey.key_prefix
    store = ViewStore(client, prefix)
    ledger = LedgerStore(client, prefix)
    consumer = EventConsumer(settings.kafka, serde, [*VIEW_TOPICS, LEDGER_TOPIC, RAIDS_TOPIC])
    try:
        dropped = await store.drop_views() + await ledger.drop_read_side()
        consumer.assign("beginning")
        events = changed = 0
        community: list[Folded] = []
        while not consumer.caught_up():
            event = consumer.poll(0.2)
            if event is None:
                continue
            events += 1
            record = event.value
            if event.topic in VIEW_TOPICS:
                changed += await store.apply(Applied(event.offset, record))
            elif isinstance(record, LEDGER_RECORDS):
                changed += await ledger.apply(record)
            if isinstance(record, FOLDED):
                community.append(record)
        raids, hosts, now_ms = RaidStore(client, prefix), Hosts(client, prefix), int(time.time() * 1000)
        for record in sorted(community, key=lambda r: r.occurred_at):  # stable: one key's records keep their log order
            await fold(raids, hosts, store, record, now_ms)
        log.info("rebuilt views: dropped %d keys, replayed %d events", dropped, events)
        return RebuildReport(dropped, events, changed)
    finally:
        consumer.close()
        await client.aclose()

"""The raid worker: raids go ahead when their countdown ends, and the raid and host views follow the log.

It runs inside the processors worker as two tasks (docs/ARCHITECTURE.md,
"Raids and host mode"):

* a consumer with its own group (``<processors app id>-raids``) on ``raids``
  and ``stream.lifecycle`` that folds raids and hosts into Valkey
  (processors/raids/fold.py, which ``rebuild-views`` runs too) and commits a
  batch only once it is written, so a ``RaidStarted`` whose gateway died
  before writing the view still counts down;
* a clock that, every ``TICK_S``, takes up the raids whose deadline has come
  (``complete_raid``: a lease in the raid's state, so of all the processors
  workers exactly one sends the viewers on, and another takes over if it dies).

The deadline lives in the event and the view, not in a gateway's memory, so a
countdown survives the restart of the gateway that started it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

import faust
import redis.asyncio as aioredis

from infra.settings import Settings
from processors.raids.fold import fold
from processors.retrying import until_done
from schemas.records.raid import RaidCompleted
from topics.consumer import Event, EventConsumer
from topics.errors import DeliveryError, TopicsError
from topics.producer import EventProducer
from topics.serde import AvroSerde
from views.errors import VALKEY_UNAVAILABLE
from views.hosting import Hosts
from views.raids import RaidStore, complete_raid
from views.store import ViewStore

log = logging.getLogger("glasscast.processors.raids")

TOPICS = ("raids", "stream.lifecycle")
BATCH_SIZE = 500
POLL_S = 0.5
TICK_S = 0.25  # how often due countdowns are looked for: a raid goes ahead at most this late
RESTART_PAUSE_S = 1.0
TRANSIENT: tuple[type[Exception], ...] = (*VALKEY_UNAVAILABLE, DeliveryError)


def group_id(settings: Settings) -> str:
    return f"{settings.processors.app_id}-raids"


class RaidWorker:
    """One consumer folding raids and hosts, and the clock that completes due raids."""

    def __init__(self, settings: Settings, serde: AvroSerde, client: aioredis.Redis,
                 producer: EventProducer) -> None:
        prefix = settings.valkey.key_prefix
        self.raids = RaidStore(client, prefix)
        self.hosts = Hosts(client, prefix)
        self.views = ViewStore(client, prefix)
        self.producer = producer
        self.consumer = EventConsumer(settings.kafka, serde, TOPICS, group_id=group_id(settings),
                                      dead_letter=producer, **{"enable.auto.commit": False})

    async def run(self) -> None:
        """Fold and tick until cancelled; either failing stops both."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.fold_forever())
            tasks.create_task(self.tick_forever())

    async def fold_forever(self) -> None:
        while True:
            try:
                events = await asyncio.to_thread(self.consumer.consume, BATCH_SIZE, POLL_S)
            except TopicsError as exc:
                log.warning("raids consumer error: %s", exc)
                await asyncio.sleep(RESTART_PAUSE_S)
                continue
            if not events:
                continue
            await until_done(functools.partial(self.handle, events), "raids batch", TRANSIENT, log)
            ends: dict[tuple[str, int], int] = {}
            for e in events:
                ends[(e.topic, e.partition)] = max(ends.get((e.topic, e.partition), -1), e.offset + 1)
            for (topic, partition), offset in ends.items():
                self.consumer.commit_offset(topic, partition, offset)

    async def handle(self, events: list[Event]) -> None:
        now_ms = int(time.time() * 1000)
        for e in events:
            await fold(self.raids, self.hosts, self.views, e.value, now_ms)

    async def tick_forever(self) -> None:
        while True:
            try:
                await self.tick(int(time.time() * 1000))
            except TRANSIENT as exc:
                log.warning("raid countdowns not checked: %s", exc)
            await asyncio.sleep(TICK_S)

    async def tick(self, now_ms: int) -> None:
        """Send on the viewers of every raid whose countdown has ended."""
        for raid_id in await self.raids.due(now_ms):
            done = await complete_raid(self.raids, raid_id, now_ms, False, self.producer.send, self.name_of)
            if done is not None:
                log.info("raid %s %s: %s -> %s, %s viewers", raid_id, done.status, done.from_channel_id,
                         done.to_channel_id, done.viewers)

    async def name_of(self, channel_id: str) -> str:
        channel = await self.views.get_channel(channel_id)
        return channel.name if channel is not None else channel_id

    async def close(self) -> None:
        await asyncio.to_thread(self.consumer.close)


async def run_raids(settings: Settings, serde: AvroSerde) -> None:
    """The worker until cancelled; a crash is logged and it starts again from its last commit."""
    while True:
        client = aioredis.Redis.from_url(settings.valkey.url, socket_timeout=10, socket_connect_timeout=10)
        producer = EventProducer(settings.kafka, serde)
        worker: RaidWorker | None = None
        try:
            await asyncio.to_thread(serde.prepare, "raids", RaidCompleted.RECORD)
            worker = await asyncio.to_thread(RaidWorker, settings, serde, client, producer)
            await worker.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("raid worker failed; starting again")
        finally:
            if worker is not None:
                await worker.close()
            try:
                await asyncio.to_thread(producer.close, 10.0)
            except DeliveryError as exc:  # the lease lapses and the raid is completed again, with the same id
                log.warning("raid producer closed with records unsent: %s", exc)
            await client.aclose()
        await asyncio.sleep(RESTART_PAUSE_S)


def add_raid_worker(app: faust.App, settings: Settings, serde: AvroSerde) -> None:
    """Run the raid worker as a task of the processors worker (``build_processors``)."""
    async def run_raid_countdowns() -> None:
        await run_raids(settings, serde)

    app.task(run_raid_countdowns)

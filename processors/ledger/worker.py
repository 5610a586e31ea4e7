"""The ledger worker: payments become ledger entries, and ledger entries become balances.

It runs inside the processors worker as a task with its own consumer group
(``<processors app id>-ledger``) on ``billing.payments`` and ``billing.ledger``,
as the EventSub dispatcher does.  A batch is read and handled to the end
before its offsets are committed, so a worker killed half-way reads it again:

* ``billing.payments`` (keyed by order): each event is folded into its order's
  state (views/ledger.py ``apply_payment``); the ledger events it causes are
  produced and acknowledged before the new state is stored.  Their ids are
  derived from the order, so producing them again after a crash makes
  duplicates the fold ignores.
* ``billing.ledger`` (keyed by user): each event is folded into its user's
  account, leaderboards and holds in one Lua step (views/ledger_store.py),
  which ignores an event id it has seen.  A cheer's message also goes to
  ``chat.messages`` (its message id is the cheer's, so history keeps it once).
"""

from __future__ import annotations

import asyncio
import functools
import logging

import faust
import redis.asyncio as aioredis

from infra.settings import Settings
from processors.retrying import until_done
from schemas.records.billing import (
    BitsChargedBack,
    BitsCheered,
    BitsPurchased,
    BitsRefunded,
    DonationMade,
    OrderPlaced,
    PaymentReversed,
    PaymentSucceeded,
)
from schemas.records.chat import ChatMessageSent
from topics.acks import AckCounter
from topics.consumer import Event, EventConsumer, background_fetch
from topics.errors import DeliveryError, TopicsError
from topics.producer import EventProducer
from topics.serde import AvroSerde
from views.errors import VALKEY_UNAVAILABLE
from views.ledger import LedgerEvent, apply_payment, derived_id
from views.ledger_store import LedgerStore

log = logging.getLogger("glasscast.processors.ledger")

TOPICS = ("billing.payments", "billing.ledger")
BATCH_SIZE = 500
POLL_S = 0.5
RESTART_PAUSE_S = 1.0
TRANSIENT = (*VALKEY_UNAVAILABLE, DeliveryError)
LEDGER_RECORDS = (BitsPurchased, BitsCheered, BitsRefunded, BitsChargedBack, DonationMade)


def chat_message_of(cheer: BitsCheered) -> ChatMessageSent:
    """The cheer's chat message for ``chat.messages`` (history, replays): the cheer's id is its message id."""
    return ChatMessageSent(event_id=derived_id("chat", cheer.cheer_id), occurred_at=cheer.occurred_at,
                           message_id=cheer.cheer_id, channel_id=cheer.channel_id, user_id=cheer.user_id,
                           username=cheer.username, text=cheer.text, nonce=cheer.nonce, badges=cheer.badges)


def group_id(settings: Settings) -> str:
    return f"{settings.processors.app_id}-ledger"


class LedgerWorker:
    """One consumer, its batches, and the ledger events and view writes they cause."""

    def __init__(self, settings: Settings, serde: AvroSerde, client: aioredis.Redis,
                 producer: EventProducer) -> None:
        self.store = LedgerStore(client, settings.valkey.key_prefix)
        self.producer = producer
        self.consumer = EventConsumer(settings.kafka, serde, TOPICS, group_id=group_id(settings),
                                      dead_letter=producer,
                                      **{"enable.auto.commit": False, **background_fetch(settings.kafka)})

    async def run(self) -> None:
        """Read, fold, commit; forever (cancelled when the worker stops)."""
        while True:
            try:
                events = await asyncio.to_thread(self.consumer.consume, BATCH_SIZE, POLL_S)
            except TopicsError as exc:
                log.warning("ledger consumer error: %s", exc)
                await asyncio.sleep(RESTART_PAUSE_S)
                continue
            if not events:
                continue
            await until_done(functools.partial(self.handle, events), "ledger batch", TRANSIENT, log)
            ends: dict[tuple[str, int], int] = {}
            for e in events:
                ends[(e.topic, e.partition)] = max(ends.get((e.topic, e.partition), -1), e.offset + 1)
            for (topic, partition), offset in ends.items():
                self.consumer.commit_offset(topic, partition, offset)

    async def handle(self, events: list[Event]) -> None:
        """Every event of a batch, in log order per key.

        The cheers' chat messages go first, all produced at once in log order and acknowledged together
        (one at a time, the broker's round trip would bound the fold to a few hundred cheers a second); a
        crash before the folds sends them again, with the same message ids.
        """
        cheers = [e.value for e in events if isinstance(e.value, BitsCheered)]
        if cheers:
            acks = AckCounter()  # one counter for the batch: no future or task per message
            for c in cheers:
                self.producer.produce_counted(chat_message_of(c), c.channel_id, acks)
            await acks.flushed("cheers' chat messages")
        folds: list[LedgerEvent] = []  # consecutive ledger records: folded in one round trip, in log order
        for e in events:
            record = e.value
            if isinstance(record, LEDGER_RECORDS):
                folds.append(record)
            elif isinstance(record, OrderPlaced | PaymentSucceeded | PaymentReversed):
                if folds:
                    await self.store.apply_all(folds)
                    folds = []
                state, caused = apply_payment(record, await self.store.load_order(record.order_id))
                for ledger_event in caused:
                    await self.producer.send(ledger_event, ledger_event.user_id)
                await self.store.store_order(state)
        if folds:
            await self.store.apply_all(folds)

    async def close(self) -> None:
        await asyncio.to_thread(self.consumer.close)


async def run_ledger(settings: Settings, serde: AvroSerde) -> None:
    """The worker until cancelled; a crash is logged and it starts again from its last commit."""
    while True:
        client = aioredis.Redis.from_url(settings.valkey.url, socket_timeout=10, socket_connect_timeout=10)
        producer = EventProducer(settings.kafka, serde)
        worker: LedgerWorker | None = None
        try:
            for record in LEDGER_RECORDS:  # registered now, so producing never waits on the registry
                await asyncio.to_thread(serde.prepare, "billing.ledger", record.RECORD)
            await asyncio.to_thread(serde.prepare, "chat.messages", ChatMessageSent.RECORD)
            worker = await asyncio.to_thread(LedgerWorker, settings, serde, client, producer)
            await worker.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("ledger worker failed; starting again")
        finally:
            if worker is not None:
                await worker.close()
            try:
                await asyncio.to_thread(producer.close, 10.0)
            except DeliveryError as exc:  # produced again after the restart: the fold ignores duplicates
                log.warning("ledger producer closed with records unsent: %s", exc)
            await client.aclose()
        await asyncio.sleep(RESTART_PAUSE_S)


def add_ledger_worker(app: faust.App, settings: Settings, serde: AvroSerde) -> None:
    """Run the ledger worker as a task of the processors worker (``build_processors``)."""
    async def fold_ledger() -> None:
        await run_ledger(settings, serde)

    app.task(fold_ledger)

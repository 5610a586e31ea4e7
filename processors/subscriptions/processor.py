"""The subscription processor: paid periods from payments, cancellations at period end, and expiry.

It runs inside the processors worker as a task of its own, with its own
consumer group (``<processors app id>-subscriptions``) on ``billing.payments``
and ``billing.subscriptions``, and commits a batch only once everything it
decided is on the log (processors/subscriptions/state.py: decide, write,
produce, clear the outbox).

* ``PaymentSucceeded`` of kind SUBSCRIPTION: a ``SubscriptionStarted`` or
  ``SubscriptionRenewed`` per recipient on ``billing.subscriptions`` (keyed
  ``user_id:channel_id``), and one SUBSCRIPTION frame in the channel's chat
  (processors/subscriptions/announce.py); grants.py says which and with which ids.
* ``PaymentReversed`` (a refund or chargeback) of such an order: ``SubscriptionEnded``
  (REFUNDED) for each subscription it paid for that is still running.
* ``SubscriptionCancelRequested`` (the gateway's ``DELETE /v1/me/subscriptions/{channel}``,
  or the provider stopping a recurring payment): the subscription is marked so;
  its expiry is then due at ``expires_at`` without a renewal grace.
* The expiry timer: every ``subscriptions.expiry_check_s``, on the one worker
  holding the lease, ``SubscriptionEnded`` (EXPIRED) for each subscription whose
  period ran out unrenewed, and the outbox entries a dead worker left unsent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Callable

import faust
import redis.asyncio as aioredis

from infra.settings import Settings
from processors.retrying import until_done
from processors.subscriptions import announce
from processors.subscriptions.grants import (
    Grant,
    NotASubscriptionPayment,
    SubState,
    cancel,
    dedupe_key,
    derived_id,
    expire,
    grant,
    recipients,
    revoke,
)
from processors.subscriptions.state import ConcurrentChange, Outgoing, SubscriptionState, event_entry, frame_entry
from schemas.records.billing import (
    PaymentReversed,
    PaymentSucceeded,
    SubscriptionCancelRequested,
    SubscriptionEnded,
    SubscriptionRenewed,
    SubscriptionStarted,
)
from topics.consumer import Event, EventConsumer
from topics.errors import DeliveryError, TopicsError
from topics.producer import EventProducer
from topics.serde import AvroSerde
from views.errors import VALKEY_UNAVAILABLE
from views.store import ViewStore

log = logging.getLogger("glasscast.processors.subscriptions")

TOPICS = ("billing.payments", "billing.subscriptions")
BATCH_SIZE = 200
POLL_S = 0.5
RESTART_PAUSE_S = 1.0
EXPIRIES_PER_TICK = 500
STALE_OUTBOX_MS = 30_000  # an outbox entry this old was left by a worker that died before sending it
TRANSIENT: tuple[type[Exception], ...] = (*VALKEY_UNAVAILABLE, DeliveryError, ConcurrentChange)


def group_id(settings: Settings) -> str:
    return f"{settings.processors.app_id}-subscriptions"


class SubscriptionProcessor:
    """One consumer and the expiry timer."""

    def __init__(self, settings: Settings, serde: AvroSerde, client: aioredis.Redis, producer: EventProducer,
                 clock: Callable[[], float] = time.time) -> None:
        cfg = settings.subscriptions
        self.settings = settings
        self.period_ms = int(cfg.period_s * 1000)
        self.grace_ms = int(cfg.renewal_grace_s * 1000)
        self.check_s = cfg.expiry_check_s
        self.r = client
        self.prefix = settings.valkey.key_prefix
        self.state = SubscriptionState(client, self.prefix, self.grace_ms)
        self.views = ViewStore(client, self.prefix)
        self.producer = producer
        self.clock = clock
        self.owner = uuid.uuid4().hex
        self.consumer = EventConsumer(settings.kafka, serde, TOPICS, group_id=group_id(settings),
                                      dead_letter=producer, **{"enable.auto.commit": False})

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def run(self) -> None:
        """Consume and expire until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.consume(), name="subscriptions-consume")
            tasks.create_task(self.expire_loop(), name="subscriptions-expiry")

    async def close(self) -> None:
        await asyncio.to_thread(self.consumer.close)

    async def consume(self) -> None:
        while True:
            try:
                events = await asyncio.to_thread(self.consumer.consume, BATCH_SIZE, POLL_S)
            except TopicsError as exc:  # the broker is away: wait for it
                log.warning("subscriptions consumer error: %s", exc)
                await asyncio.sleep(RESTART_PAUSE_S)
                continue
            if not events:
                continue
            await until_done(functools.partial(self.handle, events), "subscriptions batch", TRANSIENT, log)
            ends: dict[tuple[str, int], int] = {}
            for e in events:
                ends[(e.topic, e.partition)] = max(ends.get((e.topic, e.partition), -1), e.offset + 1)
            for (topic, partition), offset in ends.items():
                self.consumer.commit_offset(topic, partition, offset)

    async def handle(self, events: list[Event]) -> None:
        """Decide and send what one batch causes, in log order."""
        for e in events:
            record = e.value
            if isinstance(record, PaymentSucceeded) and record.kind == "SUBSCRIPTION":
                await self.on_payment(record)
            elif isinstance(record, SubscriptionCancelRequested):
                await self.on_cancel(record)
            elif isinstance(record, PaymentReversed):
                await self.on_reversal(record)

    async def on_payment(self, payment: PaymentSucceeded) -> None:
        """One paid period per recipient, and the room's announcement."""
        channel_id = payment.channel_id or ""
        whom = recipients(payment)
        pairs = [f"{r}:{channel_id}" for r in whom]
        names = await self._names([payment.user_id, *whom])

        def plan(states: dict[str, SubState | None]) -> tuple[dict[str, SubState], list[Outgoing]]:
            changed: dict[str, SubState] = {}
            out: list[Outgoing] = []
            grants: list[Grant] = []
            for recipient, pair in zip(whom, pairs, strict=True):
                event, after = grant(payment, recipient, states[pair], self.period_ms)
                changed[pair] = after
                grants.append(event)
                out.append(event_entry(event, pair))
            out.append(frame_entry(channel_id, self._announcement(payment, grants, names)))
            return changed, out

        try:
            outgoing = await self.state.decide(pairs, plan, self.now_ms(), done_key=dedupe_key(payment),
                                               order_id=None if payment.renewal else payment.order_id)
        except NotASubscriptionPayment as exc:  # paid, but for nothing we sell: on the log for an operator
            log.error("payment %s (order %s) not granted: %s", payment.provider_event_id, payment.order_id, exc)
            return
        if outgoing:
            log.info("order %s: %d subscription period(s) on channel %s", payment.order_id, len(pairs), channel_id)
        await self.send(outgoing)

    def _announcement(self, payment: PaymentSucceeded, grants: list[Grant], names: dict[str, str]) -> str:
        first = grants[0]
        frame = functools.partial(announce.frame, frame_id=derived_id("frame", dedupe_key(payment)),
                                  channel_id=first.channel_id, user_id=payment.user_id, tier=first.tier,
                                  at_ms=payment.occurred_at, names=names, message=payment.message)
        if payment.gift_to_user_ids:
            return frame(kind="subgift" if len(grants) == 1 else "submysterygift",
                         recipients=tuple(g.user_id for g in grants))
        resub = isinstance(first, SubscriptionRenewed) or first.months_total > 1
        return frame(kind="resub" if resub else "sub", months=first.months_total)

    async def _names(self, user_ids: list[str]) -> dict[str, str]:
        names = {}
        for user_id in dict.fromkeys(user_ids):
            user = await self.views.get_user(user_id)
            if user is not None:
                names[user_id] = user.username
        return names

    async def on_reversal(self, reversal: PaymentReversed) -> None:
        """A refunded or charged-back subscription order: what it paid for ends now."""
        pairs = await self.state.paid_by(reversal.order_id)
        if not pairs:
            return  # not a subscription order (bits, donations: the ledger's)

        def plan(states: dict[str, SubState | None]) -> tuple[dict[str, SubState], list[Outgoing]] | None:
            changed: dict[str, SubState] = {}
            out: list[Outgoing] = []
            for pair in pairs:
                current = states[pair]
                result = None if current is None else revoke(current, reversal.event_id, reversal.occurred_at)
                if result is not None:
                    changed[pair], ended = result[1], result[0]
                    out.append(event_entry(ended, pair))
            return (changed, out) if changed else None

        outgoing = await self.state.decide(pairs, plan, self.now_ms(), done_key=f"reversal:{reversal.event_id}")
        if outgoing:
            log.info("order %s reversed (%s): %d subscription(s) ended", reversal.order_id, reversal.kind,
                     len(outgoing))
        await self.send(outgoing)

    async def on_cancel(self, request: SubscriptionCancelRequested) -> None:
        pair = f"{request.user_id}:{request.channel_id}"

        def plan(states: dict[str, SubState | None]) -> tuple[dict[str, SubState], list[Outgoing]] | None:
            current = states[pair]
            after = None if current is None else cancel(current)
            return None if after is None else ({pair: after}, [])

        await self.state.decide([pair], plan, self.now_ms())

    async def send(self, entries: list[Outgoing]) -> None:
        """Produce the events (acknowledged), publish the frames, then clear them from the outbox."""
        for entry in entries:
            if entry.record is not None:
                await self.producer.send(entry.record, entry.key)
            elif entry.frame:
                await self.r.publish(announce.room_channel(self.prefix, entry.channel_id),
                                     announce.CONTROL + entry.frame)
        await self.state.sent(entries)

    async def expire_loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_s)
            try:
                if await self.state.take_lease(self.owner, int(self.check_s * 3000)):
                    await self.tick(self.now_ms())
            except TRANSIENT as exc:
                log.warning("subscription expiry tick failed (%s); trying again next tick", exc)

    async def tick(self, now_ms: int) -> int:
        """End what is due, and send what dead workers left in the outbox; how many subscriptions ended."""
        await self.send(await self.state.stale(now_ms - STALE_OUTBOX_MS))
        ended = 0
        for pair in await self.state.due(now_ms, EXPIRIES_PER_TICK):
            def plan(states: dict[str, SubState | None],
                     pair: str = pair) -> tuple[dict[str, SubState], list[Outgoing]] | None:
                current = states[pair]
                if current is None:
                    return None
                result = expire(current, now_ms, self.grace_ms)
                if result is None:  # renewed meanwhile: write it back, which puts its due time right
                    return {pair: current}, []
                event, after = result
                return {pair: after}, [event_entry(event, pair)]

            outgoing = await self.state.decide([pair], plan, now_ms)
            ended += sum(isinstance(o.record, SubscriptionEnded) for o in outgoing)
            await self.send(outgoing)
        return ended


async def run_subscriptions(settings: Settings, serde: AvroSerde) -> None:
    """The processor until cancelled; a crash is logged and it starts again from its last commit."""
    while True:
        client = aioredis.Redis.from_url(settings.valkey.url, socket_timeout=10, socket_connect_timeout=10)
        producer = EventProducer(settings.kafka, serde)
        processor: SubscriptionProcessor | None = None
        try:
            # Registered off the loop now, so producing never waits on the registry.
            for record in (SubscriptionStarted, SubscriptionRenewed, SubscriptionEnded):
                await asyncio.to_thread(serde.prepare, "billing.subscriptions", record.RECORD)
            processor = await asyncio.to_thread(SubscriptionProcessor, settings, serde, client, producer)
            await processor.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("subscription processor failed; starting again")
        finally:
            if processor is not None:
                await processor.close()
            try:
                await asyncio.to_thread(producer.close, 10.0)
            except DeliveryError as exc:  # what it could not send is in the outbox, sent after the restart
                log.warning("subscriptions producer closed with records unsent: %s", exc)
            await client.aclose()
        await asyncio.sleep(RESTART_PAUSE_S)


def add_subscription_processor(app: faust.App, settings: Settings, serde: AvroSerde) -> None:
    """Run the processor as a task of the processors worker (``build_processors``)."""
    async def process_subscriptions() -> None:
        await run_subscriptions(settings, serde)

    app.task(process_subscriptions)

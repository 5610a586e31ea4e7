"""The EventSub dispatcher: verifies callbacks and delivers notifications from the log.

It runs inside the processors worker as a task of its own, with its own
consumer group (``<processors app id>-eventsub``) on the ``eventsub`` topic
and the source topics, apart from the Faust agents so that a slow callback
never holds a view back.  A batch is read, every verification and delivery it
causes is done or given up, and only then are its offsets committed: a
worker killed half-way reads the batch again and sends its messages again
(at-least-once; a message keeps its id, so receivers deduplicate).

* ``SubscriptionCreated`` (still pending in the view): a
  ``webhook_callback_verification`` with a random challenge; an answer of
  2xx whose body is the challenge enables it (``SubscriptionVerified``),
  anything else ends it ``webhook_callback_verification_failed``.
* A source record (``messages.trigger_of``): one notification per enabled
  subscription of its type on its channel that existed when it happened.
  Each is tried up to ``max_attempts`` times with doubling back-off and the
  same message id; ``revoke_after_failures`` failed attempts in a row revoke
  the subscription (``notification_failures_exceeded``), which is told so
  with one ``revocation`` message.  A subscription's messages go one after
  another; different subscriptions' go at once (``max_in_flight``).

Secrets are unsealed only here, for signing, and never logged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import faust
import redis.asyncio as aioredis

from infra.settings import Settings
from processors.eventsub import messages as m
from processors.eventsub.delivery import Attempt, Sender
from processors.eventsub.raids import raid_event, raid_triggers, wants
from processors.retrying import until_done
from schemas.record import Record
from schemas.records.eventsub import SubscriptionCreated, SubscriptionRevoked, SubscriptionVerified
from schemas.records.raid import RaidCompleted
from topics.consumer import Event, EventConsumer, background_fetch
from topics.errors import DeliveryError, TopicsError
from topics.producer import EventProducer
from topics.serde import AvroSerde
from views.errors import VALKEY_UNAVAILABLE
from views.eventsub import (
    ENABLED,
    FAILURES_EXCEEDED,
    PENDING,
    VERIFICATION_FAILED,
    EventSubViews,
    SubscriptionView,
    sealing_key,
    unseal,
)
from views.store import ViewStore

log = logging.getLogger("glasscast.processors.eventsub")

TOPICS = ("eventsub", "stream.lifecycle", "channels", "social.follows", "chat.messages", "billing.subscriptions",
          "billing.payments", "billing.ledger", "raids")
BATCH_SIZE = 500
POLL_S = 0.5
RESTART_PAUSE_S = 1.0
TRANSIENT = (*VALKEY_UNAVAILABLE, DeliveryError)

Delivery = tuple[m.Trigger, dict[str, Any]]


def group_id(settings: Settings) -> str:
    return f"{settings.processors.app_id}-eventsub"


class Dispatcher:
    """One consumer, its batches, and the requests they cause."""

    def __init__(self, settings: Settings, serde: AvroSerde, client: aioredis.Redis, producer: EventProducer,
                 sender: Sender, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.cfg = settings.eventsub
        self.subs = EventSubViews(client, settings.valkey.key_prefix)
        self.views = ViewStore(client, settings.valkey.key_prefix)
        self.producer = producer
        self.sender = sender
        self.clock = clock
        self.key = sealing_key(str(settings.auth.jwt_secret), str(self.cfg.secret_key))
        self.slots = asyncio.Semaphore(self.cfg.max_in_flight)
        self.consumer = EventConsumer(settings.kafka, serde, TOPICS, group_id=group_id(settings),
                                      dead_letter=producer,
                                      **{"enable.auto.commit": False, **background_fetch(settings.kafka)})

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def run(self) -> None:
        """Read, deliver, commit; forever (cancelled when the worker stops)."""
        while True:
            try:
                events = await asyncio.to_thread(self.consumer.consume, BATCH_SIZE, POLL_S)
            except TopicsError as exc:  # the broker is away: wait for it
                log.warning("eventsub consumer error: %s", exc)
                await asyncio.sleep(RESTART_PAUSE_S)
                continue
            if not events:
                continue
            await until_done(functools.partial(self.handle, events), "eventsub batch", TRANSIENT, log)
            ends: dict[tuple[str, int], int] = {}
            for e in events:
                ends[(e.topic, e.partition)] = max(ends.get((e.topic, e.partition), -1), e.offset + 1)
            for (topic, partition), offset in ends.items():
                self.consumer.commit_offset(topic, partition, offset)

    async def close(self) -> None:
        await asyncio.to_thread(self.consumer.close)

    async def handle(self, events: list[Event]) -> None:
        """Everything one batch causes, done or given up."""
        verifications: list[SubscriptionView] = []
        queues: dict[str, tuple[SubscriptionView, list[Delivery]]] = {}
        # The subscriptions of a (type, broadcaster), read once per batch until a subscription record changes them.
        matching: dict[tuple[str, str], list[SubscriptionView]] = {}
        for e in events:
            record = e.value
            if e.topic == "eventsub":
                matching.clear()
                if isinstance(record, SubscriptionCreated) and unseal(
                        self.key, record.subscription_id, record.secret_sealed) is None:
                    # Sealed under another key: another platform's on a shared log (or the key changed), never ours
                    # to verify; without a view here, its later records change nothing either.
                    log.debug("eventsub subscription %s: not sealed with this platform's key", record.subscription_id)
                    continue
                view = await self.subs.apply(record)
                if isinstance(record, SubscriptionCreated) and view is not None and view.status == PENDING:
                    verifications.append(view)
                continue
            if isinstance(record, RaidCompleted):  # channel.raid: either side's subscriptions (raids.py)
                await self._raid(record, queues)
                continue
            trigger = m.trigger_of(record)
            if trigger is None:
                continue
            key = (trigger.type, trigger.broadcaster_user_id)
            if key not in matching:
                matching[key] = await self.subs.matching(*key)
            targets = [s for s in matching[key] if s.status == ENABLED and trigger.occurred_at_ms >= s.created_at_ms]
            if not targets:
                continue
            event = m.event_object(record, await self._names(record, trigger))
            for sub in targets:
                queues.setdefault(sub.id, (sub, []))[1].append((trigger, event))
        # Every request of the batch ends before a failure is raised, so a retried batch never runs beside itself.
        results = await asyncio.gather(*(self.verify(v) for v in verifications),
                                       *(self.deliver_all(sub, items) for sub, items in queues.values()),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _raid(self, record: RaidCompleted, queues: dict[str, tuple[SubscriptionView, list[Delivery]]]) -> None:
        event: dict[str, Any] | None = None
        for trigger in raid_triggers(record):
            for sub in await self.subs.matching(trigger.type, trigger.broadcaster_user_id):
                if (sub.status != ENABLED or trigger.occurred_at_ms < sub.created_at_ms
                        or not wants(sub, trigger, record)):
                    continue
                if event is None:
                    sides = [await self.views.get_channel(c) for c in (record.from_channel_id, record.to_channel_id)]
                    names = [(c.name.lower(), c.name) if c else (i, i)
                             for c, i in zip(sides, (record.from_channel_id, record.to_channel_id), strict=True)]
                    event = raid_event(record, names[0], names[1])
                queues.setdefault(sub.id, (sub, []))[1].append((trigger, event))

    async def _names(self, record: Record, trigger: m.Trigger) -> m.Names:
        channel = await self.views.get_channel(trigger.broadcaster_user_id)
        names = m.Names(broadcaster_login=channel.name.lower() if channel else trigger.broadcaster_user_id,
                        broadcaster_name=channel.name if channel else trigger.broadcaster_user_id,
                        title=channel.title if channel else "", category=channel.category if channel else None)
        user_id = m.acting_user_id(record)
        user = await self.views.get_user(user_id) if user_id else None
        if user is None:
            return names
        return m.Names(names.broadcaster_login, names.broadcaster_name, names.title, names.category,
                       # The display name is personal data, sealed with the user's key (views/personal_data.py):
                       # an integrator gets the public username, never the sealed bytes.
                       user_login=user.username.lower(), user_name=user.username)

    async def _post(self, sub: SubscriptionView, secret: str, message: m.Message, retry: int,
                    timeout_s: float) -> Attempt:
        async with self.slots:
            return await self.sender.post(sub.callback, m.headers(sub, secret, message, retry), message.body,
                                          timeout_s)

    async def _record(self, record: SubscriptionVerified | SubscriptionRevoked) -> SubscriptionView | None:
        await self.producer.send(record, record.subscription_id)
        return await self.subs.apply(record)

    async def verify(self, sub: SubscriptionView) -> None:
        """Send the challenge; enable the subscription or end it."""
        secret = unseal(self.key, sub.id, sub.secret_sealed)
        if secret is None:
            await self._record(SubscriptionRevoked(occurred_at=self.now_ms(), subscription_id=sub.id,
                                                   status=VERIFICATION_FAILED, detail="secret unreadable"))
            return
        challenge = secrets.token_urlsafe(32)
        attempt = await self._post(sub, secret, m.verification(sub, challenge, self.now_ms()), 0,
                                   self.cfg.verification_timeout_s)
        if attempt.ok and attempt.body == challenge.encode():
            log.info("eventsub subscription %s verified", sub.id)
            await self._record(SubscriptionVerified(occurred_at=self.now_ms(), subscription_id=sub.id))
            return
        detail = attempt.describe() if not attempt.ok else "the answer was not the challenge"
        log.info("eventsub subscription %s failed verification: %s", sub.id, detail)
        await self._record(SubscriptionRevoked(occurred_at=self.now_ms(), subscription_id=sub.id,
                                               status=VERIFICATION_FAILED, detail=detail))

    async def deliver_all(self, sub: SubscriptionView, items: list[Delivery]) -> None:
        """A subscription's notifications of one batch, in order; stops when it is revoked or removed."""
        secret = unseal(self.key, sub.id, sub.secret_sealed)
        if secret is None:
            log.warning("eventsub subscription %s: secret unreadable (platform secret changed?)", sub.id)
            return
        for trigger, event in items:
            if not await self.deliver(sub, secret, m.notification(sub, trigger, event, self.now_ms())):
                return

    async def _still_enabled(self, sub_id: str) -> bool:
        current = await self.subs.get(sub_id)
        return current is not None and current.status == ENABLED

    async def deliver(self, sub: SubscriptionView, secret: str, message: m.Message) -> bool:
        """One notification, retried; False once the subscription is gone (revoked, deleted)."""
        delay = self.cfg.retry_initial_s
        for retry in range(self.cfg.max_attempts):
            if retry:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.cfg.retry_max_s)
            if not await self._still_enabled(sub.id):
                return False
            attempt = await self._post(sub, secret, message, retry, self.cfg.delivery_timeout_s)
            if attempt.ok:
                await self.subs.succeeded(sub.id)
                return True
            failures = await self.subs.failed(sub.id)
            log.info("eventsub %s to subscription %s failed (attempt %d, %d in a row): %s",
                     message.message_id, sub.id, retry + 1, failures, attempt.describe())
            if failures >= self.cfg.revoke_after_failures:
                await self.revoke(sub, secret, attempt.describe())
                return False
        log.warning("eventsub %s to subscription %s given up after %d attempts",
                    message.message_id, sub.id, self.cfg.max_attempts)
        return True

    async def revoke(self, sub: SubscriptionView, secret: str, detail: str) -> None:
        """End the subscription for its failures and tell its callback (once, best effort)."""
        view = await self._record(SubscriptionRevoked(occurred_at=self.now_ms(), subscription_id=sub.id,
                                                      status=FAILURES_EXCEEDED, detail=detail))
        log.warning("eventsub subscription %s revoked: %s", sub.id, FAILURES_EXCEEDED)
        if view is not None and view.status == FAILURES_EXCEEDED:
            await self._post(view, secret, m.revocation(view, self.now_ms()), 0, self.cfg.delivery_timeout_s)


async def run_dispatcher(settings: Settings, serde: AvroSerde) -> None:
    """The dispatcher until cancelled; a crash is logged and it starts again from its last commit."""
    while True:
        client = aioredis.Redis.from_url(settings.valkey.url, socket_timeout=10, socket_connect_timeout=10)
        producer = EventProducer(settings.kafka, serde)
        sender = Sender(settings.eventsub)
        dispatcher: Dispatcher | None = None
        try:
            # Registered off the loop now, so producing a verification or revocation never waits on the registry.
            for record in (SubscriptionVerified, SubscriptionRevoked):
                await asyncio.to_thread(serde.prepare, "eventsub", record.RECORD)
            dispatcher = await asyncio.to_thread(Dispatcher, settings, serde, client, producer, sender)
            await dispatcher.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("eventsub dispatcher failed; starting again")
        finally:
            if dispatcher is not None:
                await dispatcher.close()
            await sender.close()
            try:
                await asyncio.to_thread(producer.close, 10.0)
            except DeliveryError as exc:  # the records it could not send are sent again after the restart
                log.warning("eventsub producer closed with records unsent: %s", exc)
            await client.aclose()
        await asyncio.sleep(RESTART_PAUSE_S)


def add_eventsub_dispatcher(app: faust.App, settings: Settings, serde: AvroSerde) -> None:
    """Run the dispatcher as a task of the processors worker (``build_processors``)."""
    async def deliver_eventsub() -> None:
        await run_dispatcher(settings, serde)

    app.task(deliver_eventsub)

"""The delivery consumer group: queued notifications, when due, to the feed, open sockets and e-mail.

A loop owned by the processors worker (``app.task``) around its own consumer of
``notifications`` and ``notifications.later`` (group ``{app_id}-notify``, auto-commit
off).  It reads ahead
up to ``max_pending`` records, holds each ``NotificationQueued`` until its
``due_at`` (none: now), delivers the due ones a batch at a time and commits a
partition only up to its lowest record not yet delivered (``pending.py``), so a
killed deliverer re-delivers at most what it had not committed.  The planner
writes a fan-out's records in due order, and a partition is read only up to
``READ_AHEAD_MS`` ahead of the clock: at the first record due later, the
partition is held there (paused, and read again from that record once it is
due within ``RELEASE_AHEAD_MS``), so the read-ahead is a short stretch of every partition
rather than a whole fan-out of whichever partition the broker served first
(which would leave the others' records unread, and late, while the window is
full).  Only ``notifications.later`` carries records due later (``plan.topic_of``), so a
held partition of it never stands in front of a notification due now, which comes on
``notifications``.  A held record keeps only what delivery needs (``Held``), its shared
text (title, body, link) once per broadcast.  A delivery is:

* in-app: the feed (views/notifications.py, one script call per batch; deduplicated
  on the notification id, so a re-delivery lists nothing twice) and, for a new
  item, a Valkey pub/sub push that whichever gateway holds the user's notification
  socket forwards;
* e-mail, when a relay is configured and the account has an address (sealed in the user view, opened
  with the user's personal-data key; none once the account is deleted; a view not folded yet is waited
  for, up to ``USER_VIEW_WAIT_MS`` after queueing): sent
  off the loop, tried ``smtp_attempts`` times, then given up (logged; the in-app
  notification stands); a sent one is marked so a re-delivery does not send it again;

then a ``NotificationDelivered`` per delivery, acknowledged by the log before the commit.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from infra.settings import Settings
from processors.notifications.index import NotifyIndex
from processors.notifications.mail import Mail, MailError, mail_enabled, send_mail
from processors.notifications.pending import PendingWindow
from processors.notifications.plan import LATER_TOPIC, NOW_TOPIC
from processors.retrying import until_done
from schemas.records.notification import NotificationDelivered, NotificationQueued
from topics.acks import AckCounter
from topics.consumer import EventConsumer
from topics.errors import DeliveryError
from topics.producer import EventProducer
from topics.serde import AvroSerde
from views.errors import VALKEY_UNAVAILABLE
from views.notifications import FeedItem, NotificationFeed
from views.personal_data import PersonalKeys
from views.store import ViewStore
from views.users import UserView, profile_of

log = logging.getLogger("glasscast.processors.notifications.delivery")

TOPICS = (NOW_TOPIC, LATER_TOPIC)
READ_MAX = 1000  # records per consume call
FETCH_QUEUE_KB = 4096  # librdkafka's read-ahead for this consumer (its default, 64 MB, would dwarf the window)
CONTENT_CACHE_MAX = 4096  # distinct notification texts shared by held records
READ_AHEAD_MS = 10_000  # a partition is read no further than records due this far ahead,
RELEASE_AHEAD_MS = 5_000  # and once held, read again when its next record is due within this
DELIVER_MAX = 500  # notifications per delivery batch
IDLE_WAIT_S = 0.2  # the consume wait while nothing is due
MAIL_CONCURRENCY = 4  # SMTP sessions at once
USER_VIEW_WAIT_MS = 30_000  # how long an e-mail waits for a recipient's user view to be folded


class UserViewPending(Exception):
    """A recipient's user view is not folded yet (a new account): the batch is tried again shortly."""


TRANSIENT = (*VALKEY_UNAVAILABLE, DeliveryError, UserViewPending)
Partition = tuple[str, int]
RESTART_PAUSE_S = 1.0


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Content:
    """What a notification says; one object for all notifications of a broadcast."""

    kind: str
    title: str
    body: str
    url: str | None
    channel_id: str | None
    stream_id: str | None


@dataclass(frozen=True, slots=True)
class Held:
    """A queued notification as the deliverer holds it until due."""

    notification_id: str
    user_id: str
    queued_at_ms: int
    content: Content

    @property
    def title(self) -> str:
        return self.content.title

    @property
    def body(self) -> str:
        return self.content.body

    @property
    def url(self) -> str | None:
        return self.content.url


class Contents:
    """Shares equal Content objects between held records (bounded: cleared when full)."""

    def __init__(self) -> None:
        self._known: dict[Content, Content] = {}

    def held(self, n: NotificationQueued) -> Held:
        c = Content(n.kind, n.title, n.body, n.url, n.channel_id, n.stream_id)
        shared = self._known.get(c)
        if shared is None:
            if len(self._known) >= CONTENT_CACHE_MAX:
                self._known.clear()
            shared = self._known[c] = c
        return Held(n.notification_id, n.user_id, n.occurred_at, shared)


def mail_of(n: Held) -> str:
    """The e-mail text of a notification."""
    lines = [n.title, "", n.body] if n.body else [n.title]
    if n.url:
        lines += ["", f"Watch: {n.url}"]
    return "\n".join(lines) + "\n"


class Deliverer:
    """Delivers due notifications; ``run`` is the loop."""

    def __init__(self, settings: Settings, serde: AvroSerde, views: ViewStore, index: NotifyIndex) -> None:
        self.settings = settings
        self.cfg = settings.notifications
        self.serde = serde
        self.views = views
        self.index = index
        self.feed = NotificationFeed(views.r, settings.valkey.key_prefix, self.cfg.feed_max)
        self.producer = EventProducer(settings.kafka, serde)
        self.window: PendingWindow[Partition, Held] = PendingWindow()
        self.contents = Contents()
        self.held: dict[Partition, int] = {}  # held by the read-ahead -> when its next record comes due
        self._keys: PersonalKeys | None = None  # opened on the first e-mail

    async def run(self) -> None:
        """Deliver until cancelled; a crash is logged and delivery starts again from the last commit."""
        while True:
            self.window = PendingWindow()
            self.held = {}
            consumer: EventConsumer | None = None
            try:
                consumer = await asyncio.to_thread(self.open_consumer)
                while True:
                    await self.step(consumer)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notification deliverer failed; starting again from its last commit")
            finally:
                if consumer is not None:
                    await asyncio.to_thread(consumer.close)
            await asyncio.sleep(RESTART_PAUSE_S)

    def open_consumer(self) -> EventConsumer:
        """The delivery group's consumer; offsets are committed only by ``step``, never automatically."""
        overrides: dict[str, Any] = {"enable.auto.commit": False, "queued.max.messages.kbytes": FETCH_QUEUE_KB}
        return EventConsumer(self.settings.kafka, self.serde, TOPICS,
                             group_id=f"{self.settings.processors.app_id}-notify", dead_letter=self.producer,
                             **overrides)

    async def step(self, consumer: EventConsumer) -> None:
        """Read what there is room for, deliver what is due, commit what is done."""
        now = now_ms()
        for tp, due in list(self.held.items()):
            if due - RELEASE_AHEAD_MS <= now:
                del self.held[tp]
                consumer.release_partition(*tp)
        room = self.cfg.max_pending - len(self.window)
        wake = [t for t in (self.window.next_due_ms(), *(d - RELEASE_AHEAD_MS for d in self.held.values()))
                if t is not None]
        wait_s = IDLE_WAIT_S if not wake else min(IDLE_WAIT_S, max(0.0, (min(wake) - now) / 1000))
        events = await asyncio.to_thread(consumer.consume, min(room, READ_MAX), wait_s) if room > 0 else []
        now = now_ms()
        for ev in events:
            tp = (ev.topic, ev.partition)
            if tp in self.held:
                continue  # past where the partition is held: read again from there
            if isinstance(ev.value, NotificationQueued) and (ev.value.due_at or 0) > now + READ_AHEAD_MS:
                self.held[tp] = ev.value.due_at or 0
                consumer.hold_partition(ev.topic, ev.partition, ev.offset)
                continue
            self.window.read(tp, ev.offset)
            if isinstance(ev.value, NotificationQueued):  # no due time: the first tier, due now
                self.window.hold(tp, ev.offset, ev.value.due_at or 0, self.contents.held(ev.value))
            else:
                self.window.done(tp, ev.offset)  # NotificationDelivered: nothing to do
        due_now = self.window.take_due(now_ms(), DELIVER_MAX)
        if due_now:
            items = [item for _, _, item in due_now]
            await until_done(functools.partial(self.deliver, items), "notification delivery", TRANSIENT, log)
            for tp, offset, _ in due_now:
                self.window.done(tp, offset)
        for (topic, partition), position in self.window.commits().items():
            consumer.commit_offset(topic, partition, position)
        if room <= 0 and not due_now:
            await asyncio.sleep(wait_s)

    async def deliver(self, items: list[Held]) -> None:
        """Deliver a batch in-app (and by e-mail), then record each delivery on the log."""
        at = now_ms()
        await self.feed.add([(n.user_id, FeedItem(
            id=n.notification_id, kind=n.content.kind, title=n.content.title, body=n.content.body,
            url=n.content.url, channel_id=n.content.channel_id, stream_id=n.content.stream_id,
            queued_at_ms=n.queued_at_ms, delivered_at_ms=at)) for n in items])
        delivered = [NotificationDelivered(occurred_at=at, notification_id=n.notification_id, user_id=n.user_id,
                                           delivery="IN_APP") for n in items]
        if mail_enabled(self.cfg):
            delivered += await self.email(items)
        acks = AckCounter()
        for d in delivered:
            self.producer.produce_counted(d, d.user_id, acks)
        await acks.flushed("NotificationDelivered records")

    async def email(self, items: list[Held]) -> list[NotificationDelivered]:
        """E-mail each notification whose user has an address and was not e-mailed it yet."""
        raws = await self.views.r.mget([self.views.k_user(n.user_id) for n in items])
        sent = await self.index.emailed([n.notification_id for n in items])
        users = {n.user_id: UserView.from_json(json.loads(raw)) for n, raw in zip(items, raws, strict=True)
                 if raw is not None}
        # An account registered a moment ago may not be in the views yet: wait for it (bounded), rather than
        # decide it has no address.  In-app delivery already happened; a retry repeats nothing of it.
        pending = [n.user_id for n in items if n.user_id not in users and now_ms() - n.queued_at_ms < USER_VIEW_WAIT_MS]
        if pending:
            raise UserViewPending(f"{len(pending)} recipients' user views are not folded yet")
        # The address is sealed with the user's own key (views/personal_data.py); a deleted account has none.
        keys = await asyncio.to_thread(self._keys_of, [u for u, view in users.items() if not view.deleted])
        todo = []
        for n, done in zip(items, sent, strict=True):
            view = users.get(n.user_id)
            address = profile_of(view, keys.get(n.user_id)).email if view is not None else None
            if address and not done:
                todo.append((n, address))
        gate = asyncio.Semaphore(MAIL_CONCURRENCY)
        results = await asyncio.gather(*(self._send(gate, n, address) for n, address in todo))
        return [r for r in results if r is not None]

    def _keys_of(self, user_ids: list[str]) -> dict[str, bytes | None]:
        """Each user's personal-data key (blocking: SQLite)."""
        if self._keys is None:
            self._keys = PersonalKeys.open(self.settings.data_dir)
        return {user_id: self._keys.get(user_id) for user_id in user_ids}

    async def _send(self, gate: asyncio.Semaphore, n: Held, address: str) -> NotificationDelivered | None:
        async with gate:
            for attempt in range(1, self.cfg.smtp_attempts + 1):
                try:
                    await asyncio.to_thread(send_mail, self.cfg, Mail(address, n.title, mail_of(n)))
                except MailError as exc:
                    log.warning("e-mail of notification %s to user %s failed (attempt %d): %s",
                                n.notification_id, n.user_id, attempt, exc)
                    await asyncio.sleep(0.5 * attempt)
                    continue
                await self.index.mark_emailed(n.notification_id)
                return NotificationDelivered(occurred_at=now_ms(), notification_id=n.notification_id,
                                             user_id=n.user_id, delivery="EMAIL", attempts=attempt)
        log.warning("e-mail of notification %s to user %s given up", n.notification_id, n.user_id)
        return None

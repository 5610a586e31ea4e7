"""The pure half of go-live fan-out: who is told, in which tier, when, and whether at all.

A stream start notifies every follower who asked for notifications, once per
broadcast: a reconnect continues the same ``stream_id`` and never notifies again,
and a new broadcast within the cool-down of the last one that notified is silent.
Followers who watched or chatted the channel recently are the first tier and are
due at once; the rest are spread evenly over ``delay_min_ms..delay_max_ms`` in the
order the planner reads them, so 200k followers do not arrive in the same second
and the records go onto the log already in due order: the deliverer reading them
needs to hold only a short stretch of each partition (``pending.py``).

A notification's id and its record's event id come from one digest of
(stream, user), so a fan-out planned again after a crash writes the same ids,
which the in-app feed deduplicates on; only the due time of the later tier may
differ (it follows the read order), which changes when, never whether or how often.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.records.chat import ChatMessageSent
from schemas.records.notification import NotificationQueued
from schemas.records.viewer import Heartbeat

# Keys the digest of notification ids: ids of one (stream, user) are the same on every planner.
NOTIFICATION_ID_KEY = b"glasscast.notification.go-live"


@dataclass(frozen=True)
class FanoutPolicy:
    """How a fan-out is spread; from ``settings.notifications``."""

    delay_min_ms: int
    delay_max_ms: int
    cooldown_ms: int
    max_start_age_ms: int


@dataclass(frozen=True)
class LastNotified:
    """The broadcast of a channel that last notified its followers."""

    stream_id: str
    started_at_ms: int


@dataclass(frozen=True)
class GoLive:
    """What a go-live notification says (from StreamStarted and the channel view)."""

    channel_id: str
    stream_id: str
    channel_name: str
    title: str
    url: str


@dataclass(frozen=True, slots=True)
class Planned:
    """One notification: its recipient, ids and when it is due."""

    user_id: str
    notification_id: str
    event_id: str
    due_ms: int
    first_tier: bool


def should_notify(last: LastNotified | None, stream_id: str, started_at_ms: int, now_ms: int,
                  policy: FanoutPolicy) -> bool:
    """Whether a StreamStarted notifies: not a replay of old history, a repeat, or inside the cool-down."""
    if now_ms - started_at_ms > policy.max_start_age_ms:
        return False
    if last is None:
        return True
    if last.stream_id == stream_id:
        return False
    return started_at_ms - last.started_at_ms >= policy.cooldown_ms


_VARIANT = "89ab89ab89ab89ab"  # a hex digit with its top two bits set to the RFC 9562 variant (10)


def _uuid_text(h: str) -> str:
    """32 hex digits of a digest as a UUID (version 8, RFC 9562's custom layout), in canonical text."""
    return f"{h[:8]}-{h[8:12]}-8{h[13:16]}-{_VARIANT[int(h[16], 16)]}{h[17:20]}-{h[20:32]}"


def ids(stream_id: str, user_id: str) -> tuple[str, str]:
    """The notification id and its NotificationQueued's event id, the same whenever this pair is planned."""
    h = hashlib.blake2b(f"{stream_id}:{user_id}".encode(), digest_size=32, key=NOTIFICATION_ID_KEY).hexdigest()
    return _uuid_text(h[:32]), _uuid_text(h[32:])


def notification_id(stream_id: str, user_id: str) -> str:
    """The notification's id, the same whenever this broadcast is planned for this user."""
    return ids(stream_id, user_id)[0]


def spread_ms(position: int, total: int, policy: FanoutPolicy) -> int:
    """The later tier's delay of the ``position``-th of ``total`` followers: evenly over the policy's range."""
    span = max(0, policy.delay_max_ms - policy.delay_min_ms)
    if total <= 1:
        return policy.delay_min_ms
    return policy.delay_min_ms + span * min(max(position, 0), total - 1) // (total - 1)


def plan_first(stream_id: str, users: Iterable[str], planned_at_ms: int) -> list[Planned]:
    """The first tier: due at once."""
    return [Planned(u, *ids(stream_id, u), planned_at_ms, True) for u in users]


def plan_later(stream_id: str, users: Iterable[str], first_position: int, total: int, planned_at_ms: int,
               policy: FanoutPolicy) -> list[Planned]:
    """A stretch of the later tier, read in order from ``first_position`` of about ``total``: due times ascend."""
    return [Planned(u, *ids(stream_id, u), planned_at_ms + spread_ms(first_position + i, total, policy), False)
            for i, u in enumerate(users)]


NOW_TOPIC = "notifications"  # the first tier (due at once) and every delivery record
LATER_TOPIC = "notifications.later"  # the later tier, each record with its due time


def topic_of(p: Planned) -> str:
    """The topic a planned notification goes to: its tier's."""
    return NOW_TOPIC if p.first_tier else LATER_TOPIC


def queued(p: Planned, live: GoLive, planned_at_ms: int) -> NotificationQueued:
    """The NotificationQueued event of a planned notification."""
    return NotificationQueued(
        event_id=p.event_id, occurred_at=planned_at_ms, notification_id=p.notification_id, user_id=p.user_id,
        kind="GO_LIVE", delivery="IN_APP", channel_id=live.channel_id, stream_id=live.stream_id,
        title=f"{live.channel_name} is live", body=live.title, url=live.url,
        due_at=None if p.first_tier else p.due_ms)


def queued_values(planned: Sequence[Planned], live: GoLive, planned_at_ms: int) -> Iterator[dict[str, Any]]:
    """The Avro values of ``queued`` for a batch: one broadcast's record with each notification's own fields
    (what a fan-out encodes, without building a record object per follower)."""
    if not planned:
        return
    base = queued(planned[0], live, planned_at_ms).to_avro()
    for p in planned:
        yield {**base, "event_id": p.event_id, "notification_id": p.notification_id, "user_id": p.user_id,
               "due_at": None if p.first_tier else p.due_ms}


def engagement(records: Iterable[object]) -> dict[tuple[str, str], int]:
    """(channel, user) -> latest time seen, from signed-in heartbeats and chat messages."""
    seen: dict[tuple[str, str], int] = {}
    for rec in records:
        if isinstance(rec, Heartbeat | ChatMessageSent) and rec.user_id:
            key = (rec.channel_id, rec.user_id)
            seen[key] = max(seen.get(key, 0), rec.occurred_at)
    return seen

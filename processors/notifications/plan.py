"""The pure half of go-live fan-out: who is told, in which tier, when, and whether at all.

A stream start notifies every follower who asked for notifications, once per
broadcast: a reconnect continues the same ``stream_id`` and never notifies again,
and a new broadcast within the cool-down of the last one that notified is silent.
Followers who watched or chatted the channel recently are the first tier and are
due at once; the rest get a delay spread over ``delay_min_ms..delay_max_ms`` by a
hash of (stream, user), so the spread is deterministic (a re-plan after a crash
gives every notification the same id and due time) and flat (200k followers do
not arrive in the same second).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from schemas.records.chat import ChatMessageSent
from schemas.records.notification import NotificationQueued
from schemas.records.viewer import Heartbeat

# uuid5 namespace of notification ids: the same (stream, user) always gets the same id, which the
# in-app feed deduplicates on when a fan-out is planned again after a crash.
NOTIFICATION_NAMESPACE = uuid.UUID("5b0f7a4e-7c1a-4e5c-9f44-1d6a0c2b9e31")


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


@dataclass(frozen=True)
class Planned:
    """One notification: its recipient, id and when it is due."""

    user_id: str
    notification_id: str
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


def notification_id(stream_id: str, user_id: str) -> str:
    """The notification's id, the same whenever this broadcast is planned for this user."""
    return str(uuid.uuid5(NOTIFICATION_NAMESPACE, f"{stream_id}:{user_id}"))


def delay_ms(stream_id: str, user_id: str, policy: FanoutPolicy) -> int:
    """The later tier's delay for this user: a hash spread evenly over the policy's range."""
    span = policy.delay_max_ms - policy.delay_min_ms
    if span <= 0:
        return policy.delay_min_ms
    digest = hashlib.blake2b(f"{stream_id}:{user_id}".encode(), digest_size=8).digest()
    return policy.delay_min_ms + int.from_bytes(digest, "big") % (span + 1)


def plan_batch(stream_id: str, followers: Iterable[str], engaged: set[str], planned_at_ms: int,
               policy: FanoutPolicy) -> list[Planned]:
    """Plan one batch of followers: the first tier first, then the rest by due time."""
    first: list[Planned] = []
    later: list[Planned] = []
    for user_id in followers:
        nid = notification_id(stream_id, user_id)
        if user_id in engaged:
            first.append(Planned(user_id, nid, planned_at_ms, True))
        else:
            later.append(Planned(user_id, nid, planned_at_ms + delay_ms(stream_id, user_id, policy), False))
    later.sort(key=lambda p: p.due_ms)
    return first + later


def queued(p: Planned, live: GoLive, planned_at_ms: int) -> NotificationQueued:
    """The NotificationQueued event of a planned notification."""
    return NotificationQueued(
        occurred_at=planned_at_ms, notification_id=p.notification_id, user_id=p.user_id, kind="GO_LIVE",
        delivery="IN_APP", channel_id=live.channel_id, stream_id=live.stream_id,
        title=f"{live.channel_name} is live", body=live.title, url=live.url)


def engagement(records: Iterable[object]) -> dict[tuple[str, str], int]:
    """(channel, user) -> latest time seen, from signed-in heartbeats and chat messages."""
    seen: dict[tuple[str, str], int] = {}
    for rec in records:
        if isinstance(rec, Heartbeat | ChatMessageSent) and rec.user_id:
            key = (rec.channel_id, rec.user_id)
            seen[key] = max(seen.get(key, 0), rec.occurred_at)
    return seen

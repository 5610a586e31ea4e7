"""EventSub webhook messages as Twitch sends them: bodies, headers and the signature (pure).

dev.twitch.tv/docs/eventsub/handling-webhook-events: every request carries
``Twitch-Eventsub-Message-Id``, ``-Retry``, ``-Type`` (``notification``,
``webhook_callback_verification`` or ``revocation``), ``-Signature``,
``-Timestamp``, ``-Subscription-Type`` and ``-Subscription-Version``; the
signature is ``sha256=`` and the hex HMAC-SHA256, keyed by the subscription's
secret, of the message id, the timestamp and the raw body concatenated.  A
retry sends the same message (same id, timestamp and body) with ``-Retry``
counting up, so a receiver deduplicates on the id.

The source records map to the types (``trigger_of``) and the event objects
follow Twitch's shapes for ``stream.online`` v1, ``stream.offline`` v1,
``channel.update`` v2, ``channel.follow`` v2, ``channel.chat.message`` v1,
``channel.subscribe`` v1 (a ``SubscriptionStarted``: new subs and each gifted
one, never resubs, as Twitch), ``channel.subscription.gift`` v1 (a gift
order's ``PaymentSucceeded``: one notification per gift, with its total) and
``channel.cheer`` v1 (a ``BitsCheered`` on ``billing.ledger``: the bits and the
chat message; cheers here are never anonymous); names come from the user and
channel views (``Names``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from typing import Any

from schemas.record import Record
from schemas.records.billing import BitsCheered, PaymentSucceeded, SubscriptionStarted
from schemas.records.channel import ChannelUpdated
from schemas.records.chat import ChatMessageSent
from schemas.records.social import Followed
from schemas.records.stream import StreamEnded, StreamStarted
from views.eventsub import SubscriptionView, rfc3339, subscription_object
from views.subscriptions import TIER_IDS

NOTIFICATION = "notification"
VERIFICATION = "webhook_callback_verification"
REVOCATION = "revocation"

# Message ids are stable for one source event and subscription, so a redelivered event is the same message.
MESSAGE_ID_NAMESPACE = uuid.UUID("5b0c8f8e-2f7e-4d59-9a43-6c1f0e7d2a11")


@dataclass(frozen=True)
class Trigger:
    """What a source record can notify: its type, the broadcaster (channel) and when it happened."""

    type: str
    broadcaster_user_id: str
    occurred_at_ms: int
    event_id: str


@dataclass(frozen=True)
class Names:
    """Logins and display names for an event object (from the views; ids stand in for unknown ones)."""

    broadcaster_login: str
    broadcaster_name: str
    title: str = ""
    category: str | None = None
    user_login: str | None = None
    user_name: str | None = None


@dataclass(frozen=True)
class Message:
    """One webhook request: sent again as is on every retry."""

    message_id: str
    message_type: str
    timestamp: str
    body: bytes


def trigger_of(record: Record) -> Trigger | None:
    """The subscription type a source record triggers, or None."""
    if isinstance(record, StreamStarted):
        return Trigger("stream.online", record.channel_id, record.occurred_at, record.event_id)
    if isinstance(record, StreamEnded):
        return Trigger("stream.offline", record.channel_id, record.occurred_at, record.event_id)
    if isinstance(record, ChannelUpdated):
        return Trigger("channel.update", record.channel_id, record.occurred_at, record.event_id)
    if isinstance(record, Followed):
        return Trigger("channel.follow", record.channel_id, record.occurred_at, record.event_id)
    if isinstance(record, ChatMessageSent):
        return Trigger("channel.chat.message", record.channel_id, record.occurred_at, record.event_id)
    if isinstance(record, SubscriptionStarted):
        return Trigger("channel.subscribe", record.channel_id, record.occurred_at, record.event_id)
    if isinstance(record, BitsCheered):
        return Trigger("channel.cheer", record.channel_id, record.occurred_at, record.event_id)
    if _gift(record):
        assert isinstance(record, PaymentSucceeded) and record.channel_id is not None
        return Trigger("channel.subscription.gift", record.channel_id, record.occurred_at, record.event_id)
    return None


def _gift(record: Record) -> bool:
    """A paid order of gift subscriptions."""
    return (isinstance(record, PaymentSucceeded) and record.kind == "SUBSCRIPTION" and not record.renewal
            and bool(record.gift_to_user_ids) and record.channel_id is not None)


def acting_user_id(record: Record) -> str | None:
    """The user whose names the event object carries (follower, chatter), if any."""
    if isinstance(record, Followed):
        return record.follower_id
    if isinstance(record, ChatMessageSent | SubscriptionStarted | PaymentSucceeded | BitsCheered):
        return record.user_id
    return None


def event_object(record: Record, names: Names) -> dict[str, Any]:
    """The ``event`` of a notification for ``record``."""
    if not isinstance(record, StreamStarted | StreamEnded | ChannelUpdated | Followed | ChatMessageSent
                      | SubscriptionStarted | PaymentSucceeded | BitsCheered):
        raise TypeError(f"no EventSub event for {record.RECORD}")
    broadcaster = {"broadcaster_user_id": record.channel_id, "broadcaster_user_login": names.broadcaster_login,
                   "broadcaster_user_name": names.broadcaster_name}
    if isinstance(record, BitsCheered):
        login = (names.user_login or record.username).lower()
        return {"is_anonymous": False, "user_id": record.user_id, "user_login": login,
                "user_name": names.user_name or record.username, **broadcaster, "message": record.text,
                "bits": record.bits}
    if isinstance(record, SubscriptionStarted | PaymentSucceeded):
        login = names.user_login or record.user_id
        user = {"user_id": record.user_id, "user_login": login, "user_name": names.user_name or login}
        if isinstance(record, SubscriptionStarted):
            return {**user, **broadcaster, "tier": str(TIER_IDS[record.tier]), "is_gift": record.is_gift}
        # cumulative_total is null when the gifter does not share it (Twitch); it is not kept here.
        return {**user, **broadcaster, "total": len(record.gift_to_user_ids), "tier": str(record.tier),
                "cumulative_total": None, "is_anonymous": False}
    if isinstance(record, StreamStarted):
        return {"id": record.stream_id, **broadcaster, "type": "live", "started_at": rfc3339(record.occurred_at)}
    if isinstance(record, StreamEnded):
        return broadcaster
    if isinstance(record, ChannelUpdated):
        category = record.category if record.category is not None else names.category
        return {**broadcaster, "title": record.title if record.title is not None else names.title,
                "language": "en", "category_id": category or "", "category_name": category or "",
                "content_classification_labels": []}
    if isinstance(record, Followed):
        login = names.user_login or record.follower_id
        return {"user_id": record.follower_id, "user_login": login, "user_name": names.user_name or login,
                **broadcaster, "followed_at": rfc3339(record.occurred_at)}
    return {**broadcaster, "chatter_user_id": record.user_id,
            "chatter_user_login": (names.user_login or record.username).lower(),
            "chatter_user_name": names.user_name or record.username, "message_id": record.message_id,
            "message": {"text": record.text, "fragments": [
                {"type": "text", "text": record.text, "cheermote": None, "emote": None, "mention": None}]},
            "color": "", "badges": [{"set_id": b, "id": "1", "info": ""} for b in record.badges],
            "message_type": "text", "cheer": None, "reply": None, "channel_points_custom_reward_id": None}


def _body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def notification(sub: SubscriptionView, trigger: Trigger, event: dict[str, Any], now_ms: int) -> Message:
    message_id = str(uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{sub.id}:{trigger.event_id}"))
    return Message(message_id, NOTIFICATION, rfc3339(now_ms),
                   _body({"subscription": subscription_object(sub), "event": event}))


def verification(sub: SubscriptionView, challenge: str, now_ms: int) -> Message:
    return Message(str(uuid.uuid4()), VERIFICATION, rfc3339(now_ms),
                   _body({"challenge": challenge, "subscription": subscription_object(sub)}))


def revocation(sub: SubscriptionView, now_ms: int) -> Message:
    return Message(str(uuid.uuid4()), REVOCATION, rfc3339(now_ms), _body({"subscription": subscription_object(sub)}))


def signature(secret: str, message: Message) -> str:
    mac = hmac.new(secret.encode(), message.message_id.encode() + message.timestamp.encode() + message.body,
                   hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def headers(sub: SubscriptionView, secret: str, message: Message, retry: int) -> dict[str, str]:
    """The request headers of one attempt (``retry``: 0 for the first)."""
    return {"Content-Type": "application/json", "User-Agent": "Glasscast-EventSub/1",
            "Twitch-Eventsub-Message-Id": message.message_id, "Twitch-Eventsub-Message-Retry": str(retry),
            "Twitch-Eventsub-Message-Type": message.message_type,
            "Twitch-Eventsub-Message-Signature": signature(secret, message),
            "Twitch-Eventsub-Message-Timestamp": message.timestamp,
            "Twitch-Eventsub-Subscription-Type": sub.type, "Twitch-Eventsub-Subscription-Version": sub.version}

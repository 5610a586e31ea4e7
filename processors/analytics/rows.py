"""Events to analytics rows: which table a record goes to and its row there (pure, no I/O).

One function per record type, dispatched by record class; each returns the
row in its table's column order (``views/analytics/tables.py``) without the
source coordinates, which the sink appends.  Null strings become ``''``, a
null latency ``-1`` and null counts ``0``; times stay epoch milliseconds.
Records no analytics question needs (payments, the ledger, ...) have no
entry and are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas.record import Record
from schemas.records.billing import (
    SubscriptionCancelRequested,
    SubscriptionEnded,
    SubscriptionRenewed,
    SubscriptionStarted,
)
from schemas.records.chat import (
    ChatMessageDeleted,
    ChatMessageSent,
    ChatModeChanged,
    ChatRoleChanged,
    UserBanned,
    UserTimedOut,
    UserUnbanned,
)
from schemas.records.clip import ClipCreated, ClipRendered, ClipViewsCounted
from schemas.records.social import Followed, Unfollowed
from schemas.records.stream import (
    StreamConfigured,
    StreamEnded,
    StreamHealth,
    StreamReconnected,
    StreamStarted,
    StreamUpdated,
)
from schemas.records.viewer import Heartbeat, ViewerCountUpdated

Row = tuple[Any, ...]


def _heartbeat(r: Heartbeat) -> tuple[str, Row]:
    return "heartbeats", (r.occurred_at, r.channel_id, r.stream_id or "", r.session_id, r.user_id or "",
                          r.rendition, r.buffer_health_s, max(0, r.bitrate_kbps),
                          -1 if r.latency_ms is None else r.latency_ms, max(0, r.dropped_frames or 0),
                          r.playback, r.clip_id or "")


def _chat(r: ChatMessageSent) -> tuple[str, Row]:
    return "chat_messages", (r.occurred_at, r.channel_id, r.message_id, r.user_id, r.username, r.text,
                             len(r.emotes), list(r.badges))


def _chat_deleted(r: ChatMessageDeleted) -> tuple[str, Row]:
    return "chat_deletions", (r.occurred_at, r.channel_id, r.message_id, r.user_id or "", r.deleted_by_user_id)


def _timed_out(r: UserTimedOut) -> tuple[str, Row]:
    return "moderation", (r.occurred_at, r.channel_id, "timeout", r.user_id, r.moderator_user_id,
                          max(0, r.duration_s), r.reason or "")


def _banned(r: UserBanned) -> tuple[str, Row]:
    return "moderation", (r.occurred_at, r.channel_id, "ban", r.user_id, r.moderator_user_id, 0, r.reason or "")


def _unbanned(r: UserUnbanned) -> tuple[str, Row]:
    return "moderation", (r.occurred_at, r.channel_id, "unban", r.user_id, r.moderator_user_id, 0, "")


def _mode(r: ChatModeChanged) -> tuple[str, Row]:
    return "moderation", (r.occurred_at, r.channel_id, "mode", "", r.changed_by_user_id, max(0, r.slow_mode_s), "")


def _role(r: ChatRoleChanged) -> tuple[str, Row]:
    action = f"{'grant' if r.granted else 'revoke'}_{r.role.lower()}"
    return "moderation", (r.occurred_at, r.channel_id, action, r.user_id, r.changed_by_user_id, 0, "")


def _stream(event: str, r: Any, user_id: str = "", title: str = "", category: str | None = None,
            started_at: int = 0, duration_ms: int = 0, reason: str = "") -> tuple[str, Row]:
    return "stream_events", (r.occurred_at, r.channel_id, r.stream_id, event, user_id, title, category or "",
                             started_at, duration_ms, reason)


def _configured(r: StreamConfigured) -> tuple[str, Row]:
    return _stream("configured", r, r.configured_by_user_id, r.title, r.category)


def _updated(r: StreamUpdated) -> tuple[str, Row]:
    return _stream("updated", r, r.updated_by_user_id, r.title or "", r.category)


def _started(r: StreamStarted) -> tuple[str, Row]:
    return _stream("started", r, "", r.title, r.category, started_at=r.occurred_at)


def _reconnected(r: StreamReconnected) -> tuple[str, Row]:
    return _stream("reconnected", r, duration_ms=r.gap_ms)


def _ended(r: StreamEnded) -> tuple[str, Row]:
    return _stream("ended", r, r.ended_by_user_id or "", started_at=r.started_at, duration_ms=r.duration_ms,
                   reason=r.reason)


def _health(r: StreamHealth) -> tuple[str, Row]:
    return "stream_health", (r.occurred_at, r.channel_id, r.stream_id, max(0, r.window_ms),
                             max(0, r.ingest_bitrate_kbps), max(0, r.video_bitrate_kbps),
                             max(0, r.audio_bitrate_kbps), r.fps, max(0, r.dropped_frames), max(0, r.late_frames),
                             max(0, r.bytes_received), r.status, r.width or 0, r.height or 0)


def _count(r: ViewerCountUpdated) -> tuple[str, Row]:
    return "viewer_counts", (r.occurred_at, r.channel_id, r.stream_id or "", max(0, r.viewers))


def _followed(r: Followed) -> tuple[str, Row]:
    return "follows", (r.occurred_at, r.channel_id, r.follower_id, 1)


def _unfollowed(r: Unfollowed) -> tuple[str, Row]:
    return "follows", (r.occurred_at, r.channel_id, r.follower_id, -1)


def _sub_started(r: SubscriptionStarted) -> tuple[str, Row]:
    return "subscriptions", (r.occurred_at, r.channel_id, r.user_id, r.subscription_id, "started", r.tier,
                             int(r.is_gift), r.gifted_by_user_id or "", max(0, r.months_total), r.amount_minor,
                             r.currency)


def _sub_renewed(r: SubscriptionRenewed) -> tuple[str, Row]:
    return "subscriptions", (r.occurred_at, r.channel_id, r.user_id, r.subscription_id, "renewed", r.tier,
                             int(r.is_gift), r.gifted_by_user_id or "", max(0, r.months_total), r.amount_minor,
                             r.currency)


def _sub_ended(r: SubscriptionEnded) -> tuple[str, Row]:
    return "subscriptions", (r.occurred_at, r.channel_id, r.user_id, r.subscription_id, "ended", "", 0, "", 0, 0,
                             "")


def _sub_cancel(r: SubscriptionCancelRequested) -> tuple[str, Row]:
    return "subscriptions", (r.occurred_at, r.channel_id, r.user_id, r.subscription_id, "cancel_requested", "",
                             0, "", 0, 0, "")


def _clip_created(r: ClipCreated) -> tuple[str, Row]:
    return "clips", (r.occurred_at, r.channel_id, r.clip_id, "created", r.stream_id, r.created_by_user_id, r.title,
                     max(0, r.duration_ms), 0)


def _clip_rendered(r: ClipRendered) -> tuple[str, Row]:
    return "clips", (r.occurred_at, "", r.clip_id, "rendered", "", "", "", max(0, r.duration_ms), 0)


def _clip_views(r: ClipViewsCounted) -> tuple[str, Row]:
    return "clips", (r.occurred_at, r.channel_id, r.clip_id, "views", "", "", "", 0, max(0, r.views))


ROWS: dict[type[Record], Callable[[Any], tuple[str, Row]]] = {
    Heartbeat: _heartbeat,
    ChatMessageSent: _chat,
    ChatMessageDeleted: _chat_deleted,
    UserTimedOut: _timed_out,
    UserBanned: _banned,
    UserUnbanned: _unbanned,
    ChatModeChanged: _mode,
    ChatRoleChanged: _role,
    StreamConfigured: _configured,
    StreamUpdated: _updated,
    StreamStarted: _started,
    StreamReconnected: _reconnected,
    StreamEnded: _ended,
    StreamHealth: _health,
    ViewerCountUpdated: _count,
    Followed: _followed,
    Unfollowed: _unfollowed,
    SubscriptionStarted: _sub_started,
    SubscriptionRenewed: _sub_renewed,
    SubscriptionEnded: _sub_ended,
    SubscriptionCancelRequested: _sub_cancel,
    ClipCreated: _clip_created,
    ClipRendered: _clip_rendered,
    ClipViewsCounted: _clip_views,
}


def row_for(record: Record) -> tuple[str, Row] | None:
    """The table and row for a record, or None when analytics keeps nothing of it."""
    make = ROWS.get(type(record))
    return None if make is None else make(record)

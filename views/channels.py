"""The channel view: metadata by id, plus the stream-key hash the ingest authenticates against."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

from schemas.record import Record
from schemas.records.channel import ChannelCreated, ChannelUpdated, StreamKeyRotated
from views.fold import Applied, Fold, is_redelivery, metadata_changes


def hash_stream_key(key: str) -> str:
    """The hex SHA-256 of a stream key: what events and the channel view hold."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ChannelView:
    id: str
    name: str
    owner_user_id: str
    title: str
    category: str | None
    tags: tuple[str, ...]
    stream_key_hash: str
    created_at_ms: int
    updated_at_ms: int
    seq: int
    stream_key_nonce: str | None = None  # what the owner's key is derived from (None: not revealable)
    vod_retention_days: int | None = None  # None: the platform's default (settings.vod.retention_days)

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["tags"] = list(self.tags)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChannelView:
        return cls(**{**data, "tags": tuple(data["tags"])})

    def public(self) -> dict[str, Any]:
        """What the API shows about a channel (never the key hash)."""
        return {"id": self.id, "name": self.name, "owner_user_id": self.owner_user_id,
                "title": self.title, "category": self.category, "tags": list(self.tags),
                "created_at_ms": self.created_at_ms, "updated_at_ms": self.updated_at_ms}


def apply_channel_created(event: Applied[ChannelCreated], view: ChannelView | None) -> ChannelView | None:
    if view is not None:
        return view
    v = event.value
    return ChannelView(id=v.channel_id, name=v.name, owner_user_id=v.owner_user_id, title=v.title,
                       category=v.category or None, tags=tuple(v.tags), stream_key_hash=v.stream_key_hash,
                       created_at_ms=v.occurred_at, updated_at_ms=v.occurred_at, seq=event.offset,
                       stream_key_nonce=v.stream_key_nonce)


def apply_channel_updated(event: Applied[ChannelUpdated], view: ChannelView | None) -> ChannelView | None:
    if view is None or is_redelivery(event, view.seq):
        return view
    retention: dict[str, Any] = {}
    if event.value.vod_retention_days is not None:
        retention["vod_retention_days"] = event.value.vod_retention_days or None  # 0: back to the default
    return replace(view, seq=event.offset, updated_at_ms=event.value.occurred_at, **metadata_changes(event.value),
                   **retention)


def apply_stream_key_rotated(event: Applied[StreamKeyRotated], view: ChannelView | None) -> ChannelView | None:
    if view is None or is_redelivery(event, view.seq):
        return view
    v = event.value
    return replace(view, seq=event.offset, stream_key_hash=v.stream_key_hash, stream_key_nonce=v.stream_key_nonce,
                   updated_at_ms=v.occurred_at)


CHANNEL_FOLDS: dict[type[Record], Fold] = {
    ChannelCreated: apply_channel_created,
    ChannelUpdated: apply_channel_updated,
    StreamKeyRotated: apply_stream_key_rotated,
}

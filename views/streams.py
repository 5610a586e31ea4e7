"""The stream view: each broadcast's status and metadata, for the API, playlists, VOD and the directory.

A stream is ``configured`` when its owner set it up ahead of going live
(``POST /v1/streams``), ``live`` from the ingest's StreamStarted, ``ended``
from StreamEnded (whoever sent it first: the ingest, its reaper, or the owner
through ``POST /v1/streams/{id}/end``; later ends change nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from schemas.record import Record
from schemas.records.stream import StreamConfigured, StreamEnded, StreamReconnected, StreamStarted, StreamUpdated
from views.fold import Applied, Fold, is_redelivery, metadata_changes

CONFIGURED, LIVE, ENDED = "configured", "live", "ended"


@dataclass(frozen=True)
class StreamView:
    id: str
    channel_id: str
    seq: int
    status: str = LIVE
    started_at_ms: int | None = None
    title: str = ""
    category: str | None = None
    tags: tuple[str, ...] = ()
    configured_at_ms: int | None = None
    ended_at_ms: int | None = None
    end_reason: str | None = None
    reconnects: int = 0

    @property
    def live(self) -> bool:
        return self.status == LIVE

    @property
    def ended(self) -> bool:
        return self.status == ENDED

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["tags"] = list(self.tags)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StreamView:
        data = dict(data)
        data["tags"] = tuple(data.get("tags") or ())
        if "status" not in data:  # documents written before streams had a status
            data["status"] = ENDED if data.get("ended_at_ms") is not None else LIVE
        return cls(**data)

    def public(self) -> dict[str, Any]:
        """What the API shows about a stream."""
        return {"id": self.id, "channel_id": self.channel_id, "status": self.status, "title": self.title,
                "category": self.category, "tags": list(self.tags), "configured_at_ms": self.configured_at_ms,
                "started_at_ms": self.started_at_ms, "ended_at_ms": self.ended_at_ms,
                "end_reason": self.end_reason, "reconnects": self.reconnects}


def apply_stream_configured(event: Applied[StreamConfigured], view: StreamView | None) -> StreamView | None:
    if view is not None:
        return view
    v = event.value
    return StreamView(id=v.stream_id, channel_id=v.channel_id, seq=event.offset, status=CONFIGURED, title=v.title,
                      category=v.category or None, tags=tuple(v.tags), configured_at_ms=v.occurred_at)


def apply_stream_started(event: Applied[StreamStarted], view: StreamView | None) -> StreamView | None:
    v = event.value
    if view is None:
        return StreamView(id=v.stream_id, channel_id=v.channel_id, seq=event.offset, status=LIVE,
                          started_at_ms=v.occurred_at, title=v.title or "", category=v.category, tags=tuple(v.tags))
    if view.status != CONFIGURED or is_redelivery(event, view.seq):
        return view
    # The ingest adopted a configured stream; its title and category are the configured ones.
    return replace(view, seq=event.offset, status=LIVE, started_at_ms=v.occurred_at)


def apply_stream_updated(event: Applied[StreamUpdated], view: StreamView | None) -> StreamView | None:
    if view is None or view.ended or is_redelivery(event, view.seq):
        return view
    return replace(view, seq=event.offset, **metadata_changes(event.value))


def apply_stream_reconnected(event: Applied[StreamReconnected], view: StreamView | None) -> StreamView | None:
    if view is None or view.ended or is_redelivery(event, view.seq):
        return view
    return replace(view, seq=event.offset, reconnects=event.value.reconnect_count)


def apply_stream_ended(event: Applied[StreamEnded], view: StreamView | None) -> StreamView | None:
    if view is None or view.ended or is_redelivery(event, view.seq):
        return view
    v = event.value
    return replace(view, seq=event.offset, status=ENDED, ended_at_ms=v.occurred_at, end_reason=v.reason)


STREAM_FOLDS: dict[type[Record], Fold] = {
    StreamConfigured: apply_stream_configured,
    StreamUpdated: apply_stream_updated,
    StreamStarted: apply_stream_started,
    StreamReconnected: apply_stream_reconnected,
    StreamEnded: apply_stream_ended,
}

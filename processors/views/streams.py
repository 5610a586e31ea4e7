"""The stream view: each broadcast's status (live, ended), for playlists, VOD and the directory."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from processors.views.fold import Applied, Fold, is_redelivery, to_ms, to_str


@dataclass(frozen=True)
class StreamView:
    id: str
    channel_id: str
    started_at_ms: int
    seq: int
    title: str = ""
    category: str | None = None
    ended_at_ms: int | None = None
    end_reason: str | None = None
    reconnects: int = 0

    @property
    def live(self) -> bool:
        return self.ended_at_ms is None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StreamView:
        return cls(**data)


def apply_stream_started(event: Applied, view: StreamView | None) -> StreamView | None:
    if view is not None:
        return view
    v = event.value
    return StreamView(id=to_str(v["stream_id"]), channel_id=to_str(v["channel_id"]),
                      started_at_ms=to_ms(v["occurred_at"]), seq=event.offset, title=v.get("title") or "",
                      category=v.get("category"))


def apply_stream_reconnected(event: Applied, view: StreamView | None) -> StreamView | None:
    if view is None or is_redelivery(event, view.seq):
        return view
    return replace(view, seq=event.offset, reconnects=int(event.value["reconnect_count"]))


def apply_stream_ended(event: Applied, view: StreamView | None) -> StreamView | None:
    if view is None or is_redelivery(event, view.seq):
        return view
    v = event.value
    return replace(view, seq=event.offset, ended_at_ms=to_ms(v["occurred_at"]), end_reason=str(v["reason"]))


STREAM_FOLDS: dict[str, Fold] = {
    "glasscast.stream.StreamStarted": apply_stream_started,
    "glasscast.stream.StreamReconnected": apply_stream_reconnected,
    "glasscast.stream.StreamEnded": apply_stream_ended,
}

"""What every view fold shares: the applied event, times in milliseconds, the fold table type.

A fold is ``(event, view | None) -> view | None``: pure, no clock (time comes
from the event), no I/O.  Each view keeps ``seq``, the log offset of the last
event it applied; an event at or below it is a redelivery and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

V = TypeVar("V")


@dataclass(frozen=True)
class Applied:
    """The part of a consumed event a fold needs."""

    record: str  # full name
    offset: int
    value: Mapping[str, Any]

    @property
    def type(self) -> str:
        return self.record.rsplit(".", 1)[-1]


Fold = Callable[[Applied, Any], Any]


def to_ms(value: Any) -> int:
    """A timestamp-millis field as int ms, whether fastavro gave a datetime or an int."""
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000)
    return int(value)


def to_str(value: Any) -> str:
    """A uuid logical-type field as its canonical string."""
    return str(value) if isinstance(value, uuid.UUID) else str(value)


def is_redelivery(event: Applied, seq: int | None) -> bool:
    """Whether a view that has applied up to ``seq`` has seen this event."""
    return seq is not None and event.offset <= seq


def metadata_changes(value: Mapping[str, Any]) -> dict[str, Any]:
    """The title, category and tags an update event sets: null leaves a field, "" clears the category."""
    changes: dict[str, Any] = {}
    if value.get("title") is not None:
        changes["title"] = value["title"]
    if value.get("category") is not None:
        changes["category"] = value["category"] or None
    if value.get("tags") is not None:
        changes["tags"] = tuple(value["tags"])
    return changes

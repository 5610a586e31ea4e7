"""What every view fold shares: the applied event, the fold table type, redelivery.

A fold is ``(event, view | None) -> view | None``: pure, no clock (time comes
from the event), no I/O.  Each view keeps ``seq``, the log offset of the last
event it applied; an event at or below it is a redelivery and changes nothing.
Fold tables are keyed by record class, so a fold receives the record type its
key names (docs/ARCHITECTURE.md, "Processors").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from schemas.record import Record
from schemas.records.channel import ChannelUpdated
from schemas.records.stream import StreamUpdated

R = TypeVar("R", bound=Record, covariant=True)


@dataclass(frozen=True)
class Applied(Generic[R]):
    """The part of a consumed event a fold needs: the typed record and its log offset."""

    offset: int
    value: R

    @property
    def record(self) -> str:
        """The record's full name."""
        return self.value.RECORD


#: A fold as its table holds it; the table's key guarantees the record type the fold declares.
Fold = Callable[[Applied[Any], Any], Any]


def is_redelivery(event: Applied[Record], seq: int | None) -> bool:
    """Whether a view that has applied up to ``seq`` has seen this event."""
    return seq is not None and event.offset <= seq


def metadata_changes(update: ChannelUpdated | StreamUpdated) -> dict[str, Any]:
    """The title, category and tags an update event sets: null leaves a field, "" clears the category."""
    changes: dict[str, Any] = {}
    if update.title is not None:
        changes["title"] = update.title
    if update.category is not None:
        changes["category"] = update.category or None
    if update.tags is not None:
        changes["tags"] = tuple(update.tags)
    return changes

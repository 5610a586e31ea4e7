"""The base of every typed event record, and the units its fields carry.

Each Avro record has a generated frozen, slotted dataclass in
``schemas/records/`` (see ``schemas/codegen.py``).  ``topics/`` decodes a
record into its type once, at the wire edge, and encodes it there; everything
past that edge takes and returns these types (docs/ARCHITECTURE.md, "Events").
"""

from __future__ import annotations

import uuid
from fractions import Fraction
from typing import Any, ClassVar, TypeAlias

#: Milliseconds since the Unix epoch, UTC (Avro ``timestamp-millis``).
EpochMs: TypeAlias = int
#: A count of the record's own time base (``time_base_num / time_base_den`` seconds).
Ticks: TypeAlias = int


def new_event_id() -> str:
    """A fresh event id (UUID4, canonical text)."""
    return str(uuid.uuid4())


def ticks_to_ms(ticks: int, num: int, den: int) -> float:
    """``ticks`` of a ``num/den`` s time base, in milliseconds."""
    if num <= 0 or den <= 0:
        raise ValueError(f"time base {num}/{den} is not positive")
    return float(Fraction(ticks * num * 1000, den))


class Record:
    """What every generated record has: its full name, and the Avro value both ways."""

    __slots__ = ()
    RECORD: ClassVar[str]

    def to_avro(self) -> dict[str, Any]:
        """The Avro value (a dict fastavro writes)."""
        raise NotImplementedError  # every generated record overrides it

    @classmethod
    def from_avro(cls, v: dict[str, Any]) -> Any:
        """The record from an Avro value fastavro read (logical types off); nested values are converted in place."""
        raise NotImplementedError  # every generated record overrides it

    @property
    def type(self) -> str:
        """The short record name, e.g. ``StreamStarted``."""
        return type(self).__name__

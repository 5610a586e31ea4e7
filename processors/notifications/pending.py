"""The deliverer's read-ahead: queued notifications held until due, and the offsets safe to commit.

Pure bookkeeping.  Records are read in offset order per partition, but are done
out of order (a later tier is due after an earlier record of another broadcast),
so the committed position of a partition is its lowest record not yet done:
a deliverer killed at any moment re-reads exactly what it had not finished
(at-least-once), never less.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
P = TypeVar("P", bound=Hashable)  # a partition: (topic, number) in the deliverer


@dataclass
class _Open:
    offsets: list[int] = field(default_factory=list)  # heap of offsets not yet done
    done: set[int] = field(default_factory=set)  # done offsets still above the heap's top
    next_read: int = 0  # one past the highest offset read


@dataclass(order=True)
class _Due(Generic[P, T]):
    due_ms: int
    seq: int
    partition: P = field(compare=False)
    offset: int = field(compare=False)
    item: T = field(compare=False)


class PendingWindow(Generic[P, T]):
    """Records read but not yet done, by due time; what each partition may commit."""

    def __init__(self) -> None:
        self._parts: dict[P, _Open] = {}
        self._due: list[_Due[P, T]] = []
        self._seq = 0
        self._committed: dict[P, int] = {}

    def __len__(self) -> int:
        return len(self._due)

    def read(self, partition: P, offset: int) -> None:
        """Note a record read (every record is; ``hold`` or ``done`` it next)."""
        part = self._parts.setdefault(partition, _Open(next_read=offset))
        heapq.heappush(part.offsets, offset)
        part.next_read = max(part.next_read, offset + 1)

    def hold(self, partition: P, offset: int, due_ms: int, item: T) -> None:
        """Keep a read record until it is due."""
        self._seq += 1
        heapq.heappush(self._due, _Due(due_ms, self._seq, partition, offset, item))

    def next_due_ms(self) -> int | None:
        return self._due[0].due_ms if self._due else None

    def take_due(self, now_ms: int, limit: int) -> list[tuple[P, int, T]]:
        """Up to ``limit`` held records due by ``now_ms``, earliest first (mark each ``done`` once delivered)."""
        out: list[tuple[P, int, T]] = []
        while self._due and self._due[0].due_ms <= now_ms and len(out) < limit:
            d = heapq.heappop(self._due)
            out.append((d.partition, d.offset, d.item))
        return out

    def done(self, partition: P, offset: int) -> None:
        """A record is finished (delivered, or needed nothing)."""
        part = self._parts.get(partition)
        if part is not None:
            part.done.add(offset)

    def commits(self) -> dict[P, int]:
        """Per partition whose position moved since the last call: the next offset to read after a restart."""
        moved: dict[P, int] = {}
        for partition, part in self._parts.items():
            while part.offsets and part.offsets[0] in part.done:
                part.done.discard(heapq.heappop(part.offsets))
            position = part.offsets[0] if part.offsets else part.next_read
            if self._committed.get(partition) != position:
                self._committed[partition] = position
                moved[partition] = position
        return moved

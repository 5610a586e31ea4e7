"""Which offsets a worker may commit when GOPs finish out of order.

GOPs are transcoded concurrently, so they finish in any order; a partition's
committed offset may only move past a GOP once it and every GOP before it are
done, or a crash would skip the unfinished ones.
"""

from __future__ import annotations

from collections import OrderedDict


class OffsetTracker:
    """In-flight offsets per partition, in arrival order."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, int], OrderedDict[int, bool]] = {}

    def started(self, partition: tuple[str, int], offset: int) -> None:
        self._pending.setdefault(partition, OrderedDict())[offset] = False

    def finished(self, partition: tuple[str, int], offset: int) -> int | None:
        """Mark a GOP done; the offset to commit (next to read) if the done prefix grew, else None."""
        offsets = self._pending[partition]
        offsets[offset] = True
        last = None
        while offsets:
            first, done = next(iter(offsets.items()))
            if not done:
                break
            last = first
            offsets.popitem(last=False)
        return None if last is None else last + 1

    def in_flight(self) -> int:
        return sum(len(v) for v in self._pending.values())

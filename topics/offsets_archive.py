"""Consumer-group offsets kept beside the topic archive, so a restart resumes every group where it stopped.

The embedded broker (memory storage) forgets committed offsets with
everything else.  The topic archive (``topics/archive.py``) brings the records
back at their original offsets, so the offsets each group committed stay
meaningful across a restart; the keeper snapshots them into ``offsets.json``
next to ``topics.json`` about once a second and once more when it drains, and
puts them back after rehydration, before it reports ready
(``infra/embedded/offsets.py`` does that I/O; this module is the file format
and the rules).

The rules keep one promise: a restore never makes a group skip a record it
has not processed.  A snapshot lags the broker by at most one interval, so a
restore puts a group at most that far back: a few records are processed
again (every consumer is idempotent under redelivery), none is skipped.

- ``merge``: what the broker reports for a group replaces what the snapshot
  held, lower or higher, because only the group itself writes its offsets
  (apart from the restore, which writes what the snapshot holds): a lower
  one is the group's own reset, and keeping the higher one would skip what it
  asked to read again.  A group or partition the broker does not report keeps
  its last offset: the broker's ListGroups can leave out a group whose offsets
  were only restored until one of its members commits (seen with Tansu 0.6).
  So a group deleted on the broker is not forgotten here; remove it from the
  file while the keeper is stopped.
- ``clamp``: an offset past a partition's end after rehydration is set to the
  end.  The archive can lag the broker after a SIGKILL; the records in between
  were lost with the broker, and the next ones produced take their offsets,
  so the group must read from the end.  Left past the end, the offset would be
  out of range and the consumer would reset to the earliest record.  Offsets
  of partitions that no longer exist are dropped.

File (``format`` 1)::

    {"format": 1, "groups": {"<group>": {"<topic>": {"<partition>": <next offset>}}}}

The offset is Kafka's committed offset: the next record the group will read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from topics.errors import ArchiveError

OFFSETS_FILE = "offsets.json"
FORMAT = 1

TP = tuple[str, int]
GroupOffsets = dict[str, dict[TP, int]]
"""Consumer group -> (topic, partition) -> committed offset (the next record to read)."""


def merge(previous: Mapping[str, Mapping[TP, int]], observed: Mapping[str, Mapping[TP, int]]) -> GroupOffsets:
    """The snapshot after observing the broker: reported offsets win, unreported ones are kept.

    A negative offset (librdkafka's "no committed offset") counts as unreported.
    """
    merged: GroupOffsets = {group: dict(offsets) for group, offsets in previous.items()}
    for group, offsets in observed.items():
        reported = {tp: offset for tp, offset in offsets.items() if offset >= 0}
        if reported:
            merged.setdefault(group, {}).update(reported)
    return {group: offsets for group, offsets in merged.items() if offsets}


def clamp(offsets: Mapping[str, Mapping[TP, int]], ends: Mapping[TP, int]) -> GroupOffsets:
    """What to restore on a broker whose partitions end at ``ends``: each offset at most its end.

    Partitions missing from ``ends`` (their topic is gone) and negative offsets are dropped.
    """
    out: GroupOffsets = {}
    for group, by_tp in offsets.items():
        kept = {tp: min(offset, ends[tp]) for tp, offset in by_tp.items() if tp in ends and offset >= 0}
        if kept:
            out[group] = kept
    return out


def encode(offsets: Mapping[str, Mapping[TP, int]]) -> str:
    """The file's text, sorted so that equal snapshots give equal files."""
    groups: dict[str, dict[str, dict[str, int]]] = {}
    for group in sorted(offsets):
        topics: dict[str, dict[str, int]] = {}
        for (topic, partition), offset in sorted(offsets[group].items()):
            topics.setdefault(topic, {})[str(partition)] = offset
        groups[group] = topics
    return json.dumps({"format": FORMAT, "groups": groups}, indent=1)


def decode(text: str) -> GroupOffsets:
    """The offsets in a file's text; ArchiveError when it is not a format-1 offsets file."""
    try:
        doc = json.loads(text)
        if doc.get("format") != FORMAT:
            raise ArchiveError(f"unknown offsets file format {doc.get('format')!r}")
        out: GroupOffsets = {}
        for group, topics in doc["groups"].items():
            by_tp = {(str(topic), int(p)): int(offset)
                     for topic, partitions in topics.items() for p, offset in partitions.items()}
            if by_tp:
                out[str(group)] = by_tp
        return out
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ArchiveError(f"malformed offsets file: {exc}") from exc


class OffsetsFile:
    """``offsets.json`` under the archive root: read it, replace it atomically."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.path = Path(root) / OFFSETS_FILE
        self.fsync = fsync

    def load(self) -> GroupOffsets:
        """The last snapshot written, or nothing when there is none."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        try:
            return decode(text)
        except ArchiveError as exc:
            raise ArchiveError(f"{self.path}: {exc}") from exc

    def save(self, offsets: Mapping[str, Mapping[TP, int]]) -> None:
        """Write a temporary file and rename it over the old one: readers see one or the other, whole."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{OFFSETS_FILE}.tmp")
        with open(tmp, "w") as f:
            f.write(encode(offsets))
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, self.path)
        if self.fsync:
            fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

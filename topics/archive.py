"""Every topic as Avro object container files, so an in-memory broker can be rebuilt.

The embedded broker (Tansu, memory storage) forgets everything when it stops.
The keeper (``infra/embedded/keeper.py``) copies each record the broker holds
into this archive and, at the next start, produces it back
(``infra/embedded/rehydrate.py``).  Records are kept raw and lossless: key,
value and header bytes exactly as the broker returned them (values are
Confluent-framed Avro; the archive does not look inside), with the original
partition, offset and timestamp.

Layout under the root (``<data_dir>/archive``)::

    topics.json                                   partitions and config per topic
    topics/<topic>/<partition>/<first offset:020d>.avro

Each ``.avro`` file is an Avro object container file (Avro 1.11 specification,
"Object Container Files") of ``glasscast.ops.ArchivedRecord``, readable by any
Avro tool.  One block is appended per flush, then fsync'd.  A crash can leave a
torn block (or zeros) after the last complete one: readers stop before it and
the writer truncates it away before appending again.  Files roll after
``SEGMENT_BYTES``.  The container framing lives in ``topics/avro_container.py``;
record bodies use fastavro's schemaless codec.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import fastavro

from topics.avro_container import (
    SYNC_BYTES,
    Block,
    Header,
    Tail,
    encode_block,
    encode_header,
    iter_blocks,
    read_block,
    read_header,
    scan_tail,
)
from topics.errors import ArchiveError

SEGMENT_BYTES = 256 * 1024 * 1024
MAX_OPEN_FILES = 64
TOPICS_FILE = "topics.json"

log = logging.getLogger(__name__)

SCHEMA: dict[str, Any] = {
    "type": "record", "name": "ArchivedRecord", "namespace": "glasscast.ops",
    "doc": "One Kafka record as the broker held it; key, value and header values are raw bytes.",
    "fields": [
        {"name": "topic", "type": "string", "doc": "Topic name."},
        {"name": "partition", "type": "int", "doc": "Partition number."},
        {"name": "offset", "type": "long", "doc": "Offset within the partition."},
        {"name": "timestamp_ms", "type": "long", "doc": "Record timestamp, ms since the epoch."},
        {"name": "timestamp_type", "type": "int",
         "doc": "0 not available, 1 create time, 2 log append time (librdkafka's codes)."},
        {"name": "key", "type": ["null", "bytes"], "doc": "Key bytes; null for no key."},
        {"name": "value", "type": ["null", "bytes"], "doc": "Value bytes; null for a tombstone."},
        {"name": "headers", "doc": "Headers in order, duplicates kept.", "type": {"type": "array", "items": {
            "type": "record", "name": "ArchivedHeader", "doc": "One record header.",
            "fields": [{"name": "key", "type": "string", "doc": "Header name."},
                       {"name": "value", "type": ["null", "bytes"], "doc": "Header value."}]}}},
    ],
}
_SCHEMA_JSON = json.dumps(SCHEMA, separators=(",", ":"))
_PARSED = fastavro.parse_schema(SCHEMA)


class ArchivedRecord(NamedTuple):
    """One record with its coordinates, as consumed from the broker."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


@dataclass(frozen=True)
class TopicInfo:
    """What rehydration needs to re-create a topic."""

    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def _records(f: BinaryIO, header: Header, block: Block) -> Iterator[ArchivedRecord]:
    for d in read_block(f, header, block):
        yield ArchivedRecord(d["topic"], d["partition"], d["offset"], d["timestamp_ms"], d["timestamp_type"],
                             d["key"], d["value"], tuple((h["key"], h["value"]) for h in d["headers"]))


def _last_offset(tail: Tail) -> int | None:
    """The offset of the last complete record in a scanned segment, or None."""
    return None if tail.last_datum is None else int(tail.last_datum["offset"])


class Archive:
    """Read side: the archived topics and their records, in offset order."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, topic: str, partition: int | None = None) -> Path:
        d = self.root / "topics" / topic
        return d if partition is None else d / str(partition)

    def topics(self) -> dict[str, TopicInfo]:
        """Every archived topic: topics.json, widened by partitions found on disk."""
        found = self._load_topics()
        base = self.root / "topics"
        for d in sorted(base.iterdir()) if base.is_dir() else ():
            parts = [int(p.name) for p in d.iterdir() if p.name.isdigit()]
            if parts:
                info = found.get(d.name, TopicInfo(0))
                found[d.name] = TopicInfo(max(info.partitions, max(parts) + 1), info.config)
        return found

    def _load_topics(self) -> dict[str, TopicInfo]:
        path = self.root / TOPICS_FILE
        try:
            doc = json.loads(path.read_text())
            return {n: TopicInfo(int(t["partitions"]), dict(t.get("config", {}))) for n, t in doc["topics"].items()}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ArchiveError(f"{path}: malformed topics file: {exc}") from exc

    def segments(self, topic: str, partition: int) -> list[Path]:
        """The partition's files, oldest first."""
        return sorted(self._dir(topic, partition).glob("*.avro"))

    def iter_partition(self, topic: str, partition: int, start_offset: int = 0) -> Iterator[ArchivedRecord]:
        """Records of one partition from ``start_offset`` on, stopping before a torn tail."""
        segs = self.segments(topic, partition)
        for i, path in enumerate(segs):
            if i + 1 < len(segs) and int(segs[i + 1].stem) <= start_offset:
                continue
            with open(path, "rb") as f:
                header = read_header(f)
                if header is None:
                    continue
                for block in iter_blocks(f, header, os.fstat(f.fileno()).st_size):
                    for rec in _records(f, header, block):
                        if rec.offset >= start_offset:
                            yield rec

    def next_offset(self, topic: str, partition: int) -> int:
        """1 + the last archived offset of the partition, or 0."""
        for path in reversed(self.segments(topic, partition)):
            last = _last_offset(scan_tail(path))
            if last is not None:
                return last + 1
        return 0


@dataclass
class _PartitionLog:
    """Where appends to one partition go, and what waits for the next flush."""

    directory: Path
    next_offset: int
    segment: Path | None  # None: the next flush starts a new file
    size: int = 0
    sync: bytes = b""
    pending: io.BytesIO = field(default_factory=io.BytesIO)
    pending_count: int = 0
    pending_first: int = -1


class ArchiveWriter(Archive):
    """Write side: buffers appended records and writes one block per partition per flush."""

    def __init__(self, root: Path, *, fsync: bool = True, segment_bytes: int = SEGMENT_BYTES,
                 max_open_files: int = MAX_OPEN_FILES) -> None:
        super().__init__(root)
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self.max_open_files = max_open_files
        self._logs: dict[tuple[str, int], _PartitionLog] = {}
        self._files: OrderedDict[tuple[str, int], BinaryIO] = OrderedDict()
        self._unsynced: set[tuple[str, int]] = set()
        self._topics: dict[str, TopicInfo] | None = None

    def set_topics(self, infos: Mapping[str, TopicInfo]) -> bool:
        """Record topics' partitions and config in topics.json; True when it changed."""
        if self._topics is None:
            self._topics = self._load_topics()
        merged = {**self._topics, **infos}
        if merged == self._topics:
            return False
        doc = {"format": 1, "topics": {n: {"partitions": t.partitions, "config": t.config}
                                       for n, t in sorted(merged.items())}}
        path = self.root / TOPICS_FILE
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{TOPICS_FILE}.tmp")
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic: readers see the old or the new file, never half of one
        self._sync_dir(self.root)
        self._topics = merged
        return True

    def _log(self, topic: str, partition: int) -> _PartitionLog:
        key = (topic, partition)
        if key not in self._logs:
            self._logs[key] = self._open_log(topic, partition)
        return self._logs[key]

    def _open_log(self, topic: str, partition: int) -> _PartitionLog:
        directory = self._dir(topic, partition)
        segs = self.segments(topic, partition)
        if not segs:
            return _PartitionLog(directory, 0, None)
        tail = scan_tail(segs[-1])
        if tail.header is None:  # torn while the file was being created: nothing in it counts
            log.warning("archive: removing %s (torn header, %d bytes)", segs[-1], tail.size)
            segs[-1].unlink()
            return _PartitionLog(directory, self.next_offset(topic, partition), None)
        if tail.valid_end < tail.size:
            log.warning("archive: truncating torn tail of %s: %d -> %d bytes", segs[-1], tail.size, tail.valid_end)
            with open(segs[-1], "r+b") as f:
                f.truncate(tail.valid_end)
                os.fsync(f.fileno())
        last = _last_offset(tail)
        nxt = last + 1 if last is not None else self.next_offset(topic, partition)
        full = tail.valid_end >= self.segment_bytes
        return _PartitionLog(directory, nxt, None if full else segs[-1], tail.valid_end, tail.header.sync)

    def next_offset(self, topic: str, partition: int) -> int:
        """1 + the last offset appended (flushed or not), or 0."""
        if (topic, partition) in self._logs:
            return self._logs[(topic, partition)].next_offset
        return super().next_offset(topic, partition)

    @property
    def pending(self) -> int:
        """Records appended but not yet flushed."""
        return sum(lg.pending_count for lg in self._logs.values())

    def append(self, records: Iterable[ArchivedRecord]) -> int:
        """Buffer records; ones at or below an offset already appended are skipped."""
        n = 0
        for r in records:
            lg = self._log(r.topic, r.partition)
            if r.offset < lg.next_offset:
                continue
            if not lg.pending_count:
                lg.pending_first = r.offset
            fastavro.schemaless_writer(lg.pending, _PARSED, {
                "topic": r.topic, "partition": r.partition, "offset": r.offset,
                "timestamp_ms": r.timestamp_ms, "timestamp_type": r.timestamp_type, "key": r.key,
                "value": r.value, "headers": [{"key": k, "value": v} for k, v in r.headers]})
            lg.pending_count += 1
            lg.next_offset = r.offset + 1
            n += 1
        return n

    def flush(self) -> int:
        """Write every partition's pending records as one block each, then fsync; returns records written."""
        written = 0
        for key, lg in self._logs.items():
            if not lg.pending_count:
                continue
            f = self._file(key, lg)
            data = lg.pending.getvalue()
            block = encode_block(lg.pending_count, data, lg.sync)
            f.write(block)
            f.flush()
            lg.size += len(block)
            written += lg.pending_count
            lg.pending, lg.pending_count = io.BytesIO(), 0
            self._unsynced.add(key)
        for key in list(self._unsynced):
            self._sync_file(key)
            lg = self._logs[key]
            if lg.size >= self.segment_bytes:
                self._files.pop(key).close()
                lg.segment = None
        return written

    def _file(self, key: tuple[str, int], lg: _PartitionLog) -> BinaryIO:
        if key in self._files:
            self._files.move_to_end(key)
            return self._files[key]
        if lg.segment is None:
            new_dir = not lg.directory.exists()
            lg.directory.mkdir(parents=True, exist_ok=True)
            if new_dir:
                for d in (lg.directory.parent.parent, lg.directory.parent):
                    self._sync_dir(d)
            lg.segment = lg.directory / f"{lg.pending_first:020d}.avro"
            lg.sync = os.urandom(SYNC_BYTES)
            f: BinaryIO = open(lg.segment, "xb")
            f.write(encode_header(_SCHEMA_JSON, lg.sync))
            lg.size = f.tell()
            self._sync_dir(lg.directory)
        else:
            f = open(lg.segment, "r+b")
            f.seek(lg.size)
        self._files[key] = f
        while len(self._files) > self.max_open_files:
            old = next(iter(self._files))
            self._sync_file(old)
            self._files.pop(old).close()
        return f

    def _sync_file(self, key: tuple[str, int]) -> None:
        if key in self._unsynced and key in self._files and self.fsync:
            os.fdatasync(self._files[key].fileno())
        self._unsynced.discard(key)

    def _sync_dir(self, path: Path) -> None:
        """Make a created or renamed entry durable: fsync its directory."""
        if not self.fsync:
            return
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Flush and close every file."""
        self.flush()
        while self._files:
            self._files.popitem()[1].close()

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

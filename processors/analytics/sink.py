"""The analytics sink: every analytics topic into the ClickHouse tables, in batches, exactly once per offset.

It reads the topics of ``views/analytics/tables.py`` with an ``EventConsumer``
(Avro decoded at the wire edge), turns each record into a row
(``rows.py``) and loads a batch when it holds ``GLASSCAST_ANALYTICS_BATCH_MAX_ROWS``
rows or ``GLASSCAST_ANALYTICS_BATCH_MAX_MS`` have passed since its first record.

Exactly once per offset, without Kafka commits: the tables themselves say
how far the sink got.

* Every row carries its record's ``(src_partition, src_offset)``; each table
  is fed by one topic (``Table.topic``), so these name the record.
* A batch is loaded with ONE insert per table: a single insert block, which
  MergeTree applies whole or not at all.  Tables are loaded one after the
  other, then the watermark: a ``sink_offsets`` row per (topic, partition)
  with the batch's last offset there, which says every table that topic
  feeds holds everything up to it.
* On start the sink reads, per (table, topic, partition), the largest
  ``src_offset`` in the table, and per (topic, partition) the watermark.  It
  seeks every partition to watermark + 1 (the beginning when there is none)
  and drops a row whose offset is not above its table's largest: a batch the
  previous run died in the middle of (some tables loaded, not the others, no
  watermark) is read again, and only the tables it did not reach get its rows.
* Inside a table, rows of a partition arrive in offset order and each batch
  follows the previous one only once that one is loaded, so "offset <= the
  largest in the table" means "already there".  Rows that expired by TTL (or
  arrived already older than the retention) no longer show their offsets, but
  the watermark, which never expires, keeps the sink from reading them again.

The materialised views that feed the per-minute aggregates run inside the
insert into their raw table, and ClickHouse commits the raw table's part
before the views' parts, so a process killed between the two leaves those rows
out of the aggregates.  They are past their partition's watermark, which is
how a restart finds them: ``repair_aggregates`` computes the aggregate rows
they touch again from the raw rows, before the sink reads on.

The bulk records (heartbeats, viewer counts, stream health: ``avro_rows.py``)
written with our own schema are not decoded here: the sink takes the records
undecoded from the consumer and the engine reads their Avro, one container file
per table and batch, still ONE insert.  A table that gets anything else in the
same batch (a record of an older writer schema) has that batch's records
decoded and loaded as rows, and so has a container the engine refuses.

A consumer group is not used for positions (they live in the tables), so the
sink reads every partition by assignment: one sink per store.  Its group id
(``GLASSCAST_ANALYTICS_GROUP_ID``) names its client in the broker's logs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Message, TopicPartition

from infra.settings import Settings
from processors.analytics.avro_rows import LOADS, container
from processors.analytics.rows import Row, row_for
from schemas.record import Record
from topics.admin import admin_client, ensure_topics
from topics.consumer import Event, EventConsumer
from topics.errors import SerializationError
from topics.serde import AvroSerde
from topics.wire import HEADER_SIZE, MAGIC_BYTE
from views.analytics.errors import QueryRefused
from views.analytics.store import AnalyticsStore
from views.analytics.tables import AGGREGATE_TABLES, BY_NAME, TABLES, TOPICS, create_tables

log = logging.getLogger("glasscast.analytics.sink")

SRC_COLUMNS = ("src_partition", "src_offset")
CONSUME_MAX = 5000  # records per consume call
# librdkafka stops fetching a partition whose read-ahead is full and, by default, fetches it again only a
# second later: a sink loading a backlog then stalls for that second again and again.
FETCH_QUEUE_BACKOFF_MS = 20


@dataclass
class Positions:
    """How far the store got: per (topic, partition) the watermark, per (table, topic, partition) the largest offset."""

    watermark: dict[tuple[str, int], int] = field(default_factory=dict)
    table_max: dict[tuple[str, str, int], int] = field(default_factory=dict)
    seen: dict[tuple[str, int], int] = field(default_factory=dict)  # the last offset taken into a batch, this run

    def fresh(self, topic: str, partition: int, offset: int) -> bool:
        """Whether a record comes after every one already taken (a redelivered record does not)."""
        key = (topic, partition)
        if offset <= max(self.seen.get(key, -1), self.watermark.get(key, -1)):
            return False
        self.seen[key] = offset
        return True

    def start(self, topic: str, partition: int) -> int:
        """Where to read a partition from: just past its watermark, or the beginning."""
        at = self.watermark.get((topic, partition))
        return OFFSET_BEGINNING if at is None else at + 1

    def keep(self, table: str, topic: str, partition: int, offset: int) -> bool:
        """Whether a row is not in its table yet."""
        floor = max(self.table_max.get((table, topic, partition), -1), self.watermark.get((topic, partition), -1))
        return offset > floor

    def cut(self, table: str, topic: str) -> list[tuple[int, int]]:
        """(partition, watermark) wherever ``table`` holds rows past the watermark: a batch the sink died in."""
        return sorted((p, self.watermark.get((topic, p), -1)) for (name, t, p), offset in self.table_max.items()
                      if name == table and t == topic and offset > self.watermark.get((topic, p), -1))

    def taken(self, topic: str, partition: int) -> int:
        """The offset up to which a record of the partition is not fresh (``fresh``)."""
        key = (topic, partition)
        return max(self.seen.get(key, -1), self.watermark.get(key, -1))

    def in_some_table(self, topic: str, partition: int) -> int:
        """The largest offset of the partition in any table when the sink started: above it, ``keep`` holds
        for every table once ``fresh`` does (the watermark is below what is fresh)."""
        return max((offset for (_, t, p), offset in self.table_max.items() if t == topic and p == partition),
                   default=-1)


@dataclass
class AvroRecords:
    """A table's records in this batch left in their wire form, all of one writer schema."""

    header: bytes  # their 5-byte wire header: magic byte and writer schema id
    records: list[tuple[bytes, int, int]]  # (framed bytes, partition, offset)


class AvroRouting:
    """Which records the engine reads as Avro (``avro_rows.LOADS``, written with our schema): by wire header."""

    def __init__(self, serde: AvroSerde) -> None:
        self.serde = serde
        self._tables: dict[bytes, str | None] = {}

    def table(self, header: bytes) -> str | None:
        """The table a record with this wire header goes to as Avro, or None (decoded as usual)."""
        if header in self._tables:
            return self._tables[header]
        if len(header) < HEADER_SIZE or header[0] != MAGIC_BYTE:
            return None
        try:
            name, ours = self.serde.written_as(int.from_bytes(header[1:], "big"))
        except SerializationError:
            return None  # decoded as usual, which says what is wrong; asked again next time
        load_as = LOADS.get(name) if ours else None
        table = self._tables[header] = load_as.table if load_as is not None else None
        return table

    def decoded(self, data: bytes, partition: int, offset: int) -> Record | None:
        """A record left undecoded, decoded after all; None (logged) when it cannot be."""
        try:
            return self.serde.decode(data)
        except SerializationError as exc:
            log.warning("analytics: undecodable record at partition %d offset %d skipped: %s", partition, offset,
                        exc)
            return None


@dataclass
class Batch:
    """Rows gathered for one load: per table, and the last offset seen per (topic, partition).

    A table's records are either all rows (``rows``) or all Avro of one writer schema (``avro``).
    """

    routing: AvroRouting | None = None  # given, ``add_messages`` leaves the bulk records undecoded
    rows: dict[str, list[Row]] = field(default_factory=lambda: defaultdict(list))
    avro: dict[str, AvroRecords] = field(default_factory=dict)
    last: dict[tuple[str, int], int] = field(default_factory=dict)
    count: int = 0
    started: float = 0.0

    def add(self, events: Iterable[Event], positions: Positions, now: float) -> None:
        """Take decoded events."""
        for event in events:
            if not positions.fresh(event.topic, event.partition, event.offset):
                continue
            if not self.last:
                self.started = now
            self.last[(event.topic, event.partition)] = event.offset
            self._add_record(event.value, event.topic, event.partition, event.offset, positions)

    def add_messages(self, msgs: Iterable[Message], positions: Positions, now: float,
                     event_of: Callable[[Message], Event | None]) -> None:
        """Take records as the consumer read them: the bulk ones as Avro, the others decoded by ``event_of``."""
        assert self.routing is not None, "a batch that takes messages has the sink's routing"
        table_of = self.routing.table
        # ``positions.fresh`` and ``keep``, with what they read looked up once per run of one partition's
        # records (librdkafka hands them over a partition at a time).
        run: tuple[str, int] | None = None
        taken = in_table = -1
        for msg in msgs:
            topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
            if run != (topic, partition):
                run = (topic, partition)
                taken, in_table = positions.taken(topic, partition), positions.in_some_table(topic, partition)
            if offset <= taken:
                continue
            taken = positions.seen[run] = offset
            if not self.last:
                self.started = now
            self.last[run] = offset
            data = msg.value() or b""
            header = data[:HEADER_SIZE]
            table = table_of(header)
            if table is None:
                event = event_of(msg)
                if event is not None:
                    self._add_record(event.value, topic, partition, offset, positions)
                continue
            if offset <= in_table and not positions.keep(table, topic, partition, offset):
                continue
            pending = self.avro.get(table)
            if pending is not None and pending.header == header:
                pending.records.append((data, partition, offset))
                self.count += 1
            elif pending is None and table not in self.rows:
                self.avro[table] = AvroRecords(header, [(data, partition, offset)])
                self.count += 1
            elif (record := self.routing.decoded(data, partition, offset)) is not None:
                self._add_record(record, topic, partition, offset, positions)  # the table becomes rows

    def _add_record(self, record: Record, topic: str, partition: int, offset: int, positions: Positions) -> None:
        made = row_for(record)
        if made is None:
            return
        table, row = made
        if positions.keep(table, topic, partition, offset):
            if table in self.avro:
                self.as_rows(table)
            self.rows[table].append((*row, partition, offset))
            self.count += 1

    def as_rows(self, table: str) -> None:
        """Decode the table's Avro records into rows (in their order), which it keeps from now on."""
        pending = self.avro.pop(table, None)
        rows = self.rows[table]
        if pending is None:
            return
        assert self.routing is not None
        for data, partition, offset in pending.records:
            record = self.routing.decoded(data, partition, offset)
            made = row_for(record) if record is not None else None
            if made is None:
                self.count -= 1
                continue
            rows.append((*made[1], partition, offset))

    def __bool__(self) -> bool:
        return bool(self.last)


async def read_positions(store: AnalyticsStore) -> Positions:
    """The watermarks and every table's largest offset per partition, from the store."""
    positions = Positions()
    marks = await store.query("SELECT topic, partition, max(offset) FROM sink_offsets GROUP BY topic, partition")
    for topic, partition, offset in marks.rows:
        positions.watermark[(str(topic), int(str(partition)))] = int(str(offset))
    for table in TABLES:
        found = await store.query(
            f"SELECT src_partition, max(src_offset) FROM {table.name} GROUP BY src_partition")
        for partition, offset in found.rows:
            positions.table_max[(table.name, table.topic, int(str(partition)))] = int(str(offset))
    return positions


async def repair_aggregates(store: AnalyticsStore, positions: Positions) -> list[str]:
    """Compute again the aggregate rows a batch cut by a crash may have left short; which aggregates were.

    The materialised views fill an aggregate in the raw table's insert, but after the raw part is committed,
    so a process killed between the two leaves rows out of the aggregates.  Such rows lie past their
    partition's watermark (the batch never got its watermark).  For every aggregate key those rows touch,
    the aggregate rows are deleted and computed again from all the raw rows with that key.  Run before the
    sink reads on; a crash in the middle leaves the same rows past the watermark, so it is simply run again.
    """
    repaired = []
    for agg in AGGREGATE_TABLES:
        cut = positions.cut(agg.source, BY_NAME[agg.source].topic)
        if not cut:
            continue
        past = " OR ".join(f"(src_partition = {int(p)} AND src_offset > {int(w)})" for p, w in cut)
        touched = f"SELECT DISTINCT {agg.raw_keys} FROM {agg.source} WHERE {past}"
        await store.query(f"DELETE FROM {agg.name} WHERE ({agg.keys}) IN ({touched})")
        await store.query(f"INSERT INTO {agg.name} "
                          + agg.select(f"(SELECT * FROM {agg.source} WHERE ({agg.raw_keys}) IN ({touched}))"))
        repaired.append(agg.name)
    if repaired:
        log.warning("analytics: the last batch before the restart was cut short; computed again: %s",
                    ", ".join(repaired))
    return repaired


async def load(store: AnalyticsStore, batch: Batch) -> None:
    """Insert a batch: one block per table, then the watermarks (the order the module docstring relies on)."""
    for name, pending in list(batch.avro.items()):
        assert batch.routing is not None
        serde = batch.routing.serde
        schema_id = int.from_bytes(pending.header[1:], "big")
        load_as = LOADS[serde.written_as(schema_id)[0]]
        data = container(serde.writer_schema(schema_id), pending.records, os.urandom(16))
        try:
            await store.insert_avro(name, BY_NAME[name].columns, load_as.structure, load_as.select, data)
        except QueryRefused as exc:  # nothing of it went in: as rows, one bad record costing only itself
            log.warning("analytics: the store refused a container of %d %s records (%s); loading them as rows",
                        len(pending.records), name, exc)
            batch.as_rows(name)
    for name, rows in batch.rows.items():
        if rows:
            try:
                await store.insert(name, BY_NAME[name].columns, rows)
            except QueryRefused as exc:
                await insert_each(store, name, rows, exc)
    await store.insert("sink_offsets", ("topic", "partition", "offset"),
                       [(topic, partition, offset) for (topic, partition), offset in sorted(batch.last.items())])


async def insert_each(store: AnalyticsStore, table: str, rows: list[Row], refused: QueryRefused) -> None:
    """A block the store refused: its rows one at a time, so a row it cannot take costs that row, not the sink.

    In offset order, as a block would have been, so a restart in the middle keeps "offset <= the largest in
    the table" meaning "already there".  Each refused row is logged with its coordinates.
    """
    log.warning("analytics: the store refused a block of %d %s rows (%s); loading them one by one",
                len(rows), table, refused)
    columns = BY_NAME[table].columns
    for row in rows:
        try:
            await store.insert(table, columns, [row])
        except QueryRefused as exc:
            log.error("analytics: %s row from partition %s offset %s refused, skipped: %s", table, row[-2],
                      row[-1], exc)


class AnalyticsSink:
    """Reads the analytics topics into the store until ``stop`` is set."""

    def __init__(self, settings: Settings, store: AnalyticsStore, serde: AvroSerde,
                 topics: Sequence[str] = TOPICS) -> None:
        self.settings = settings
        self.store = store
        self.serde = serde
        self.topics = tuple(topics)
        self.positions = Positions()
        self.loaded_rows = 0
        self.loaded_batches = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analytics-consumer")
        self._consumer: EventConsumer | None = None
        self.routing = AvroRouting(serde)

    async def start(self) -> None:
        """Create the tables, read the positions and assign every partition at its start offset."""
        await create_tables(self.store, self.settings.analytics.retention_days)
        self.positions = await read_positions(self.store)
        await repair_aggregates(self.store, self.positions)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._assign)

    def _assign(self) -> None:
        ensure_topics(self.settings.kafka)
        # One assignment, at the start offsets: a first one "from the beginning" would have fetched ahead, and
        # what it fetched could still be delivered after the second.
        metadata = admin_client(self.settings.kafka).list_topics(timeout=30)
        parts = [TopicPartition(name, p, self.positions.start(name, p))
                 for name in self.topics for p in sorted(metadata.topics[name].partitions)]
        # No end-of-partition events: with them on, librdkafka read the embedded broker's backlog at a third
        # of the rate (240,000 against 1,100,000 records/s, a bare consumer either way).  The sink never asks
        # whether it is caught up; its idle checks (the doorbell's) last their maximum instead.
        overrides: dict[str, Any] = {"client.id": self.settings.analytics.group_id, "enable.partition.eof": False,
                                     "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS}
        consumer = EventConsumer(self.settings.kafka, self.serde, self.topics, group_id=None, **overrides)
        consumer.assign_partitions(parts)
        self._consumer = consumer
        log.info("analytics sink reading %d partitions of %s", len(parts), ", ".join(self.topics))

    def _consume(self, timeout_s: float) -> list[Message]:
        assert self._consumer is not None
        return self._consumer.consume_messages(CONSUME_MAX, timeout_s)

    def _event_of(self, msg: Message) -> Event | None:
        assert self._consumer is not None
        return self._consumer.event_of(msg)

    async def run(self, stop: asyncio.Event) -> None:
        """Load batches until ``stop`` is set; a batch in hand is loaded before returning."""
        loop = asyncio.get_running_loop()
        analytics = self.settings.analytics
        max_wait_s = analytics.batch_max_ms / 1000
        batch = Batch(self.routing)
        # One load at a time, in order, while the next batch is read and decoded: a load starts only once
        # the previous one is in (the order the exactly-once rests on), but reading does not wait for it.
        loading: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                wait = max_wait_s if not batch else max(0.0, batch.started + max_wait_s - time.monotonic())
                msgs = await loop.run_in_executor(self._pool, self._consume, min(wait, 0.5) or 0.001)
                batch.add_messages(msgs, self.positions, time.monotonic(), self._event_of)
                if batch and (batch.count >= analytics.batch_max_rows
                              or time.monotonic() - batch.started >= max_wait_s):
                    if loading is not None:
                        await loading
                    loading = asyncio.create_task(self._load(batch))
                    batch = Batch(self.routing)
            if loading is not None:
                await loading
                loading = None
            if batch:
                await self._load(batch)
        finally:
            if loading is not None:
                loading.cancel()

    async def _load(self, batch: Batch) -> None:
        await load(self.store, batch)
        self.loaded_rows += batch.count
        self.loaded_batches += 1
        for (topic, partition), offset in batch.last.items():
            self.positions.watermark[(topic, partition)] = offset

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await asyncio.get_running_loop().run_in_executor(self._pool, consumer.close)
        self._pool.shutdown(wait=True)

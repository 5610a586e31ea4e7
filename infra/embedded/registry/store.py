"""The registry's Kafka adapter: a compacted topic is its only storage.

At start-up the topic is created if missing, with one partition (the registry needs
one total order of its records) and ``cleanup.policy=compact`` (it needs only each
key's latest value), then read from the beginning to its end by an assign-based
consumer: no consumer group, so nothing waits for a group to form.

A change is produced by an idempotent producer with ``acks=all``; only once the
broker acks it is the record applied to the state and the request answered, so an
answer never reports what a restart would not find.  One lock serialises the
commands, which is what makes ``max id + 1`` safe: like Confluent in single-node
mode, this assumes it is the topic's only writer.  If a write fails half-way the
store reads the topic again before the next command, so it never plans on a state
the topic does not hold.

Blocking confluent-kafka calls run in a worker thread, off the event loop.
Each acknowledged write rings the topic's doorbell (``topics/doorbell.py``), so the
keeper's archiver, which sleeps while the platform is idle, archives it at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from infra.embedded.registry.errors import StoreError, StoreTimeout
from infra.embedded.registry.state import Record, RegistryState, decode_record
from infra.settings import KafkaSettings, RegistrySettings
from topics import doorbell

log = logging.getLogger("glasscast.registry")

T = TypeVar("T")
Plan = Callable[[RegistryState], tuple[T, list[Record]]]

POLL_S = 0.1


class RegistryStore:
    """The registry state, kept equal to what the ``_schemas`` topic holds."""

    def __init__(self, kafka: KafkaSettings, registry: RegistrySettings, timeout_s: float = 30.0) -> None:
        if not kafka.bootstrap_servers:
            raise StoreError("registry store: GLASSCAST_KAFKA_BOOTSTRAP_SERVERS is empty")
        self.topic = registry.topic
        self.state = RegistryState(default_level=registry.compatibility.upper())
        self.timeout_s = timeout_s
        self._kafka = kafka
        self._partition = TopicPartition(self.topic, 0)
        self._next_offset = 0  # every record below this offset is in the state
        self._stale = False  # a write failed: re-read the topic before trusting the state
        self._lock = asyncio.Lock()
        common: dict[str, str | int | float | bool] = {
            "bootstrap.servers": kafka.bootstrap_servers, "client.id": f"{kafka.client_id}-registry"}
        self._common = common
        self._ringer = doorbell.Ringer(kafka) if doorbell.enabled(kafka) else None
        self._producer = Producer({**common, "acks": "all", "enable.idempotence": True, "linger.ms": 0,
                                   "message.timeout.ms": int(timeout_s * 1000)})
        # group.id is required by the client but unused: the consumer is assigned, never joins.
        self._consumer = Consumer({**common, "group.id": f"{kafka.client_id}-registry-reader",
                                   "enable.auto.commit": False, "enable.partition.eof": True,
                                   "auto.offset.reset": "earliest",
                                   "fetch.wait.max.ms": kafka.fetch_wait_max_ms})

    async def open(self) -> None:
        """Create the topic if needed and read it to its end."""
        await asyncio.to_thread(self._create_topic)
        await self._catch_up()
        log.info("schema registry loaded %s: %d subjects, max id %d",
                 self.topic, len(self.state.subjects(deleted=True)), self.state.max_id)

    async def close(self) -> None:
        """Flush what is in flight and close the Kafka clients."""
        await asyncio.to_thread(self._close_sync)

    async def execute(self, plan: Plan[T]) -> T:
        """Run a command: plan it on the state, write its records, apply them once acked."""
        async with self._lock:
            if self._stale:
                await self._catch_up()
                self._stale = False
            result, records = plan(self.state)
            if records:
                try:
                    last_offset = await asyncio.to_thread(self._produce, records)
                except BaseException:
                    self._stale = True
                    raise
                for record in records:
                    self.state.apply(record)
                self._next_offset = max(self._next_offset, last_offset + 1)
            return result

    async def _catch_up(self) -> None:
        # Records are fetched in a worker thread but applied here, on the event loop,
        # so a request reading the state never sees it change under it.
        fetched, end = await asyncio.to_thread(self._fetch_to_end)
        for offset, key, value in fetched:
            try:
                self.state.apply(decode_record(key, value))
            except ValueError as exc:
                log.warning("skipping malformed record at %s[0]@%d: %s", self.topic, offset, exc)
        self._next_offset = end

    # -- worker-thread side --------------------------------------------------------

    def _close_sync(self) -> None:
        self._producer.flush(self.timeout_s)
        self._producer.close()
        self._consumer.close()
        if self._ringer is not None:
            self._ringer.close()

    def _create_topic(self) -> None:
        admin = AdminClient(self._common)
        spec = NewTopic(self.topic, num_partitions=1, replication_factor=self._kafka.replication_factor,
                        config={"cleanup.policy": "compact"})
        try:
            admin.create_topics([spec], request_timeout=self.timeout_s)[self.topic].result(self.timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise StoreError(f"cannot create registry topic {self.topic}: {exc}") from exc
        deadline = time.monotonic() + self.timeout_s
        while True:
            topic = admin.list_topics(self.topic, timeout=self.timeout_s).topics.get(self.topic)
            if topic is not None and topic.error is None and topic.partitions:
                break
            if time.monotonic() > deadline:
                raise StoreTimeout(f"registry topic {self.topic} did not appear in the metadata")
            time.sleep(POLL_S)
        if len(topic.partitions) != 1:
            # Confluent refuses this too: versions and ids need one total order.
            raise StoreError(f"registry topic {self.topic} has {len(topic.partitions)} partitions; it needs 1")

    def _fetch_to_end(self) -> tuple[list[tuple[int, bytes, bytes | None]], int]:
        """Every keyed record from ``_next_offset`` to the end of the partition, and that end.

        The end is the first end-of-partition event at or past the listed high watermark.
        The listed watermark alone is not enough: the embedded broker (Tansu 0.6) lists
        the last batch's base offset + 1, short of the end when that batch held several
        records, while its fetch answers carry the true end.
        """
        deadline = time.monotonic() + self.timeout_s
        fetched: list[tuple[int, bytes, bytes | None]] = []
        try:
            _, high = self._consumer.get_watermark_offsets(self._partition, self.timeout_s, cached=False)
        except KafkaException as exc:
            raise StoreError(f"cannot read the end of {self.topic}: {exc}") from exc
        position, at_end = self._next_offset, False
        # Assigned only while reading, from where the state ends: an idle registry does
        # not fetch, and a read that fails leaves nothing half-consumed.
        self._consumer.assign([TopicPartition(self.topic, 0, position)])
        try:
            while not (at_end and position >= high):
                if time.monotonic() > deadline:
                    raise StoreTimeout(f"reading {self.topic}: at offset {position}, end not reached")
                message = self._consumer.poll(POLL_S)
                if message is None:
                    continue
                offset, error = message.offset() or 0, message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise StoreError(f"reading {self.topic}: {error}")
                    # Compaction leaves gaps in offsets: the end is where the broker says.
                    position, at_end = max(position, offset), True
                elif offset >= position:
                    position, at_end = offset + 1, False
                    key = message.key()
                    if key is not None:
                        fetched.append((offset, key, message.value()))
        finally:
            self._consumer.unassign()
        return fetched, position

    def _produce(self, records: list[Record]) -> int:
        """Produce in order and wait for every ack; the offset of the last one."""
        results: list[tuple[KafkaError | None, Message]] = []

        def delivered(error: KafkaError | None, message: Message) -> None:
            results.append((error, message))

        try:
            for record in records:
                key, value = record.encode()
                self._producer.produce(self.topic, value=value, key=key, partition=0, on_delivery=delivered)
        except (KafkaException, BufferError) as exc:
            raise StoreError(f"cannot write to {self.topic}: {exc}") from exc
        if self._producer.flush(self.timeout_s) or len(results) < len(records):
            raise StoreTimeout(f"writing {self.topic}: no ack within {self.timeout_s} s")
        for error, _ in results:
            if error is not None:
                raise StoreError(f"writing {self.topic}: {error}")
        if self._ringer is not None:
            self._ringer.ring(self.topic)
        return max(m.offset() or 0 for _, m in results)

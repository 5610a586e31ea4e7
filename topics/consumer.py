"""Typed event consumer: decoded records with their coordinates, and a dead-letter policy.

Two modes: a consumer group (``group_id``; offsets committed, partitions
balanced) or explicit assignment (no group: served at once, used by tools and
replays).  A record that cannot be decoded is not dropped: it goes to the
``deadletter`` topic with its topic/partition/offset and the consumer moves on
(docs/ARCHITECTURE.md, "Events").

``consume_messages`` gives the records undecoded, as librdkafka hands them
over, for a loader that passes most of them on as Avro to an engine that
reads it itself (processors/analytics/sink.py); ``event_of`` decodes one.

With the doorbell on (``topics/doorbell.py``), a consumer pauses its
partitions after ``doorbell.LINGER_S`` without records and waits in ``poll``
on its doorbell instead of on the broker: an idle consumer sends no fetch at
all.  A ring resumes the partitions; librdkafka applies a resume only at its
broker thread's next wake-up (up to a second later, measured), so the resume
is followed by a metadata request for one topic, which wakes that thread now.
This confluent-kafka serialises every call on a consumer with ``poll`` (a
call from another thread waits until the poll returns), so ``commit_offset``
called while another thread is inside ``poll`` or ``consume`` does not wait:
the commit is sent, in order, as that call returns.  Everything else is for
one thread at a time.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from infra.settings import KafkaSettings
from schemas.record import Record
from schemas.records.ops import DeadLetter
from topics import doorbell
from topics.errors import SerializationError, TopicsError
from topics.producer import EventProducer
from topics.serde import AvroSerde

log = logging.getLogger("glasscast.topics.consumer")
T = TypeVar("T")


class Event(NamedTuple):
    """One decoded record and where it came from (a tuple: cheap to build per record)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    value: Record  # the typed record, e.g. a ChannelCreated

    @property
    def record(self) -> str:
        """The record's full name, e.g. glasscast.channel.ChannelCreated."""
        return self.value.RECORD

    @property
    def type(self) -> str:
        """The short record name (ChannelCreated)."""
        return type(self.value).__name__


def consumer_config(kafka: KafkaSettings, group_id: str | None, **overrides: Any) -> dict[str, Any]:
    """librdkafka settings for a latency-critical consumer."""
    conf: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "client.id": kafka.client_id,
        # A group id is required even for assign(); a unique one commits nothing shared.
        "group.id": group_id or f"glasscast-assign-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": group_id is not None,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": kafka.session_timeout_ms,
        "heartbeat.interval.ms": max(500, kafka.session_timeout_ms // 3),
        # librdkafka's default 500 ms fetch wait would dominate latency.
        "fetch.wait.max.ms": kafka.fetch_wait_max_ms,
        "enable.partition.eof": True,
    }
    conf.update(overrides)
    return conf


def background_fetch(kafka: KafkaSettings) -> dict[str, Any]:
    """Overrides for a consumer whose work nobody waits for within a request: the longer fetch wait
    (``KafkaSettings.background_fetch_wait_max_ms``)."""
    return {"fetch.wait.max.ms": kafka.background_fetch_wait_max_ms}


class EventConsumer:
    """Poll decoded events from one or more topics.

    ``wake_on_doorbell`` (default: whenever the settings have a doorbell)
    makes it pause while idle and wake at a ring (module docstring).
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        serde: AvroSerde,
        topics: Sequence[str],
        group_id: str | None = None,
        dead_letter: EventProducer | None = None,
        wake_on_doorbell: bool = True,
        **overrides: Any,
    ) -> None:
        self.serde = serde
        self.topics = list(topics)
        self.group_id = group_id
        self.dead_letter = dead_letter
        self._bell = doorbell.Doorbell(kafka, self.topics) if wake_on_doorbell and doorbell.enabled(kafka) else None
        if self._bell is not None:
            # An idle check ends at the end of every partition; a consumer that turns the ends off (they cost
            # the embedded broker's fetch rate a factor of three, see processors/analytics/sink.py) has its
            # idle checks last doorbell.PROBE_MAX_S instead.
            overrides.setdefault("enable.partition.eof", True)
        self._consumer = Consumer(consumer_config(kafka, group_id, **overrides))
        self._eof: set[tuple[str, int]] = set()
        self._probe_eof: set[tuple[str, int]] = set()
        self._reassigned = False
        self._assigned: list[TopicPartition] = []
        self._commit_lock = threading.Lock()
        self._polling = False  # a thread is inside poll() or consume(): commits wait for it to return
        self._deferred: dict[tuple[str, int], int] = {}
        self._held: dict[tuple[str, int], int] = {}  # held by the caller -> where to read again; the doorbell's
        # wake leaves them paused
        if group_id is not None:
            self._consumer.subscribe(self.topics, on_assign=self._on_assign)

    def _on_assign(self, _consumer: Consumer, _parts: list[TopicPartition]) -> None:
        # Inside poll: only note it (calls on the consumer wait for poll); the gate resumes after it.
        self._reassigned = True

    def assign(self, start: str | int = "beginning") -> list[TopicPartition]:
        """Read every partition of the topics without a group, from 'beginning', 'end' or an offset."""
        metadata = self._consumer.list_topics(timeout=10)
        offset = {"beginning": OFFSET_BEGINNING, "end": OFFSET_END}.get(str(start), start)
        parts: list[TopicPartition] = []
        for name in self.topics:
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None:
                raise TopicsError(f"topic {name!r} does not exist")
            parts += [TopicPartition(name, p, int(offset)) for p in sorted(topic.partitions)]
        self._consumer.assign(parts)
        self._assigned = parts
        self._reassigned = True
        return parts

    def assign_partitions(self, parts: list[TopicPartition]) -> None:
        """Read exactly ``parts`` (at their offsets, or logical ones such as OFFSET_BEGINNING)."""
        if not self._assigned:
            # A consumer that has not spoken to the broker yet took about half a second to fetch anything
            # after its first assignment (measured on the embedded broker); asking for metadata first takes
            # a round trip.
            self._consumer.list_topics(self.topics[0], timeout=10)
        self._consumer.assign(parts)
        self._assigned = parts
        self._reassigned = True

    def seek_to_time(self, since_ms: int) -> None:
        """Start every assigned partition at the broker's first offset at or after ``since_ms``."""
        wanted = [TopicPartition(tp.topic, tp.partition, since_ms) for tp in self._assigned]
        found = self._consumer.offsets_for_times(wanted, timeout=10)
        # -1: no record that late; start at the end.
        self.assign_partitions([TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
                                for tp in found])

    def hold_partition(self, topic: str, partition: int, offset: int) -> None:
        """Stop fetching a partition; once released it is read again from ``offset`` (a bounded read-ahead).

        The doorbell's wake leaves a held partition paused; whatever else arrives from it meanwhile is to be
        ignored by the caller, as the release seeks back to ``offset`` in any case.
        """
        self._held[(topic, partition)] = offset
        tp = TopicPartition(topic, partition, offset)
        self._consumer.pause([tp])
        try:
            self._consumer.seek(tp)
        except KafkaException as exc:  # not assigned any longer (a rebalance): its new owner reads it
            log.info("hold of %s[%d] at %d: %s", topic, partition, offset, exc)

    def release_partition(self, topic: str, partition: int) -> None:
        """Fetch a held partition again, from where it was held."""
        offset = self._held.pop((topic, partition), None)
        if offset is None:
            return
        tp = TopicPartition(topic, partition, offset)
        try:
            self._consumer.seek(tp)
        except KafkaException as exc:  # not assigned any longer, or not fetching yet: the resume still stands
            log.info("release of %s[%d] at %d: %s", topic, partition, offset, exc)
        try:
            self._consumer.resume([tp])
            # librdkafka applies a resume at its next wake-up; a request on the connection is one now.
            self._consumer.list_topics(topic, timeout=doorbell.SOCKET_TIMEOUT_S)
        except KafkaException as exc:  # not assigned any longer: nothing to fetch here
            log.info("release of %s[%d] at %d: %s", topic, partition, offset, exc)

    @property
    def paused(self) -> bool:
        """Whether the doorbell has paused the partitions (the consumer is idle and fetches nothing)."""
        return self._bell is not None and self._bell.gate.paused

    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer owns now (a group member has none until it joins)."""
        return list(self._consumer.assignment())

    def caught_up(self) -> bool:
        """Whether every assigned partition has reached its end since its last record.

        Based on librdkafka's partition-EOF events, which follow the high
        watermark in fetch responses: the embedded broker's ListOffsets answer
        for "latest" can lag the real end, so watermark queries are not used.
        """
        return bool(self._assigned) and all((tp.topic, tp.partition) in self._eof for tp in self._assigned)

    def poll(self, timeout_s: float = 0.1) -> Event | None:
        """The next decoded event, or None; undecodable records are dead-lettered."""
        self._enter()
        try:
            return self._poll(timeout_s)
        finally:
            self._leave()

    def consume(self, max_records: int = 1000, timeout_s: float = 0.05) -> list[Event]:
        """Up to ``max_records`` decoded events in one call (throughput paths).

        librdkafka returns as soon as ``max_records`` are there or ``timeout_s``
        has passed, so keep the timeout short where latency matters.
        """
        self._enter()
        try:
            return self._consume(self._handle, max_records, timeout_s)
        finally:
            self._leave()

    def consume_messages(self, max_records: int = 1000, timeout_s: float = 0.05) -> list[Message]:
        """``consume`` without decoding: the records as librdkafka gives them (``event_of`` decodes one)."""
        self._enter()
        try:
            return self._consume(self._checked, max_records, timeout_s)
        finally:
            self._leave()

    def _enter(self) -> None:
        with self._commit_lock:
            self._polling = True

    def _leave(self) -> None:
        with self._commit_lock:
            self._polling = False
            deferred, self._deferred = self._deferred, {}
            if deferred:
                try:
                    self._consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in deferred.items()],
                                          asynchronous=True)
                except KafkaException as exc:  # a later commit covers these; a restart redoes a few records
                    log.warning("deferred commit of %s failed: %s", sorted(deferred), exc)

    def _poll(self, timeout_s: float) -> Event | None:
        if self._bell is None:
            msg = self._consumer.poll(timeout_s)
            return None if msg is None else self._handle(msg)
        deadline = time.monotonic() + timeout_s
        while True:
            msg = self._consumer.poll(self._gate_wait(deadline))
            for event in self._gated([] if msg is None else [msg], self._handle):
                return event
            if time.monotonic() >= deadline:
                return None

    def _consume(self, handle: Callable[[Message], T | None], max_records: int, timeout_s: float) -> list[T]:
        if self._bell is None:
            return [e for e in map(handle, self._consumer.consume(max_records, timeout_s)) if e is not None]
        deadline = time.monotonic() + timeout_s
        while True:
            events = list(self._gated(self._consumer.consume(max_records, self._gate_wait(deadline)), handle))
            if events or time.monotonic() >= deadline:
                return events

    # -- the doorbell gate (topics/doorbell.py); every call below runs on the polling thread --------

    def _gate_wait(self, deadline: float) -> float:
        """While paused, wait on the doorbell; the time the consumer may then block in librdkafka.

        Still paused (no ring, no idle check due): 0, so that librdkafka only serves what is there
        (a rebalance, an error), which ``_gated`` then handles.
        """
        bell = self._bell
        assert bell is not None
        gate = bell.gate
        now = time.monotonic()
        if gate.paused:
            rung = bell.wait(min(deadline, gate.next_check) - now)
            now = time.monotonic()
            if rung is not False or gate.check_due(now):
                self._resume(now, probe=rung is False)
            else:
                return 0.0
        return max(0.0, min(deadline, max(gate.awake_until, now + 0.001)) - now)

    def _gated(self, msgs: list[Message], handle: Callable[[Message], T | None]) -> Iterator[T]:
        """``handle`` each of ``msgs``, keeping the gate up to date; then pause if the consumer has been idle."""
        bell = self._bell
        assert bell is not None
        gate = bell.gate
        now = time.monotonic()
        for msg in msgs:
            err = msg.error()
            if err is None:
                if gate.paused:  # from a partition assigned meanwhile: resume everything, fetch on
                    self._resume(now, probe=False)
                gate.wake(now)
            elif err.code() == KafkaError._PARTITION_EOF and gate.probing:
                self._probe_eof.add((msg.topic() or "", msg.partition() or 0))
                if {(tp.topic, tp.partition) for tp in self._consumer.assignment()} <= self._probe_eof:
                    gate.probe_done(now)
            event = handle(msg)
            if event is not None:
                yield event
        if self._reassigned:
            self._reassigned = False
            self._resume(now, probe=False)
        if gate.should_pause(now):
            # Not while a ring waits or the doorbell is down, nor for a group member that has nothing
            # assigned yet: then look again after a linger.
            parts = self._consumer.assignment() if bell.quiet(now) else []
            if parts:
                self._consumer.pause(parts)
                gate.paused_at(now)
            else:
                gate.wake(now)

    def _resume(self, now: float, probe: bool) -> None:
        bell = self._bell
        assert bell is not None
        parts = [tp for tp in self._consumer.assignment() if (tp.topic, tp.partition) not in self._held]
        if bell.gate.paused and parts:
            self._consumer.resume(parts)
            try:  # a request on the broker connection makes librdkafka apply the resume now
                self._consumer.list_topics(self.topics[0], timeout=doorbell.SOCKET_TIMEOUT_S)
            except KafkaException:
                pass  # the broker is away: the resume applies at librdkafka's next wake-up
        self._probe_eof.clear()
        bell.gate.resumed(now, probe)

    def _checked(self, msg: Message) -> Message | None:
        """A record message as is; None for a partition's end (noted); a consumer error raises."""
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                self._eof.add((msg.topic() or "", msg.partition() or 0))
                return None
            raise TopicsError(f"consumer error: {err.str()}")
        if self._eof:
            self._eof.discard((msg.topic() or "", msg.partition() or 0))
        return msg

    def _handle(self, msg: Message) -> Event | None:
        return None if self._checked(msg) is None else self.event_of(msg)

    def event_of(self, msg: Message) -> Event | None:
        """A record message decoded; None when it cannot be (dead-lettered, as the module docstring says)."""
        try:
            value = self.serde.decode(msg.value() or b"")
        except SerializationError as exc:
            self._dead_letter(msg, exc)
            return None
        raw_key = msg.key()
        return Event(msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1],  # type: ignore[arg-type]
                     raw_key.decode("utf-8", "replace") if raw_key is not None else None, value)

    def _dead_letter(self, msg: Message, exc: Exception) -> None:
        coords = f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"
        log.warning("undecodable record %s: %s", coords, exc)
        if self.dead_letter is None:
            return
        self.dead_letter.produce(
            dead_letter_record(msg.topic() or "", msg.partition() or 0, msg.offset() or 0,
                              msg.timestamp()[1], msg.key(), msg.value(), str(exc), self.group_id or "",
                              type(exc).__name__),
            msg.topic() or "",
        )

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self.poll(0.5)
            if event is not None:
                yield event

    def commit(self) -> None:
        self._consumer.commit(asynchronous=False)

    def commit_offset(self, topic: str, partition: int, next_offset: int) -> None:
        """Commit one partition's position (the next offset to read) without waiting.

        From any thread: while another thread polls, the commit is sent when its poll returns.
        """
        with self._commit_lock:
            if self._polling:
                self._deferred[(topic, partition)] = next_offset
                return
            self._consumer.commit(offsets=[TopicPartition(topic, partition, next_offset)], asynchronous=True)

    def close(self) -> None:
        self._consumer.close()
        if self._bell is not None:
            self._bell.close()


def dead_letter_record(topic: str, partition: int, offset: int, timestamp_ms: int,
                       key: bytes | None, value: bytes | None, error: str, group: str,
                       error_type: str | None = None) -> DeadLetter:
    """The DeadLetter record for a record that could not be decoded."""
    schema_id = int.from_bytes(value[1:5], "big") if value and len(value) >= 5 and value[0] == 0 else None
    return DeadLetter(
        occurred_at=int(time.time() * 1000), source_topic=topic, partition=partition, offset=offset,
        timestamp=timestamp_ms if timestamp_ms >= 0 else None, key=key, value=value, error=error,
        error_type=error_type, consumer_group=group, schema_id=schema_id)

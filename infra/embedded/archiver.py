"""The archive loop: copy every topic on the embedded broker into the archive.

The embedded broker keeps records in memory only, so the keeper runs this loop
beside it and appends each record to ``topics/archive.py``; rehydration at the
next start produces them back.  The consumer is assign-based, not a group
member: this broker serves a new group only after half the session timeout,
while an assignment is fetched at once.  Each partition starts at the
archive's ``next_offset``, so a restart neither repeats nor skips records.

``drain`` is what makes a stop lose nothing that was acknowledged: it reads
until every partition reaches the end the broker reported when the drain
began, then flushes and fsyncs.  Tansu answers ListOffsets(latest) with the
base offset of the partition's last batch + 1 rather than the high watermark
(measured, Tansu 0.6.0); fetch responses carry the true high watermark, so the
drain first reads past that base offset and then up to the high watermark of
the fetch that delivered it.

Idle cost.  The archiver reads every partition of every topic, and the
embedded broker spends CPU on each re-check of a waiting fetch, more with more
partitions.  So once the supervisor's run state names the platform's Valkey,
it listens to every topic's doorbell (``topics/doorbell.py``, one pattern
subscription) and pauses its partitions while nothing happens: a ring resumes
them at once, a ring of a topic it does not know yet makes it look for new
topics at once, and every ``GLASSCAST_KAFKA_IDLE_CHECK_MS`` it fetches once
anyway.  While records flow it fetches with the short wait of the
latency-critical consumers (``GLASSCAST_KAFKA_FETCH_WAIT_MAX_MS``), as before.
Its lag behind the broker -- what a crash of the broker itself (not of the
keeper, which drains) can lose -- is therefore a few milliseconds (about half
that wait, plus the flush interval) while it is awake and after a rung
delivery, and at most the idle check for a record whose producer could not
ring while it slept (the registry's ``_schemas`` writes ring too).  With the
doorbell switched off it cannot sleep, and fetches with the long wait of a
background reader instead (``GLASSCAST_ARCHIVE_FETCH_WAIT_MAX_MS``, 400 ms: a lag
of about 200 ms).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, OffsetSpec, ResourceType  # type: ignore[attr-defined]

from infra.embedded.credentials import without_password
from infra.runstate import read_state
from infra.settings import ArchiveSettings, KafkaSettings
from topics.archive import ArchivedRecord, ArchiveWriter, TopicInfo
from topics.doorbell import Doorbell

CONSUME_BATCH = 10_000
REFRESH_INTERVAL_S = 0.5
REFRESH_IDLE_S = 5.0  # while the doorbell works: a ring of a new topic makes it look at once
BELL_LOOK_S = 2.0  # how often it looks for the platform's doorbell (the supervisor's run state) until found
# While paused, one poll waits this long on the doorbell even when asked for less: the keeper's loop then turns
# four times a second rather than twenty, and notices a stop that much later at most.
PAUSED_WAIT_S = 0.25
REQUEST_TIMEOUT_S = 5.0

TP = tuple[str, int]


def consumer_config(bootstrap_servers: str, kafka: KafkaSettings, **extra: Any) -> dict[str, Any]:
    """An assign-only consumer: group.id is required by the client but no group is ever joined."""
    return {
        "bootstrap.servers": bootstrap_servers,
        "client.id": f"{kafka.client_id}-archiver",
        "group.id": f"{kafka.client_id}-archiver",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        # An offset the broker does not have means archive and broker disagree: report, never skip.
        "auto.offset.reset": "error",
        "fetch.wait.max.ms": kafka.fetch_wait_max_ms,
        "socket.timeout.ms": kafka.request_timeout_ms,
        **extra,
    }


class Archiver:
    """Tails every topic (names starting with ``__`` excepted) into an ArchiveWriter."""

    def __init__(self, bootstrap_servers: str, archive: ArchiveWriter, kafka: KafkaSettings,
                 settings: ArchiveSettings, logger: logging.Logger | None = None) -> None:
        self.archive = archive
        self.settings = settings
        self.kafka = kafka
        self.log = logger or logging.getLogger(__name__)
        self._bell: Doorbell | None = None
        self._bell_look_at = 0.0
        self._probe_eof: set[TP] = set()
        self._draining = False
        # With a doorbell it pauses while idle, so it can fetch with the short wait of the latency-critical
        # consumers while records flow (its lag is what a broker crash loses); without, a long one.
        wait_ms = kafka.fetch_wait_max_ms if kafka.doorbell else settings.fetch_wait_max_ms
        self.consumer = Consumer(consumer_config(bootstrap_servers, kafka, logger=self.log,
                                                 **{"fetch.wait.max.ms": wait_ms}))
        admin_config: dict[str, Any] = {"bootstrap.servers": bootstrap_servers, "logger": self.log}
        self.admin = AdminClient(admin_config)
        self.partitions: dict[str, int] = {}
        self.archived = 0
        self._eof: set[TP] = set()
        self._needs_config: set[str] = set()
        self._next_refresh = 0.0
        self._last_flush = time.monotonic()

    def refresh(self, configs: bool = False) -> None:
        """Assign partitions of new topics and record them; ``configs`` re-reads every topic's config."""
        meta = self.consumer.list_topics(timeout=REQUEST_TIMEOUT_S)
        grown: dict[str, int] = {}
        for name, topic in meta.topics.items():
            if name.startswith("__") or topic.error is not None or not topic.partitions:
                continue
            count, known = len(topic.partitions), self.partitions.get(name, 0)
            if count > known:
                start = [TopicPartition(name, p, self.archive.next_offset(name, p) or OFFSET_BEGINNING)
                         for p in range(known, count)]
                self.consumer.incremental_assign(start)
                self.partitions[name] = grown[name] = count
                self._needs_config.add(name)
        names = set(self.partitions) if configs else set(self._needs_config)
        found = self._describe(sorted(names)) if names else {}
        self._needs_config -= set(found)
        infos = {n: TopicInfo(self.partitions[n], found.get(n, self._known_config(n))) for n in names | set(grown)}
        if infos and self.archive.set_topics(infos):
            self.log.info("archiver: topics recorded: %s", ", ".join(f"{n}/{i.partitions}" for n, i in infos.items()))
        quiet = self._bell is not None and self._bell.healthy
        self._next_refresh = time.monotonic() + (REFRESH_IDLE_S if quiet else REFRESH_INTERVAL_S)

    def _known_config(self, name: str) -> dict[str, str]:
        info = self.archive.topics().get(name)
        return info.config if info else {}

    def _describe(self, names: list[str]) -> dict[str, dict[str, str]]:
        """Topic configs that describe_configs returns; failures are retried at the next refresh."""
        resources = [ConfigResource(ResourceType.TOPIC, n) for n in names]
        found: dict[str, dict[str, str]] = {}
        for res, fut in self.admin.describe_configs(resources, request_timeout=REQUEST_TIMEOUT_S).items():
            try:
                entries = fut.result()
            except KafkaException as exc:
                self.log.warning("archiver: describe_configs %s failed: %s", res.name, exc)
                continue
            # Tansu flags configs set at creation as defaults too, so keep every value it reports.
            found[res.name] = {k: e.value for k, e in entries.items()
                               if e.value is not None and not e.is_sensitive and not e.is_read_only}
        return found

    def _doorbell(self) -> Doorbell | None:
        """The doorbell of every topic, once the platform's Valkey is known (None: not yet, or switched off)."""
        if self._bell is not None or not self.kafka.doorbell or self._draining:
            return self._bell
        now = time.monotonic()
        if now < self._bell_look_at:
            return None
        self._bell_look_at = now + BELL_LOOK_S
        url = self.kafka.doorbell_url
        if not url:  # the keeper starts before Valkey: the supervisor's run state names it once it runs
            state = read_state(self.archive.root.parent)
            url = state.valkey_url if state is not None else ""
        if url:
            self._bell = Doorbell(replace(self.kafka, doorbell_url=url), None)
            self.log.info("archiver: pausing while idle, woken by the doorbell at %s", without_password(url))
        return self._bell

    def _resume(self, bell: Doorbell, now: float, probe: bool) -> None:
        parts = self.consumer.assignment()
        if bell.gate.paused and parts:
            self.consumer.resume(parts)
            try:  # a request on the broker connection makes librdkafka apply the resume now (topics/consumer.py)
                self.consumer.list_topics(parts[0].topic, timeout=REQUEST_TIMEOUT_S)
            except KafkaException:
                pass
        self._probe_eof.clear()
        bell.gate.resumed(now, probe)

    def poll(self, timeout_s: float = 0.05) -> int:
        """Consume one batch into the archive and flush when due; returns records appended.

        While idle with a doorbell, waits on it instead, up to ``timeout_s`` or ``PAUSED_WAIT_S``,
        whichever is longer.
        """
        if time.monotonic() >= self._next_refresh:
            try:
                self.refresh()
            except KafkaException as exc:  # a slow metadata answer must not stop the archiving
                self.log.warning("archiver: topic refresh failed: %s", exc)
                self._next_refresh = time.monotonic() + REFRESH_INTERVAL_S
        bell = None if self._draining else self._doorbell()
        if bell is not None and bell.gate.paused:
            gate = bell.gate
            rung = bell.wait(min(max(timeout_s, PAUSED_WAIT_S), max(0.0, gate.next_check - time.monotonic())))
            if bell.rung - set(self.partitions):
                self._next_refresh = 0.0  # a topic it does not archive yet: look for it now
            bell.rung.clear()
            now = time.monotonic()
            if rung is False and not gate.check_due(now):
                return 0
            self._resume(bell, now, probe=rung is False)
        wait_s = min(timeout_s, self.settings.flush_interval_ms / 1000) if self.archive.pending else timeout_s
        records: list[ArchivedRecord] = []
        now = time.monotonic()
        for m in self.consumer.consume(CONSUME_BATCH, wait_s):
            err = m.error()
            tp = (m.topic() or "", m.partition() or 0)
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._eof.add(tp)
                    if bell is not None and bell.gate.probing:
                        self._probe_eof.add(tp)
                        if len(self._probe_eof) >= sum(self.partitions.values()):
                            bell.gate.probe_done(now)
                elif err.fatal():
                    raise KafkaException(err)
                else:
                    self.log.error("archiver: %s[%s]: %s", tp[0], tp[1], err)
                continue
            self._eof.discard(tp)
            if bell is not None:
                bell.gate.wake(now)
            ts_type, ts = m.timestamp()
            records.append(ArchivedRecord(tp[0], tp[1], m.offset() or 0, ts, ts_type, m.key(), m.value(),
                                          tuple(cast(list[tuple[str, bytes | None]], m.headers() or ()))))
        appended = self.archive.append(records)
        self.archived += appended
        caught_up = len(self._eof) >= sum(self.partitions.values())
        due = time.monotonic() - self._last_flush >= self.settings.flush_interval_ms / 1000
        if self.archive.pending and (due or caught_up):
            self.flush()
        if bell is not None and bell.gate.should_pause(now) and not self.archive.pending:
            parts = self.consumer.assignment() if bell.quiet(now) else []
            if parts:
                self.consumer.pause(parts)
                bell.gate.paused_at(now)
            else:
                bell.gate.wake(now)
        return appended

    def flush(self) -> int:
        """Write and fsync what is pending."""
        self._last_flush = time.monotonic()
        return self.archive.flush()

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Poll until ``should_stop`` answers True (checked every ~50 ms)."""
        while not should_stop():
            self.poll()

    def _position(self, tp: TP) -> int:
        pos = self.consumer.position([TopicPartition(*tp)])[0].offset
        return max(self.archive.next_offset(*tp), pos)

    def _catch_up(self, targets: dict[TP, int], deadline: float) -> bool:
        behind = {tp: end for tp, end in targets.items() if self._position(tp) < end}
        while behind and time.monotonic() < deadline:
            self.poll(0.02)
            behind = {tp: end for tp, end in behind.items() if self._position(tp) < end}
        return not behind

    def _latest(self) -> dict[TP, int]:
        tps = [TopicPartition(n, p) for n, count in self.partitions.items() for p in range(count)]
        if not tps:
            return {}
        futures = self.admin.list_offsets({tp: OffsetSpec.latest() for tp in tps},  # type: ignore[no-untyped-call]
                                          request_timeout=REQUEST_TIMEOUT_S)
        return {(tp.topic, tp.partition): fut.result().offset for tp, fut in futures.items()}

    def _fetched_high(self, targets: dict[TP, int]) -> dict[TP, int]:
        out = {}
        for tp, end in targets.items():
            _, high = self.consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
            out[tp] = max(end, high)
        return out

    def drain(self, timeout_s: float) -> bool:
        """Archive everything the broker holds now, then flush and fsync; False on timeout."""
        deadline = time.monotonic() + timeout_s
        previous: dict[TP, int] | None = None
        caught_up = False
        if self._bell is not None:
            self._resume(self._bell, time.monotonic(), probe=False)
        self._draining = True  # no more pauses: read until the end
        try:
            self.refresh(configs=True)
            while time.monotonic() < deadline:
                # Stop once a fresh look at the broker shows nothing new since the last one.
                targets = self._latest()
                if not (self._catch_up(targets, deadline)
                        and self._catch_up(targets := self._fetched_high(targets), deadline)):
                    break
                if targets == previous:
                    caught_up = True
                    break
                previous = targets
                self.refresh()
        except KafkaException as exc:
            self.log.error("archiver: drain failed: %s", exc)
        self.flush()
        self.log.info("archiver: drain %s; %d records archived in this run",
                      "complete" if caught_up else "INCOMPLETE", self.archived)
        return caught_up

    def close(self) -> None:
        """Flush the archive and close the consumer."""
        self.flush()
        self.archive.close()
        self.consumer.close()
        if self._bell is not None:
            self._bell.close()

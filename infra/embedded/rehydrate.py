"""Rebuild an empty embedded broker from the archive, offsets included.

At ``glasscast up`` the keeper starts Tansu (memory storage, so empty) and
calls ``rehydrate`` before anyone else may connect.  Topics are re-created
with the partitions and config recorded in ``topics.json``, then every
archived record is produced to its original partition, in offset order, with
its original key, value, headers and timestamp.  The producer is idempotent
(acks=all), so retries neither duplicate nor reorder records and offsets
come out equal to the original ones; that is checked twice: each delivery
report must carry the archived offset, and each partition must end where the
archive ends.  Consumer offsets, views and the archiver itself all rely on
offsets being stable across restarts; the report's ``ends`` (each partition's
end, from the archive) is where the keeper clamps the consumer-group offsets
it restores next (``infra/embedded/offsets.py``).

A timestamp of 0 is produced as "now" by librdkafka; real records never
carry one.  Tansu's ListOffsets(latest) is off by the last batch
(``infra/embedded/archiver.py``), so the end check reads the last record and
the partition-EOF offset instead.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec  # type: ignore[attr-defined]

from infra.embedded.archiver import REQUEST_TIMEOUT_S, consumer_config
from infra.errors import RehydrateError
from infra.settings import KafkaSettings
from topics.archive import Archive, TopicInfo

TP = tuple[str, int]


@dataclass(frozen=True)
class RehydrateReport:
    """What was put back; ``ends`` maps every re-created partition to its end (next offset)."""

    topics: int
    partitions: int
    records: int
    seconds: float
    ends: dict[TP, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """The counts, for ready.json and logs (without ``ends``)."""
        return {"topics": self.topics, "partitions": self.partitions, "records": self.records,
                "seconds": self.seconds}


def _check_empty(admin: AdminClient, infos: dict[str, TopicInfo]) -> None:
    existing = admin.list_topics(timeout=REQUEST_TIMEOUT_S).topics
    tps = [TopicPartition(n, p) for n in infos if n in existing for p in existing[n].partitions]
    if not tps:
        return
    for tp, fut in admin.list_offsets({tp: OffsetSpec.latest() for tp in tps},  # type: ignore[no-untyped-call]
                                      request_timeout=REQUEST_TIMEOUT_S).items():
        if fut.result().offset > 0:
            raise RehydrateError(f"broker is not empty: {tp.topic}[{tp.partition}] already has records")


def _create_topics(admin: AdminClient, infos: dict[str, TopicInfo], kafka: KafkaSettings) -> None:
    new = [NewTopic(n, i.partitions, kafka.replication_factor, config=dict(i.config)) for n, i in infos.items()]
    for name, fut in admin.create_topics(new, request_timeout=REQUEST_TIMEOUT_S).items():
        try:
            fut.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RehydrateError(f"cannot re-create topic {name}: {exc}") from exc


class _Deliveries:
    """Delivery reports, checked against the archived offsets as they arrive."""

    def __init__(self) -> None:
        self.expected: dict[TP, int] = {}
        self.errors: list[str] = []

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        tp = (msg.topic() or "", msg.partition() or 0)
        if err is not None:
            self.errors.append(f"{tp[0]}[{tp[1]}]: {err}")
            return
        want = self.expected.get(tp, 0)
        if msg.offset() != want and len(self.errors) < 10:
            self.errors.append(f"{tp[0]}[{tp[1]}]: archived offset {want} came back as {msg.offset()}")
        self.expected[tp] = want + 1


def _produce_all(producer: Producer, archive: Archive, infos: dict[str, TopicInfo],
                 deliveries: _Deliveries, deadline: float) -> dict[TP, int]:
    counts: dict[TP, int] = {}
    for topic, info in infos.items():
        for p in range(info.partitions):
            n = 0
            for rec in archive.iter_partition(topic, p):
                if rec.offset != n:
                    raise RehydrateError(
                        f"{topic}[{p}]: archive jumps from offset {n - 1} to {rec.offset}; "
                        "offsets could not be kept (transactional or compacted source?)")
                while True:
                    try:
                        producer.produce(topic, rec.value, rec.key, partition=p,
                                         timestamp=max(rec.timestamp_ms, 0),
                                         headers=list(rec.headers) or None, on_delivery=deliveries)
                        break
                    except BufferError:  # local queue full: serve delivery reports, then retry
                        producer.poll(0.05)
                        if time.monotonic() > deadline:
                            raise RehydrateError("rehydration timed out while producing") from None
                n += 1
            if n:
                counts[(topic, p)] = n
            producer.poll(0)
    remaining = producer.flush(max(deadline - time.monotonic(), 0.1))
    if remaining:
        raise RehydrateError(f"rehydration timed out: {remaining} records not acknowledged")
    return counts


def _check_ends(consumer: Consumer, counts: dict[TP, int], deadline: float) -> None:
    """Each partition's high watermark, as a fetch reports it, must equal the archived count."""
    if not counts:
        return
    consumer.assign([TopicPartition(t, p, n - 1) for (t, p), n in counts.items()])
    ends: dict[TP, int] = {}
    while len(ends) < len(counts) and time.monotonic() < deadline:
        for m in consumer.consume(1000, 0.05):
            err = m.error()
            if err is not None and err.code() == KafkaError._PARTITION_EOF:
                ends[(m.topic() or "", m.partition() or 0)] = m.offset() or 0
            elif err is not None:
                raise RehydrateError(f"verifying {m.topic()}[{m.partition()}]: {err}")
    wrong = [f"{t}[{p}]: ends at {ends.get((t, p), 'unknown')}, archive has {n}"
             for (t, p), n in counts.items() if ends.get((t, p)) != n]
    if wrong:
        raise RehydrateError("rehydrated offsets differ from the archive: " + "; ".join(wrong[:5]))


def rehydrate(bootstrap_servers: str, archive: Archive, kafka: KafkaSettings, timeout_s: float = 300.0,
              logger: logging.Logger | None = None) -> RehydrateReport:
    """Re-create every archived topic on an empty broker and produce its records back."""
    log = logger or logging.getLogger(__name__)
    started = time.monotonic()
    deadline = started + timeout_s
    infos = archive.topics()
    if not infos:
        return RehydrateReport(0, 0, 0, 0.0)
    admin_config: dict[str, Any] = {"bootstrap.servers": bootstrap_servers, "logger": log}
    admin = AdminClient(admin_config)
    _check_empty(admin, infos)
    _create_topics(admin, infos, kafka)
    deliveries = _Deliveries()
    producer_config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers, "client.id": f"{kafka.client_id}-rehydrate",
        "enable.idempotence": True, "acks": "all", "linger.ms": 5, "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000, "queue.buffering.max.kbytes": 1_048_576,
        "logger": log,
    }
    producer = Producer(producer_config)
    counts = _produce_all(producer, archive, infos, deliveries, deadline)
    if deliveries.errors:
        raise RehydrateError("rehydration failed: " + "; ".join(deliveries.errors[:5]))
    consumer = Consumer(consumer_config(bootstrap_servers, kafka, logger=log))
    try:
        _check_ends(consumer, counts, deadline)
    finally:
        consumer.close()
    ends = {(t, p): counts.get((t, p), 0) for t, info in infos.items() for p in range(info.partitions)}
    report = RehydrateReport(len(infos), sum(i.partitions for i in infos.values()), sum(counts.values()),
                             round(time.monotonic() - started, 3), ends)
    log.info("rehydrate: %d records into %d partitions of %d topics in %.3f s",
             report.records, report.partitions, report.topics, report.seconds)
    return report

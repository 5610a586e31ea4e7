"""Archive a broker, rebuild an empty one from the archive, and read the same records back.

Rehydration needs an empty broker, so these tests start their own Tansu
brokers rather than using the session one.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType  # type: ignore[attr-defined]

from infra.embedded.archiver import Archiver
from infra.embedded.rehydrate import rehydrate
from infra.embedded.tansu import TansuBroker
from infra.errors import RehydrateError
from infra.settings import ArchiveSettings, KafkaSettings
from tests.waiting import eventually
from topics.archive import Archive, ArchiveWriter

pytestmark = pytest.mark.integration

TOPICS = {"chat.messages": {}, "social.follows": {"cleanup.policy": "compact"}}
PARTITIONS = 3
Row = tuple[str, int, int, bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...], int]


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[[], TansuBroker]]:
    started: list[TansuBroker] = []

    def make() -> TansuBroker:
        b = TansuBroker(tmp_path / f"broker-{len(started)}.log")
        b.start()
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


def create_topics(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(t, PARTITIONS, 1, config=c) for t, c in TOPICS.items()])
    for fut in futures.values():
        fut.result(10)


def produce(bootstrap: str, n: int, seed: int) -> list[Row]:
    """Produce n records with awkward keys, values and headers; the acknowledged rows, in ack order."""
    rnd = random.Random(seed)
    acked: list[Row] = []
    errors: list[str] = []

    def on_delivery(headers: tuple[tuple[str, bytes | None], ...]) -> Callable[[KafkaError | None, Message], None]:
        # Delivery reports carry no headers, so each callback keeps the ones it was produced with.
        def report(err: KafkaError | None, m: Message) -> None:
            if err is not None:
                errors.append(str(err))
                return
            acked.append((m.topic() or "", m.partition() or 0, m.offset() or 0, m.key(), m.value(), headers,
                          m.timestamp()[1]))
        return report

    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 2})
    for i in range(n):
        topic = rnd.choice(list(TOPICS))
        key = None if i % 17 == 0 else (b"" if i % 23 == 0 else f"user-{rnd.randrange(50)}".encode())
        value = None if i % 11 == 0 else rnd.randbytes(rnd.randrange(0, 300))
        headers = (("trace", rnd.randbytes(8)), ("empty", None), ("trace", b"")) if i % 3 == 0 else ()
        p.produce(topic, value, key, partition=rnd.randrange(PARTITIONS), timestamp=1_700_000_000_000 + i * 7,
                  headers=list(headers) or None, on_delivery=on_delivery(headers))
        p.poll(0)
    assert p.flush(30) == 0
    assert not errors
    return acked


def consume_all(bootstrap: str, deadline_s: float = 30.0) -> list[Row]:
    """Every record of TOPICS, read with an assignment from the beginning until each partition's EOF."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.auto.commit": False,
                  "enable.partition.eof": True, "fetch.wait.max.ms": 10})
    tps = [TopicPartition(t, p, 0) for t in TOPICS for p in range(PARTITIONS)]
    c.assign(tps)
    rows: list[Row] = []
    eof: set[tuple[str, int]] = set()

    def every_partition_ended() -> bool:
        for m in c.consume(1000, 0.1):  # blocks up to 0.1 s itself: no pause between polls
            err = m.error()
            if err is not None:
                assert err.code() == KafkaError._PARTITION_EOF, err
                eof.add((m.topic() or "", m.partition() or 0))
                continue
            headers = cast(list[tuple[str, bytes | None]], m.headers() or [])
            rows.append((m.topic() or "", m.partition() or 0, m.offset() or 0, m.key(), m.value(),
                         tuple(headers), m.timestamp()[1]))
        return len(eof) == len(tps)

    try:
        eventually(every_partition_ended, deadline_s, f"the end of all {len(tps)} partitions", every_s=0)
    finally:
        c.close()
    return rows


def archive_all(bootstrap: str, root: Path) -> None:
    with ArchiveWriter(root) as writer:
        archiver = Archiver(bootstrap, writer, KafkaSettings(), ArchiveSettings())
        try:
            assert archiver.drain(30.0)
        finally:
            archiver.close()


def test_rehydrated_broker_serves_the_same_records(make_broker: Callable[[], TansuBroker], tmp_path: Path) -> None:
    source = make_broker()
    create_topics(source.bootstrap_servers)
    acked = produce(source.bootstrap_servers, 3000, seed=1)
    root = tmp_path / "archive"
    archive_all(source.bootstrap_servers, root)

    archive = Archive(root)
    assert archive.topics()["social.follows"].partitions == PARTITIONS
    assert archive.topics()["social.follows"].config.get("cleanup.policy") == "compact"

    target = make_broker()
    report = rehydrate(target.bootstrap_servers, archive, KafkaSettings())
    assert (report.topics, report.partitions, report.records) == (2, 2 * PARTITIONS, 3000)

    back = consume_all(target.bootstrap_servers)
    assert sorted(back, key=lambda r: (r[0], r[1], r[2])) == sorted(acked, key=lambda r: (r[0], r[1], r[2]))
    admin = AdminClient({"bootstrap.servers": target.bootstrap_servers})
    res = ConfigResource(ResourceType.TOPIC, "social.follows")
    assert admin.describe_configs([res])[res].result(10)["cleanup.policy"].value == "compact"

    with pytest.raises(RehydrateError, match="not empty"):
        rehydrate(target.bootstrap_servers, archive, KafkaSettings())


def test_archiver_resumes_after_rehydration_without_gaps(make_broker: Callable[[], TansuBroker],
                                                          tmp_path: Path) -> None:
    first = make_broker()
    create_topics(first.bootstrap_servers)
    before = produce(first.bootstrap_servers, 500, seed=2)
    root = tmp_path / "archive"
    archive_all(first.bootstrap_servers, root)

    second = make_broker()
    rehydrate(second.bootstrap_servers, Archive(root), KafkaSettings())
    after = produce(second.bootstrap_servers, 500, seed=3)
    archive_all(second.bootstrap_servers, root)  # resumes at each partition's next offset

    archive = Archive(root)
    archived = [(r.topic, r.partition, r.offset, r.key, r.value, r.headers, r.timestamp_ms)
                for t in TOPICS for p in range(PARTITIONS) for r in archive.iter_partition(t, p)]
    assert sorted(archived) == sorted(before + after)
    for t in TOPICS:
        for p in range(PARTITIONS):
            offsets = [r.offset for r in archive.iter_partition(t, p)]
            assert offsets == list(range(len(offsets)))

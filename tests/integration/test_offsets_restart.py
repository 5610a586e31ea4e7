"""A restart of the broker keeper resumes every consumer group where it stopped: nothing committed is reprocessed.

A keeper runs the way ``glasscast up`` runs it (own session, ``--parent-pid``).
A history of GOPS ``GopAvailable`` records goes onto ``media.gops`` with the
typed producer, and a stand-in for the media worker (an ``EventConsumer`` in
the worker's group, committing each GOP as it is done, as the worker does)
processes all of it.  The keeper is stopped as ``glasscast up`` stops it
(SIGTERM, drain), a new keeper starts on the same data directory, new GOPs
arrive, and the same group must get exactly the new ones.  Without the
offsets snapshot, the same restart hands the group the whole history again:
the control at the end shows it.  The real processors (Faust) are shown the
same way, counting what they dead-letter; and a group that already runs when
the restore comes is left alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from infra.embedded.keeper import keeper_argv, read_ready
from infra.embedded.offsets import GroupOffsetsKeeper
from infra.embedded.process import pid_alive
from infra.embedded.tansu import TansuBroker
from infra.settings import Settings
from schemas.records.media import GopAvailable
from schemas.records.ops import DeadLetter
from tests.conftest import wait_processors_assigned
from tests.factories import Backbone, platform_settings
from tests.servers import run_service
from tests.waiting import eventually
from topics.admin import ensure_topics
from topics.catalogue import CATALOGUE
from topics.consumer import EventConsumer
from topics.offsets_archive import OffsetsFile
from topics.producer import EventProducer
from topics.runtime import make_serde
from topics.serde import AvroSerde
from views.readiness import ready_key

pytestmark = pytest.mark.integration

GOPS = 1200
NEW_GOPS = 60
STREAMS = 12
TOPIC = "media.gops"


@pytest.fixture
def keeper_pids() -> Iterator[list[int]]:
    """Pids of keepers started in a new session; whatever still runs at the end is killed."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)  # its Tansu has SIGKILL as parent-death signal


@pytest.fixture
def serde(backbone: Backbone, tmp_path: Path) -> Iterator[AvroSerde]:
    s = make_serde(platform_settings(backbone, tmp_path / "serde"))
    yield s
    s.close()


@dataclass
class Keeper:
    proc: subprocess.Popen[bytes]
    ready: dict[str, Any]

    def stop(self) -> None:
        """As ``glasscast up`` stops it: SIGTERM, then the keeper drains and exits 0."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(60) == 0


def start_keeper(data_dir: Path, pids: list[int]) -> Keeper:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSCAST_")}
    proc = subprocess.Popen(keeper_argv(data_dir, parent_pid=os.getpid()), env=env, start_new_session=True,
                            stdin=subprocess.DEVNULL)
    pids.append(proc.pid)
    ready: dict[str, Any] = eventually(lambda: read_ready(data_dir, proc.pid), 120, f"keeper {proc.pid} ready")
    return Keeper(proc, ready)


def gop(stream: int, seq: int) -> GopAvailable:
    return GopAvailable(occurred_at=1_700_000_000_000 + seq * 2000, stream_id=f"stream-{stream:02d}",
                        channel_id=f"channel-{stream:02d}", seq=seq, pts=seq * 2000, duration=2000,
                        time_base_num=1, time_base_den=1000, byte_size=1000,
                        blob_ref=f"gops/stream-{stream:02d}/{seq}.flv", video_codec="avc1.64001f",
                        width=1280, height=720)


def produce_gops(settings: Settings, serde: AvroSerde, first_seq: int, count: int) -> None:
    producer = EventProducer(settings.kafka, serde)
    try:
        for i in range(count):
            seq, stream = divmod(first_seq + i, STREAMS)
            producer.produce(gop(stream, seq), f"stream-{stream:02d}")
    finally:
        producer.close()


@dataclass
class Worker:
    """Stands in for the media worker: its group, its consumer settings, a commit after each GOP."""

    settings: Settings
    serde: AvroSerde
    seen: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset) delivered, in order

    def run_until(self, done: Any, timeout_s: float = 120) -> None:
        consumer = EventConsumer(self.settings.kafka, self.serde, [TOPIC], group_id=self.settings.transcode.group_id,
                                 dead_letter=None, **{"enable.auto.commit": False, "enable.partition.eof": False})
        try:
            def processed() -> bool:
                for event in consumer.consume(500, 0.1):
                    self.seen.append((event.partition, event.offset))
                    consumer.commit_offset(event.topic, event.partition, event.offset + 1)
                return bool(done())

            eventually(processed, timeout_s, "the worker to process its GOPs", every_s=0)
            consumer.commit()  # the async commits above, settled before the worker stops
        finally:
            consumer.close()


def committed(bootstrap: str, group: str, topic: str = TOPIC) -> dict[int, int]:
    """The group's committed offset per partition of ``topic``, as the broker reports it."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
    return {tp.partition: tp.offset for tp in result.topic_partitions or () if tp.topic == topic and tp.offset >= 0}


def committed_all(bootstrap: str, group: str, total: int) -> dict[int, int]:
    """The group's offsets once it has committed ``total`` records of media.gops."""
    def reached() -> dict[int, int]:
        offsets = committed(bootstrap, group)
        return offsets if sum(offsets.values()) == total else {}

    return eventually(reached, 30, f"{group} to commit {total} GOPs")


def restart_and_count(data_dir: Path, backbone: Backbone, serde: AvroSerde, pids: list[int],
                      before: dict[int, int], first_new_seq: int) -> tuple[int, int, Keeper]:
    """Start a keeper, produce NEW_GOPS, run the worker until it has them; (reprocessed, new) records."""
    keeper = start_keeper(data_dir, pids)
    settings = with_broker(backbone, data_dir, keeper.ready["bootstrap_servers"])
    produce_gops(settings, serde, first_new_seq, NEW_GOPS)
    worker = Worker(settings, serde)

    def is_new(partition: int, offset: int) -> bool:
        return offset >= before.get(partition, 0)

    worker.run_until(lambda: sum(1 for p, o in worker.seen if is_new(p, o)) >= NEW_GOPS)
    new = [(p, o) for p, o in worker.seen if is_new(p, o)]
    assert len(new) == len(set(new)) == NEW_GOPS
    # Every partition got new GOPs, and a partition is delivered in order: nothing older can follow.
    assert {p for p, _ in new} == set(before)
    return sum(1 for p, o in worker.seen if not is_new(p, o)), len(new), keeper


def with_broker(backbone: Backbone, data_dir: Path, bootstrap: str) -> Settings:
    """The same settings (Valkey prefix, processors group) every time for one data dir, on this broker."""
    s = platform_settings(backbone, data_dir, tag=uuid.uuid5(uuid.NAMESPACE_URL, str(data_dir)).hex[:8])
    return s.with_section("kafka", bootstrap_servers=bootstrap)


def test_a_restart_reprocesses_nothing_that_was_committed(tmp_path: Path, backbone: Backbone, serde: AvroSerde,
                                                          keeper_pids: list[int]) -> None:
    data_dir = tmp_path / "data"
    keeper = start_keeper(data_dir, keeper_pids)
    settings = with_broker(backbone, data_dir, keeper.ready["bootstrap_servers"])
    group = settings.transcode.group_id
    ensure_topics(settings.kafka, [s for s in CATALOGUE if s.name == TOPIC])
    produce_gops(settings, serde, 0, GOPS)

    worker = Worker(settings, serde)
    worker.run_until(lambda: len(worker.seen) >= GOPS)
    assert len(set(worker.seen)) == GOPS
    before = committed_all(keeper.ready["bootstrap_servers"], group, GOPS)
    # The periodic snapshot has them before any stop (what a SIGKILL of the keeper would leave).
    offsets_file = OffsetsFile(data_dir / "archive")
    eventually(lambda: offsets_file.load().get(group) == {(TOPIC, p): o for p, o in before.items()}, 30,
               "the periodic offsets snapshot")
    keeper.stop()

    reprocessed, new, keeper = restart_and_count(data_dir, backbone, serde, keeper_pids, before, GOPS)
    assert keeper.ready["rehydrated"]["records"] == GOPS
    assert keeper.ready["rehydrated"]["groups"] >= 1
    print(f"\nafter a restart over {GOPS} committed GOPs: {reprocessed} reprocessed, {new} new delivered")
    assert reprocessed == 0
    after = committed_all(keeper.ready["bootstrap_servers"], group, GOPS + NEW_GOPS)
    keeper.stop()

    # Control: the same restart without the snapshot (as before offsets were archived).
    (data_dir / "archive" / "offsets.json").unlink()
    reprocessed, new, keeper = restart_and_count(data_dir, backbone, serde, keeper_pids, after,
                                                 GOPS + NEW_GOPS)
    print(f"without the offsets snapshot: {reprocessed} reprocessed, {new} new delivered")
    assert reprocessed == GOPS + NEW_GOPS
    keeper.stop()


def test_a_group_restored_but_not_yet_committing_keeps_its_offsets(tmp_path: Path, backbone: Backbone,
                                                                     serde: AvroSerde, keeper_pids: list[int]) -> None:
    """A group that does not run between two restarts (ListGroups omits it) is restored again the second time."""
    data_dir = tmp_path / "data"
    keeper = start_keeper(data_dir, keeper_pids)
    settings = with_broker(backbone, data_dir, keeper.ready["bootstrap_servers"])
    settings = settings.with_section("transcode", group_id=f"idle-{uuid.uuid4().hex[:6]}")
    ensure_topics(settings.kafka, [s for s in CATALOGUE if s.name == TOPIC])
    produce_gops(settings, serde, 0, 120)
    worker = Worker(settings, serde)
    worker.run_until(lambda: len(worker.seen) >= 120)
    keeper.stop()
    keeper = start_keeper(data_dir, keeper_pids)  # the group is restored and nobody joins it
    keeper.stop()
    keeper = start_keeper(data_dir, keeper_pids)
    assert sum(committed(keeper.ready["bootstrap_servers"], settings.transcode.group_id).values()) == 120
    keeper.stop()


def dead_letters(settings: Settings, serde: AvroSerde) -> list[tuple[int, int]]:
    """(partition, offset) of every ``channels`` record the processors dead-lettered, in the order they did."""
    consumer = EventConsumer(settings.kafka, serde, ["deadletter"])
    consumer.assign("beginning")
    found: list[tuple[int, int]] = []

    def at_end() -> bool:
        for event in consumer.consume(1000, 0.1):
            v = event.value
            if isinstance(v, DeadLetter) and v.source_topic == "channels" \
                    and v.consumer_group == settings.processors.app_id:
                found.append((v.partition, v.offset))
        return consumer.caught_up()

    try:
        eventually(at_end, 30, "the end of the deadletter topic", every_s=0)
    finally:
        consumer.close()
    return found


def produce_undecodable(bootstrap: str, count: int, first: int) -> None:
    """Records the processors cannot decode: each one they process becomes one DeadLetter."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2})
    for i in range(first, first + count):
        producer.produce("channels", f"not avro {i}".encode(), f"channel-{i % 29}".encode())
    assert producer.flush(30) == 0


def run_processors_until(settings: Settings, serde: AvroSerde, log: Path, total: int) -> dict[int, int]:
    """The real processors (Faust), until their group has committed ``total`` channels records; its offsets."""
    valkey = redis.Redis.from_url(settings.valkey.url)
    valkey.delete(ready_key(settings))
    valkey.close()
    with run_service(settings, "processors", log) as proc:
        wait_processors_assigned(settings, proc, log)

        def reached() -> dict[int, int]:
            assert proc.poll() is None, log.read_text()[-3000:]
            offsets = committed(settings.kafka.bootstrap_servers, settings.processors.app_id, "channels")
            return offsets if sum(offsets.values()) == total else {}

        return eventually(reached, 60, f"the processors to commit {total} channels records")


def test_the_processors_group_resumes_after_a_restart(tmp_path: Path, backbone: Backbone, serde: AvroSerde,
                                                      keeper_pids: list[int]) -> None:
    """The Faust group reprocesses nothing after a restart: a record processed again is dead-lettered again."""
    history, new = 400, 40
    data_dir = tmp_path / "data"
    keeper = start_keeper(data_dir, keeper_pids)
    settings = with_broker(backbone, data_dir, keeper.ready["bootstrap_servers"])
    ensure_topics(settings.kafka)
    produce_undecodable(settings.kafka.bootstrap_servers, history, 0)
    run_processors_until(settings, serde, tmp_path / "processors-1.log", history)  # then SIGTERM, as `up` does
    first = dead_letters(settings, serde)
    assert len(first) == len(set(first)) == history
    keeper.stop()

    keeper = start_keeper(data_dir, keeper_pids)
    settings = with_broker(backbone, data_dir, keeper.ready["bootstrap_servers"])
    produce_undecodable(settings.kafka.bootstrap_servers, new, history)
    run_processors_until(settings, serde, tmp_path / "processors-2.log", history + new)
    letters = dead_letters(settings, serde)
    reprocessed = len(letters) - len(set(letters))
    print(f"\nprocessors after a restart over {history} records: {reprocessed} reprocessed, "
          f"{len(set(letters)) - history} new")
    assert len(set(letters)) == history + new
    assert reprocessed == 0
    # The processors' own log agrees: one "undecodable record" warning per record they processed.
    assert (tmp_path / "processors-2.log").read_text().count("undecodable record channels") == new
    keeper.stop()

    # Control: the same restart without the snapshot; the group starts over from the first record.
    (data_dir / "archive" / "offsets.json").unlink()
    keeper = start_keeper(data_dir, keeper_pids)
    settings = with_broker(backbone, data_dir, keeper.ready["bootstrap_servers"])
    run_processors_until(settings, serde, tmp_path / "processors-3.log", history + new)
    again = dead_letters(settings, serde)
    print(f"without the offsets snapshot: {len(again) - len(letters)} reprocessed")
    assert len(again) - len(letters) == history + new
    keeper.stop()


def test_a_group_that_already_runs_is_left_alone_by_the_restore(tmp_path: Path) -> None:
    """A client that reached a restarted broker first keeps its group: the restore skips it and does not fail."""
    broker = TansuBroker(tmp_path / "tansu.log")
    broker.start()
    consumer: Consumer | None = None
    try:
        bootstrap = broker.bootstrap_servers
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("t", 2, 1)])["t"].result(10)
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(20):
            producer.produce("t", b"x", partition=i % 2)
        assert producer.flush(10) == 0
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "running", "auto.offset.reset": "earliest",
                             "enable.auto.commit": False, "session.timeout.ms": 6000, "fetch.wait.max.ms": 10})
        consumer.subscribe(["t"])
        c = consumer
        eventually(lambda: any(m.error() is None for m in c.consume(10, 0.1)), 30, "the running group to read",
                   every_s=0)
        store = OffsetsFile(tmp_path / "archive")
        store.save({"running": {("t", 0): 10, ("t", 1): 10}, "stopped": {("t", 0): 4, ("t", 1): 30}})
        restored = GroupOffsetsKeeper(bootstrap, store).restore({("t", 0): 10, ("t", 1): 10}, timeout_s=10)
        assert restored == {"stopped": {("t", 0): 4, ("t", 1): 10}}
        assert committed(bootstrap, "stopped", "t") == {0: 4, 1: 10}
    finally:
        if consumer is not None:
            consumer.close()
        broker.stop()

"""The broker keeper loses no acknowledged event when the platform stops, even by SIGKILL.

A stand-in supervisor starts the keeper the way ``glasscast up`` does (new
session, ``--parent-pid``), events are produced with acks=all, the supervisor
is SIGKILLed right after the last acknowledgement, and a new keeper on the same
data directory must serve every acknowledged event at its original offset.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from infra.embedded.keeper import LOCK_FILE, broker_dir, keeper_argv, read_ready
from infra.embedded.process import pid_alive
from infra.embedded.tansu_record import RECORD_FILE, kill_recorded
from tests.waiting import eventually

pytestmark = pytest.mark.integration

TOPICS = {"chat.messages": {}, "social.follows": {"cleanup.policy": "compact"}}
PARTITIONS = 3
EVENTS = 2000
Acked = dict[tuple[str, int], list[tuple[int, bytes]]]

SUPERVISOR = """
import os, subprocess, sys, time
from pathlib import Path
from infra.embedded.keeper import keeper_argv
data_dir = Path(sys.argv[1])
with open(data_dir / "keeper.out", "ab") as out:
    keeper = subprocess.Popen(keeper_argv(data_dir, parent_pid=os.getpid()), start_new_session=True,
                              stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
print(keeper.pid, flush=True)
time.sleep(120)
"""


def keeper_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GLASSCAST_")}


@pytest.fixture
def keeper_pids(tmp_path: Path) -> Iterator[list[int]]:
    """Pids of keepers started in a new session; whatever still runs at the end is killed."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    for record in tmp_path.rglob(RECORD_FILE):
        kill_recorded(record.parent)  # Tansu outlives a killed keeper, to be adopted by the next


def lock_free(data_dir: Path) -> bool:
    fd = os.open(broker_dir(data_dir) / LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def start_keeper(data_dir: Path, pids: list[int]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(keeper_argv(data_dir, parent_pid=os.getpid()), env=keeper_env(),
                            start_new_session=True, stdin=subprocess.DEVNULL)
    pids.append(proc.pid)
    return proc


def wait_ready(data_dir: Path, pid: int) -> dict[str, Any]:
    ready: dict[str, Any] = eventually(lambda: read_ready(data_dir, pid), 60, f"keeper {pid} ready.json")
    return ready


def produce_acked(bootstrap: str) -> Acked:
    """Create the topics and produce EVENTS values with acks=all; what was acknowledged, per partition."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(t, PARTITIONS, 1, config=c) for t, c in TOPICS.items()]).values():
        fut.result(10)
    acked: Acked = {}

    def on_delivery(err: KafkaError | None, m: Message) -> None:
        assert err is None, err
        acked.setdefault((m.topic() or "", m.partition() or 0), []).append((m.offset() or 0, m.value() or b""))

    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 2})
    for i in range(EVENTS):
        topic = list(TOPICS)[i % len(TOPICS)]
        p.produce(topic, f"event-{i}".encode(), f"key-{i % 37}".encode(), on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(30) == 0
    assert sum(len(v) for v in acked.values()) == EVENTS
    return acked


def consume_all(bootstrap: str) -> Acked:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-verify", "enable.auto.commit": False,
                  "enable.partition.eof": True, "fetch.wait.max.ms": 10})
    tps = [TopicPartition(t, p, 0) for t in TOPICS for p in range(PARTITIONS)]
    c.assign(tps)
    got: Acked = {}
    eof: set[tuple[str, int]] = set()

    def every_partition_ended() -> bool:
        for m in c.consume(1000, 0.1):  # blocks up to 0.1 s itself: no pause between polls
            tp = (m.topic() or "", m.partition() or 0)
            if m.error() is not None:
                eof.add(tp)
            else:
                got.setdefault(tp, []).append((m.offset() or 0, m.value() or b""))
        return len(eof) == len(tps)

    try:
        eventually(every_partition_ended, 30, f"the end of all {len(tps)} partitions", every_s=0)
    finally:
        c.close()
    return got


def assert_restart_serves(data_dir: Path, acked: Acked, pids: list[int]) -> None:
    keeper = start_keeper(data_dir, pids)
    try:
        ready = wait_ready(data_dir, keeper.pid)
        assert ready["rehydrated"]["records"] == EVENTS
        got = consume_all(ready["bootstrap_servers"])
        assert got.keys() == acked.keys()
        for tp, events in acked.items():
            assert got[tp] == sorted(events), tp  # every acked event, at its offset, in order
    finally:
        keeper.send_signal(signal.SIGTERM)
        assert keeper.wait(30) == 0


def test_sigkill_of_the_supervisor_loses_no_acknowledged_event(tmp_path: Path, keeper_pids: list[int]) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(data_dir)], env=keeper_env(),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        assert supervisor.stdout is not None
        keeper_pid = int(supervisor.stdout.readline())
        keeper_pids.append(keeper_pid)
        ready = wait_ready(data_dir, keeper_pid)
        acked = produce_acked(ready["bootstrap_servers"])
        supervisor.kill()  # right after the last acknowledgement
        supervisor.wait(10)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait(10)
        assert supervisor.stdout is not None
        supervisor.stdout.close()

    eventually(lambda: lock_free(data_dir), 30, "the orphaned keeper to drain and exit")
    assert not (broker_dir(data_dir) / "ready.json").exists()
    assert not pid_alive(ready["tansu_pid"]) or eventually(lambda: not pid_alive(ready["tansu_pid"]), 10, "tansu")
    assert "drain complete" in (broker_dir(data_dir) / "keeper.log").read_text()
    assert_restart_serves(data_dir, acked, keeper_pids)


def test_sigterm_drains_every_acknowledged_event(tmp_path: Path, keeper_pids: list[int]) -> None:
    data_dir = tmp_path / "data"
    keeper = start_keeper(data_dir, keeper_pids)
    ready = wait_ready(data_dir, keeper.pid)
    acked = produce_acked(ready["bootstrap_servers"])
    keeper.send_signal(signal.SIGTERM)
    assert keeper.wait(30) == 0
    assert not (broker_dir(data_dir) / "ready.json").exists()
    assert_restart_serves(data_dir, acked, keeper_pids)

"""Go-live fan-out for a big channel: plan time, delivery spread, log throughput and processor memory.

Starts an embedded broker, registry and Valkey, puts ``--followers`` synthetic
``Followed`` events (notifications on) for one channel on ``social.follows``,
and marks ``--engaged`` of them as recent viewers with a signed-in Heartbeat.
Then one ``glasscast run processors`` child folds them into its index and views,
and once it has gone quiet (under a quarter of a core), a ``StreamStarted`` of
the channel starts the fan-out.  Reported:

  * ``plan_s``: from the StreamStarted on the log to the planner recording the
    broadcast as notified, which it does only once every NotificationQueued was
    acknowledged by the log (``processors/notifications/planner.py``);
  * ``queued_per_s``: NotificationQueued records into the log per second of planning;
  * ``delivery_s``: first / median / last in-app delivery after the start
    (the first tier at once, the rest spread over ``--delay-min-s``..``--delay-max-s``);
  * ``late_s``: how far after its due time (``NotificationQueued.due_at``, or its
    queueing for the first tier) each in-app delivery was, p50 / p99 / max;
  * ``delivered_peak_per_s``: the most in-app deliveries in one second;
  * the processor's RSS at the end and its peak (``VmHWM``);
  * the reference, measured in the same run before the processors start:
    ``reference_produce_s``, the time fastavro schemaless encoding and a bare
    librdkafka producer (the same settings) take to put as many
    NotificationQueued values on a scratch topic and have them acknowledged:
    the floor under ``plan_s``.

Prints one JSON line.  The aim (issue 14): planning under 10 s and the processor under 300 MB.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fastavro  # noqa: E402
import redis  # noqa: E402
from confluent_kafka import Producer  # noqa: E402

from bench.backbone import embedded_backbone  # noqa: E402
from infra.settings import Settings, child_env  # noqa: E402
from schemas.records.notification import NotificationDelivered, NotificationQueued  # noqa: E402
from schemas.records.social import Followed  # noqa: E402
from schemas.records.stream import StreamStarted  # noqa: E402
from schemas.records.viewer import Heartbeat  # noqa: E402
from topics.admin import ensure_topics  # noqa: E402
from topics.catalogue import TopicSpec  # noqa: E402
from topics.producer import EventProducer, producer_config  # noqa: E402
from topics.runtime import make_serde  # noqa: E402
from topics.serde import without_logical_types  # noqa: E402
from topics.tools import read_topic  # noqa: E402
from views.readiness import ready_key  # noqa: E402


def memory_mb(pid: int) -> dict[str, float]:
    """Current and peak resident memory of a process, MB (Linux /proc)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
            "peak_rss_mb": round(int(fields["VmHWM"].split()[0]) / 1024, 1)}


QUIET_CPU = 0.25  # the processors' CPU share (of one core) below which they are done folding the follows


def cpu_share(pid: int, over_s: float = 1.0) -> float:
    """The process's CPU time over ``over_s`` of wall time (Linux /proc; utime + stime in clock ticks)."""
    def ticks() -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    before = ticks()
    time.sleep(over_s)
    return (ticks() - before) / os.sysconf("SC_CLK_TCK") / over_s


def wait(condition: Any, timeout_s: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc.poll() is not None:
            raise SystemExit(f"processors exited with {proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def produce_follows(s: Settings, channel_id: str, users: list[str], engaged: int) -> None:
    producer = EventProducer(s.kafka, make_serde(s))
    now = int(time.time() * 1000)
    for user_id in users:
        producer.produce(Followed(occurred_at=now, follower_id=user_id, channel_id=channel_id),
                         f"{user_id}:{channel_id}")
    for user_id in users[:engaged]:
        producer.produce(Heartbeat(occurred_at=now, channel_id=channel_id, session_id=uuid.uuid4().hex,
                                   user_id=user_id, rendition="source", buffer_health_s=3.0, bitrate_kbps=3000),
                         channel_id)
    if producer.flush(120):
        raise SystemExit("the follow events were not all acknowledged")
    producer.close()


def reference_produce_s(s: Settings, channel_id: str, users: list[str]) -> float:
    """Seconds for fastavro + a bare Producer to put a NotificationQueued per user on a scratch topic, acknowledged."""
    topic = f"bench.notify.reference.{uuid.uuid4().hex[:6]}"
    ensure_topics(s.kafka, [TopicSpec(topic, "user_id", (NotificationQueued.RECORD,), partitions=3)])
    schema = json.loads((Path(__file__).resolve().parents[1] / "schemas/notification/NotificationQueued.avsc")
                        .read_text())
    parsed = fastavro.parse_schema(without_logical_types(schema))
    stream_id, now = str(uuid.uuid4()), int(time.time() * 1000)
    bare = Producer(producer_config(s.kafka))
    start = time.perf_counter()
    for i, user_id in enumerate(users):
        value = {"event_id": str(uuid.uuid4()), "occurred_at": now, "notification_id": str(uuid.uuid4()),
                 "user_id": user_id, "kind": "GO_LIVE", "delivery": "IN_APP", "channel_id": channel_id,
                 "stream_id": stream_id, "title": "bench is live", "body": "bench", "url": "http://127.0.0.1/c/bench",
                 "due_at": now + 60_000}
        buf = io.BytesIO()
        buf.write(b"\0\0\0\0\1")  # the wire format's magic byte and a schema id, as the framing costs
        fastavro.schemaless_writer(buf, parsed, value)
        while True:
            try:
                bare.produce(topic, buf.getvalue(), user_id.encode())
                break
            except BufferError:
                bare.poll(0.01)
        if i % 1000 == 0:
            bare.poll(0)
    if bare.flush(120):
        raise SystemExit("the reference records were not all acknowledged")
    return time.perf_counter() - start


def collect_deliveries(s: Settings, channel_users: int, out: list[tuple[int, int]], stop: threading.Event) -> None:
    """(delivered at, due at) of every IN_APP NotificationDelivered, until ``channel_users`` of them arrived."""
    due: dict[str, int] = {}
    for ev in read_topic(s.kafka, make_serde(s), ["notifications", "notifications.later"], start="beginning",
                         should_stop=lambda: stop.is_set() or len(out) >= channel_users):
        if isinstance(ev.value, NotificationQueued):
            due[ev.value.notification_id] = ev.value.due_at or ev.value.occurred_at
        elif isinstance(ev.value, NotificationDelivered) and ev.value.delivery == "IN_APP":
            out.append((ev.value.occurred_at, due.get(ev.value.notification_id, ev.value.occurred_at)))


def late_by_due(delivered: list[tuple[int, int]], started_at: int) -> dict[str, float]:
    """The latest delivery (s after due) among notifications due in each 10 s after the start."""
    worst: dict[int, int] = {}
    for at, due in delivered:
        bucket = max(0, due - started_at) // 10_000
        worst[bucket] = max(worst.get(bucket, 0), at - due)
    return {f"{b * 10}s": round(w / 1000, 2) for b, w in sorted(worst.items())}


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    with embedded_backbone(tmp) as (base, _):
        s = base.with_section("processors", app_id=f"bench-notify-{uuid.uuid4().hex[:6]}")
        s = s.with_section("notifications", delay_min_s=args.delay_min_s, delay_max_s=args.delay_max_s)
        ensure_topics(s.kafka)
        channel_id = str(uuid.uuid4())
        users = [str(uuid.uuid4()) for _ in range(args.followers)]
        produce_follows(s, channel_id, users, args.engaged)
        reference_s = reference_produce_s(s, channel_id, users)
        client = redis.Redis.from_url(s.valkey.url)
        key = f"{s.valkey.key_prefix}notify:followers:{channel_id}"
        with open(tmp / "processors.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "infra.cli", "run", "processors"],
                                    env=child_env(s, os.environ), stdout=log, stderr=subprocess.STDOUT)
        delivered: list[tuple[int, int]] = []
        stop = threading.Event()
        reader = threading.Thread(target=collect_deliveries, args=(s, args.followers, delivered, stop), daemon=True)
        try:
            wait(lambda: client.exists(ready_key(s)), 120, "the processors", proc)
            wait(lambda: client.scard(key) >= args.followers, args.timeout_s, "the follower index", proc)
            views = f"{s.valkey.key_prefix}view:followers:{channel_id}"
            wait(lambda: client.zcard(views) >= args.followers, args.timeout_s, "the follow views", proc)
            wait(lambda: cpu_share(proc.pid) < QUIET_CPU, args.timeout_s, "the processors to go quiet", proc)
            before = memory_mb(proc.pid)
            reader.start()
            producer = EventProducer(s.kafka, make_serde(s))
            started_at = int(time.time() * 1000)
            producer.send_sync(StreamStarted(occurred_at=started_at, stream_id=str(uuid.uuid4()),
                                             channel_id=channel_id, title="bench", ingest_host="bench"), channel_id)
            t0 = time.monotonic()
            wait(lambda: client.exists(f"{s.valkey.key_prefix}notify:last:{channel_id}"), args.timeout_s,
                 "the fan-out plan", proc)
            plan_s = time.monotonic() - t0
            wait(lambda: len(delivered) >= args.followers, args.timeout_s, "every delivery", proc)
            after = memory_mb(proc.pid)
            producer.close()
        finally:
            stop.set()
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            client.close()
        offsets = sorted((at - started_at) / 1000 for at, _ in delivered[:args.followers])
        late = sorted(max(0, at - due) / 1000 for at, due in delivered[:args.followers])
        per_second = Counter(int(o) for o in offsets)
        return {"bench": "notifications", "followers": args.followers, "engaged": args.engaged,
                "delay_s": [args.delay_min_s, args.delay_max_s], "plan_s": round(plan_s, 2),
                "queued_per_s": round(args.followers / plan_s),
                "delivery_s": {"first": round(offsets[0], 2), "median": round(statistics.median(offsets), 2),
                               "last": round(offsets[-1], 2)},
                "late_s": {"p50": round(statistics.median(late), 2), "p99": round(late[int(0.99 * (len(late) - 1))], 2),
                           "max": round(late[-1], 2)},
                "late_max_s_by_due_10s": late_by_due(delivered[:args.followers], started_at),
                "delivered_peak_per_s": max(per_second.values()),
                "processor_rss_mb_before": before["rss_mb"], "processor_rss_mb": after["rss_mb"],
                "processor_peak_rss_mb": after["peak_rss_mb"],
                "reference_produce_s": round(reference_s, 2),
                "aim": {"plan_s": 10, "processor_mb": 300}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--followers", type=int, default=200_000)
    parser.add_argument("--engaged", type=int, default=2_000)
    parser.add_argument("--delay-min-s", type=float, default=60.0)
    parser.add_argument("--delay-max-s", type=float, default=120.0)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="glasscast-bench-notify-") as tmp:
        print(json.dumps(run(args, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()

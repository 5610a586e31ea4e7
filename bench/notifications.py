"""Go-live fan-out for a big channel: plan time, delivery spread, log throughput and processor memory.

Starts an embedded broker, registry and Valkey, puts ``--followers`` synthetic
``Followed`` events (notifications on) for one channel on ``social.follows``,
and marks ``--engaged`` of them as recent viewers with a signed-in Heartbeat.
Then one ``glasscast run processors`` child folds them into its index, and a
``StreamStarted`` of the channel starts the fan-out.  Reported:

  * ``plan_s``: from the StreamStarted on the log to the planner recording the
    broadcast as notified, which it does only once every NotificationQueued was
    acknowledged by the log (``processors/notifications/planner.py``);
  * ``queued_per_s``: NotificationQueued records into the log per second of planning;
  * ``delivery_s``: first / median / last in-app delivery after the start
    (the first tier at once, the rest spread over ``--delay-min-s``..``--delay-max-s``);
  * ``delivered_peak_per_s``: the most in-app deliveries in one second;
  * the processor's RSS at the end and its peak (``VmHWM``).

Prints one JSON line.  The aim (issue 14): planning under 10 s and the processor under 300 MB.
"""

from __future__ import annotations

import argparse
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

import redis  # noqa: E402

from bench.backbone import embedded_backbone  # noqa: E402
from infra.settings import Settings, child_env  # noqa: E402
from schemas.records.notification import NotificationDelivered  # noqa: E402
from schemas.records.social import Followed  # noqa: E402
from schemas.records.stream import StreamStarted  # noqa: E402
from schemas.records.viewer import Heartbeat  # noqa: E402
from topics.admin import ensure_topics  # noqa: E402
from topics.producer import EventProducer  # noqa: E402
from topics.runtime import make_serde  # noqa: E402
from topics.tools import read_topic  # noqa: E402
from views.readiness import ready_key  # noqa: E402


def memory_mb(pid: int) -> dict[str, float]:
    """Current and peak resident memory of a process, MB (Linux /proc)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
            "peak_rss_mb": round(int(fields["VmHWM"].split()[0]) / 1024, 1)}


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


def collect_deliveries(s: Settings, channel_users: int, out: list[int], stop: threading.Event) -> None:
    """occurred_at of every IN_APP NotificationDelivered, until ``channel_users`` of them arrived."""
    for ev in read_topic(s.kafka, make_serde(s), "notifications", start="beginning",
                         should_stop=lambda: stop.is_set() or len(out) >= channel_users):
        if isinstance(ev.value, NotificationDelivered) and ev.value.delivery == "IN_APP":
            out.append(ev.value.occurred_at)


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    with embedded_backbone(tmp) as (base, _):
        s = base.with_section("processors", app_id=f"bench-notify-{uuid.uuid4().hex[:6]}")
        s = s.with_section("notifications", delay_min_s=args.delay_min_s, delay_max_s=args.delay_max_s)
        ensure_topics(s.kafka)
        channel_id = str(uuid.uuid4())
        users = [str(uuid.uuid4()) for _ in range(args.followers)]
        produce_follows(s, channel_id, users, args.engaged)
        client = redis.Redis.from_url(s.valkey.url)
        key = f"{s.valkey.key_prefix}notify:followers:{channel_id}"
        with open(tmp / "processors.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "infra.cli", "run", "processors"],
                                    env=child_env(s, os.environ), stdout=log, stderr=subprocess.STDOUT)
        delivered: list[int] = []
        stop = threading.Event()
        reader = threading.Thread(target=collect_deliveries, args=(s, args.followers, delivered, stop), daemon=True)
        try:
            wait(lambda: client.exists(ready_key(s)), 120, "the processors", proc)
            wait(lambda: client.scard(key) >= args.followers, args.timeout_s, "the follower index", proc)
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
        offsets = sorted((at - started_at) / 1000 for at in delivered[:args.followers])
        per_second = Counter(int(o) for o in offsets)
        return {"bench": "notifications", "followers": args.followers, "engaged": args.engaged,
                "delay_s": [args.delay_min_s, args.delay_max_s], "plan_s": round(plan_s, 2),
                "queued_per_s": round(args.followers / plan_s),
                "delivery_s": {"first": round(offsets[0], 2), "median": round(statistics.median(offsets), 2),
                               "last": round(offsets[-1], 2)},
                "delivered_peak_per_s": max(per_second.values()),
                "processor_rss_mb_before": before["rss_mb"], "processor_rss_mb": after["rss_mb"],
                "processor_peak_rss_mb": after["peak_rss_mb"],
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

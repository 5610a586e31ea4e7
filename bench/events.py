"""Avro event throughput and latency through topics/, against a bare fastavro + confluent-kafka loop.

Runs its own embedded broker and registry, then in one process:
  * produce N ChatMessageSent events with a bare loop (fastavro schemaless
    encoding + ``Producer.produce``) and through ``EventProducer`` (same
    producer settings), each until every record is acknowledged;
  * consume them back with a bare loop (``poll`` + schemaless decode) and
    through ``EventConsumer``;
  * produce at a paced 1,000 events/s through topics/ while a latency-critical
    ``EventConsumer`` reads them: produce-call-to-consume latency p50/p99.
Prints one JSON line.  ``--events N`` and ``--latency-seconds S`` bound the run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fastavro  # noqa: E402
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

from infra.embedded.tansu import TansuBroker  # noqa: E402
from infra.settings import Settings  # noqa: E402
from topics.admin import ensure_topics  # noqa: E402
from topics.catalogue import TopicSpec  # noqa: E402
from topics.consumer import EventConsumer, consumer_config  # noqa: E402
from topics.producer import EventProducer, producer_config  # noqa: E402
from topics.runtime import make_serde  # noqa: E402

RECORD = "glasscast.chat.ChatMessageSent"


def chat_message(i: int, channel: str) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "occurred_at": 1_790_000_000_000 + i, "message_id": str(uuid.uuid4()),
            "channel_id": channel, "user_id": "9b2f3c1e-1d2a-4c5b-8e9f-0a1b2c3d4e5f", "username": "viewer_42",
            "text": "PogChamp that was a clean run, GG everyone!", "nonce": f"n{i}", "emotes": [], "badges": []}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def drain(consumer: Consumer, topic: str, n: int, decode: Any) -> float:
    start = time.perf_counter()
    got = 0
    while got < n:
        for msg in consumer.consume(10_000, 0.05):
            if msg.error() is None:
                decode(msg.value())
                got += 1
    return time.perf_counter() - start


def bench(settings: Settings, n: int, latency_s: float) -> dict[str, Any]:
    serde = make_serde(settings)
    channel = str(uuid.uuid4())
    bare_topic, typed_topic, lat_topic = (f"bench.{k}.{uuid.uuid4().hex[:6]}" for k in ("bare", "typed", "lat"))
    specs = [TopicSpec(t, "channel_id", (RECORD,), partitions=3) for t in (bare_topic, typed_topic, lat_topic)]
    ensure_topics(settings.kafka, specs)
    parsed = serde.parsed(RECORD)
    values = [chat_message(i, channel) for i in range(n)]

    # Bare loop: schemaless encoding + produce, the same producer settings.
    bare = Producer(producer_config(settings.kafka))
    start = time.perf_counter()
    for i, value in enumerate(values):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, value)
        while True:
            try:
                bare.produce(bare_topic, buf.getvalue(), channel.encode())
                break
            except BufferError:
                bare.poll(0.01)
        if i % 1000 == 0:
            bare.poll(0)
    assert bare.flush(60) == 0
    bare_produce = n / (time.perf_counter() - start)

    typed = EventProducer(settings.kafka, serde)
    serde.prepare(typed_topic, RECORD)
    start = time.perf_counter()
    for value in values:
        typed.produce(RECORD, channel, value, topic=typed_topic)
    assert typed.flush(60) == 0
    typed_produce = n / (time.perf_counter() - start)

    # Consume: bare poll + schemaless decode vs EventConsumer (framing, registry-resolved reader).
    raw = Consumer(consumer_config(settings.kafka, None, **{"enable.partition.eof": False}))
    raw.assign([TopicPartition(bare_topic, p, 0) for p in range(3)])
    bare_consume = n / drain(raw, bare_topic, n, lambda b: fastavro.schemaless_reader(io.BytesIO(b), parsed))
    raw.close()
    ev = EventConsumer(settings.kafka, serde, [typed_topic])
    ev.assign("beginning")
    start = time.perf_counter()
    got = 0
    while got < n:
        if ev.poll(0.05) is not None:
            got += 1
    typed_consume = n / (time.perf_counter() - start)
    ev.close()

    # Latency at 1,000 events/s through topics/.
    sent: dict[str, float] = {}
    latencies: list[float] = []
    lat_consumer = EventConsumer(settings.kafka, serde, [lat_topic])
    lat_consumer.assign("end")
    while lat_consumer._consumer.assignment() == []:
        time.sleep(0.01)
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            event = lat_consumer.poll(0.05)
            if event is not None:
                latencies.append(time.perf_counter() - sent[event.value["nonce"]])

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.5)  # let the assignment's first fetch settle
    rate, total = 1000, int(1000 * latency_s)
    start = time.perf_counter()
    for i in range(total):
        target = start + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        value = chat_message(i, channel)
        value["nonce"] = f"lat{i}"
        sent[value["nonce"]] = time.perf_counter()
        typed.produce(RECORD, channel, value, topic=lat_topic)
    typed.flush(30)
    deadline = time.monotonic() + 10
    while len(latencies) < total and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join()
    lat_consumer.close()
    typed.close()

    ms = [x * 1000 for x in latencies]
    return {
        "bench": "events", "events": n, "record": RECORD,
        "bare_produce_per_s": round(bare_produce), "topics_produce_per_s": round(typed_produce),
        "produce_ratio": round(typed_produce / bare_produce, 3),
        "bare_consume_per_s": round(bare_consume), "topics_consume_per_s": round(typed_consume),
        "consume_ratio": round(typed_consume / bare_consume, 3),
        "latency_rate_per_s": rate, "latency_events": total, "latency_received": len(ms),
        "latency_p50_ms": round(percentile(ms, 0.5), 2) if ms else None,
        "latency_p99_ms": round(percentile(ms, 0.99), 2) if ms else None,
        "fetch_wait_max_ms": settings.kafka.fetch_wait_max_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    args = parser.parse_args()

    from gateways.registry.app import create_registry_app
    from infra.embedded.threaded import serve_app

    with tempfile.TemporaryDirectory() as tmp:
        broker = TansuBroker(Path(tmp) / "broker.log")
        broker.start()
        try:
            s = Settings(data_dir=Path(tmp)).with_section("kafka", bootstrap_servers=broker.bootstrap_servers)
            with serve_app(create_registry_app(s)) as url:
                result = bench(s.with_section("registry", url=url), args.events, args.latency_seconds)
        finally:
            broker.stop()
    result["cpus"] = os.cpu_count()
    print(json.dumps(result))


if __name__ == "__main__":
    main()

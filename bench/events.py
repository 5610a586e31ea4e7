"""Avro event throughput and latency through topics/, against a bare fastavro + confluent-kafka loop.

Runs its own embedded broker and registry, then in one process:
  * produce N ChatMessageSent events with a bare loop (prebuilt Avro dicts,
    fastavro schemaless encoding + ``Producer.produce``) and through
    ``EventProducer`` (prebuilt typed records, so each one pays its
    ``to_avro()`` as an application's would; same producer settings), each
    until every record is acknowledged;
  * consume them back with a bare loop (``poll`` + schemaless decode to a dict)
    and through ``EventConsumer`` (decode plus the typed record built from it);
  * produce at a paced 1,000 events/s through topics/ while a latency-critical
    ``EventConsumer`` reads them: produce-call-to-consume latency p50/p99.
Prints one JSON line.  ``--events N`` and ``--latency-seconds S`` bound the run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
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
from schemas.records.chat import ChatMessageSent  # noqa: E402
from topics.admin import ensure_topics  # noqa: E402
from topics.catalogue import TopicSpec  # noqa: E402
from topics.consumer import EventConsumer, consumer_config  # noqa: E402
from topics.producer import EventProducer, producer_config  # noqa: E402
from topics.runtime import make_serde  # noqa: E402

RECORD = ChatMessageSent.RECORD
PARTITIONS = 3
BATCH = 100  # records per consume() call, as a processing loop takes them


def chat_message(i: int, channel: str, nonce: str | None = None) -> ChatMessageSent:
    return ChatMessageSent(occurred_at=1_790_000_000_000 + i, message_id=str(uuid.uuid4()), channel_id=channel,
                           user_id="9b2f3c1e-1d2a-4c5b-8e9f-0a1b2c3d4e5f", username="viewer_42",
                           text="PogChamp that was a clean run, GG everyone!", nonce=nonce or f"n{i}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def drain(consumer: Consumer, topic: str, n: int, decode: Any) -> float:
    start = time.perf_counter()
    got = 0
    while got < n:
        for msg in consumer.consume(BATCH, 0.05):
            if msg.error() is None:
                decode(msg.value())
                got += 1
    return time.perf_counter() - start


def produce_bare(bare: Producer, parsed: Any, topic: str, channel: str, values: list[dict[str, Any]]) -> float:
    """The reference: fastavro schemaless encoding + Producer.produce, same producer settings."""
    key = channel.encode()
    start = time.perf_counter()
    for i, value in enumerate(values):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, value)
        while True:
            try:
                bare.produce(topic, buf.getvalue(), key)
                break
            except BufferError:
                bare.poll(0.01)
        if i % 1000 == 0:
            bare.poll(0)
    assert bare.flush(60) == 0
    return len(values) / (time.perf_counter() - start)


def produce_typed(producer: EventProducer, topic: str, channel: str, records: list[ChatMessageSent]) -> float:
    producer.serde.prepare(topic, RECORD)
    start = time.perf_counter()
    for record in records:
        producer.produce(record, channel, topic=topic)
    assert producer.flush(60) == 0
    return len(records) / (time.perf_counter() - start)


def consume_bare(settings: Settings, parsed: Any, topic: str, n: int) -> float:
    raw = Consumer(consumer_config(settings.kafka, None, **{"enable.partition.eof": False}))
    raw.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    try:
        return n / drain(raw, topic, n, lambda b: fastavro.schemaless_reader(io.BytesIO(b), parsed))
    finally:
        raw.close()


def consume_typed(settings: Settings, serde: Any, topic: str, n: int) -> float:
    no_eof: dict[str, Any] = {"enable.partition.eof": False}
    consumer = EventConsumer(settings.kafka, serde, [topic], **no_eof)
    consumer.assign("beginning")
    try:
        start = time.perf_counter()
        got = 0
        while got < n:
            got += len(consumer.consume(BATCH, 0.05))
        return n / (time.perf_counter() - start)
    finally:
        consumer.close()


def latency(settings: Settings, serde: Any, producer: EventProducer, topic: str, channel: str,
            seconds: float, rate: int = 1000) -> list[float]:
    """Produce-call to consume latency (ms) at a paced ``rate`` through topics/."""
    sent: dict[str, float] = {}
    latencies: list[float] = []
    consumer = EventConsumer(settings.kafka, serde, [topic])
    consumer.assign("end")
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            event = consumer.poll(0.05)
            if event is not None:
                assert isinstance(event.value, ChatMessageSent) and event.value.nonce is not None
                latencies.append((time.perf_counter() - sent[event.value.nonce]) * 1000)

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.5)  # let the assignment's first fetch settle
    total = int(rate * seconds)
    start = time.perf_counter()
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        record = chat_message(i, channel, nonce=f"lat{i}")
        sent[f"lat{i}"] = time.perf_counter()
        producer.produce(record, channel, topic=topic)
    producer.flush(30)
    deadline = time.monotonic() + 10
    while len(latencies) < total and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join()
    consumer.close()
    return latencies


def bench(settings: Settings, n: int, rounds: int, latency_s: float) -> dict[str, Any]:
    serde = make_serde(settings)
    channel = str(uuid.uuid4())
    run = uuid.uuid4().hex[:6]
    names = {(kind, r): f"bench.{kind}{r}.{run}" for kind in ("bare", "typed") for r in range(rounds)}
    lat_topic = f"bench.latency.{run}"
    ensure_topics(settings.kafka, [TopicSpec(t, "channel_id", (RECORD,), partitions=PARTITIONS)
                                   for t in [*names.values(), lat_topic]])
    parsed = serde.parsed(RECORD)
    records = [chat_message(i, channel) for i in range(n)]
    values = [r.to_avro() for r in records]  # the bare loop's input: what it would have built instead
    # Both producers live for the whole run and are connected before the first timed round, so
    # neither round pays a connection the other does not.
    producer = EventProducer(settings.kafka, serde)
    bare = Producer(producer_config(settings.kafka))
    producer.metadata()
    bare.list_topics(timeout=5)
    results: dict[str, list[float]] = {"bare_p": [], "typed_p": [], "bare_c": [], "typed_c": []}
    # Alternate the two paths round by round so machine noise hits both alike.
    for r in range(rounds):
        results["bare_p"].append(produce_bare(bare, parsed, names[("bare", r)], channel, values))
        results["typed_p"].append(produce_typed(producer, names[("typed", r)], channel, records))
        results["bare_c"].append(consume_bare(settings, parsed, names[("bare", r)], n))
        results["typed_c"].append(consume_typed(settings, serde, names[("typed", r)], n))
    ms = latency(settings, serde, producer, lat_topic, channel, latency_s)
    producer.close()
    serde.close()
    med = {k: statistics.median(v) for k, v in results.items()}
    return {
        "bench": "events", "events_per_round": n, "rounds": rounds, "record": RECORD,
        "bare_produce_per_s": round(med["bare_p"]), "topics_produce_per_s": round(med["typed_p"]),
        "produce_ratio": round(med["typed_p"] / med["bare_p"], 3),
        "bare_consume_per_s": round(med["bare_c"]), "topics_consume_per_s": round(med["typed_c"]),
        "consume_ratio": round(med["typed_c"] / med["bare_c"], 3),
        "latency_rate_per_s": 1000, "latency_events": int(1000 * latency_s), "latency_received": len(ms),
        "latency_p50_ms": round(percentile(ms, 0.5), 2) if ms else None,
        "latency_p99_ms": round(percentile(ms, 0.99), 2) if ms else None,
        "fetch_wait_max_ms": settings.kafka.fetch_wait_max_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events per round and path")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    args = parser.parse_args()

    from infra.embedded.registry.app import create_registry_app
    from infra.embedded.threaded import serve_app

    with tempfile.TemporaryDirectory() as tmp:
        broker = TansuBroker(Path(tmp) / "broker.log")
        broker.start()
        try:
            s = Settings(data_dir=Path(tmp)).with_section("kafka", bootstrap_servers=broker.bootstrap_servers)
            with serve_app(create_registry_app(s)) as url:
                result = bench(s.with_section("registry", url=url), args.events, args.rounds,
                               args.latency_seconds)
        finally:
            broker.stop()
    result["cpus"] = os.cpu_count()
    print(json.dumps(result))


if __name__ == "__main__":
    main()

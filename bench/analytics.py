"""Analytics: sink load rate, creator analytics latency over 10 million heartbeats, ``glasscast sql`` time.

Phases, on an embedded broker, Valkey and registry (``bench/backbone.py``):

1. **Sink.** ``--events`` heartbeats are produced to ``viewer.heartbeats``,
   then the analytics sink (``processors/analytics/sink.py``, in this process,
   on chDB, batches of 50,000) loads the backlog: ``sink_rows_per_s`` is rows
   loaded per second from the sink's start (its tables, positions and
   assignment included: ``sink_start_s``) to the last row in the table, and
   ``sink_rows_per_s_after_start``.  The reference, in the same run:
   ``reference_consume_per_s``, a bare librdkafka consumer reading the same
   records and doing nothing with them (the broker's side).  The sink's
   parts, alone on 100,000 of the records: ``avro_container_per_s`` (cutting
   the bodies into a container, in Python) and ``chdb_avro_insert_rows_per_s``
   (the engine reading it into the table, materialised views included); and
   the Python path those records no longer take: ``python_decode_per_s``
   (Avro to typed records) and ``chdb_json_insert_rows_per_s`` (rows through
   ``ChdbStore.insert``, as JSON).
2. **10 million heartbeats.** Generated with ``INSERT ... SELECT FROM numbers()``
   straight into chDB (not through Kafka; the materialised views fill the
   aggregates as they would from the sink): ``--channels`` channels over the
   last 7 days, a stream per channel per day, 3,000 sessions per channel, and
   500,000 chat messages.  ``generate_s`` is how long that took, ``optimize_s``
   the merges after it (``OPTIMIZE ... FINAL``: a store that has run a while
   has its parts merged, and merges left running would share the CPU with the
   latency phase).
3. **The endpoint.** The analytics process (``glasscast run analytics``) owns
   that data directory and a gateway (``glasscast run gateway``) answers
   ``GET /v1/streams/{id}/analytics`` (a 24 h stream) and
   ``GET /v1/channels/{id}/analytics`` (the whole week) for the owner, whose
   user, channel and stream are put straight into the views.  ``--requests``
   sequential requests each, after a warm-up, once the process's own sink has
   caught up with the log (``sink_catch_up_s``): p50/p99 in ms (aim: p99
   under 200 ms).
4. **``glasscast sql``.** A week-long aggregate over the raw heartbeats (per
   channel: beats, sessions, mean buffer) and the README's "top streams by
   watch time last week": the wall time of the command (a Python start
   included) and the query alone through the store.
5. **Recommendations.** If ``bench/recommendations.py`` has
   ``async def measure() -> dict[str, float]``, its figures (hit rate at 10
   against the popularity baseline) under ``recommendations``.

Prints one JSON line.  The aims (the issue): at least 200,000 rows/s loaded,
p99 under 200 ms, hit rate at least twice the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition  # noqa: E402

from bench.backbone import embedded_backbone  # noqa: E402
from gateways.auth import issue_token  # noqa: E402
from infra.embedded.process import free_port  # noqa: E402
from infra.settings import Settings, child_env  # noqa: E402
from processors.analytics.avro_rows import LOADS, container  # noqa: E402
from processors.analytics.rows import row_for  # noqa: E402
from processors.analytics.sink import AnalyticsSink  # noqa: E402
from schemas.records.channel import ChannelCreated  # noqa: E402
from schemas.records.stream import StreamEnded, StreamStarted  # noqa: E402
from schemas.records.user import UserRegistered  # noqa: E402
from schemas.records.viewer import Heartbeat  # noqa: E402
from topics.admin import ensure_topics  # noqa: E402
from topics.producer import EventProducer  # noqa: E402
from topics.runtime import make_serde  # noqa: E402
from views.analytics.chdb_store import ChdbStore  # noqa: E402
from views.analytics.service_store import ServiceStore  # noqa: E402
from views.analytics.tables import HEARTBEATS, create_tables  # noqa: E402
from views.fold import Applied  # noqa: E402
from views.store import ViewStore  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DAY_MS = 86_400_000
HEARTBEAT_ROWS = 10_000_000
CHAT_ROWS = 500_000
SESSIONS = 3000
# The generated rows come from no topic: a partition no topic has, so the sink's positions ignore them (rows
# claiming partition 0 would tell the sink that partition's offsets up to ten million are already loaded).
GENERATED_PARTITION = 4_000_000_000

WEEK_SQL = """SELECT channel_id, count() AS beats, uniq(session_id) AS sessions,
       round(avg(buffer_health_s), 2) AS buffer_s
FROM heartbeats WHERE occurred_at >= now() - INTERVAL 7 DAY
GROUP BY channel_id ORDER BY beats DESC LIMIT 10"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 2)


def produce_heartbeats(settings: Settings, count: int) -> float:
    """``count`` heartbeats on ``viewer.heartbeats``; the rate they were produced at."""
    serde = make_serde(settings)
    producer = EventProducer(settings.kafka, serde)
    now = int(time.time() * 1000)
    started = time.perf_counter()
    try:
        for i in range(count):
            channel = f"bench-{i % 20}"
            producer.produce(Heartbeat(occurred_at=now - count + i, channel_id=channel, stream_id=channel + "-s",
                                       session_id=f"{channel}-{i % SESSIONS}", rendition="source",
                                       buffer_health_s=2.0, bitrate_kbps=3000), channel)
        producer.flush(120)
    finally:
        producer.close()
    elapsed = time.perf_counter() - started
    serde.close()
    return count / elapsed


def raw_records(settings: Settings, limit: int) -> list[bytes]:
    """Up to ``limit`` raw heartbeat records from the topic (the reference read, and the parts' input)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "fetch.queue.backoff.ms": 20})
    parts = consumer.list_topics("viewer.heartbeats", timeout=30).topics["viewer.heartbeats"].partitions
    consumer.assign([TopicPartition("viewer.heartbeats", p, OFFSET_BEGINNING) for p in sorted(parts)])
    out: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while len(out) < limit and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 1.0):
                if msg.error() is None and msg.value():
                    out.append(msg.value() or b"")
    finally:
        consumer.close()
    return out[:limit]


async def sink_phase(settings: Settings, events: int) -> dict[str, Any]:
    produced_per_s = produce_heartbeats(settings, events)
    s = settings.with_section("analytics", batch_max_rows=50_000, batch_max_ms=1000)
    store = ChdbStore(str(settings.data_dir / "sink-chdb"))
    sink = AnalyticsSink(s, store, make_serde(settings))
    stop = asyncio.Event()
    started = time.perf_counter()
    await sink.start()
    start_s = time.perf_counter() - started
    task = asyncio.create_task(sink.run(stop))
    while True:
        loaded = (await store.query("SELECT count() FROM heartbeats")).scalar()
        if isinstance(loaded, int) and loaded >= events:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    await sink.close()
    # The reference: a bare librdkafka consumer reading the same records and doing nothing with them.
    t = time.perf_counter()
    records = raw_records(settings, events)
    reference_per_s = len(records) / (time.perf_counter() - t)
    # The sink's parts, alone, on 100,000 of the records: what it does (the Avro container, the engine reading
    # it into the table) and what it no longer does for them (decoding in Python, the JSON rows insert).
    records = records[:100_000]
    serde = make_serde(settings)
    schema_id = int.from_bytes(records[0][1:5], "big")
    load_as = LOADS[serde.written_as(schema_id)[0]]
    t = time.perf_counter()
    data = container(serde.writer_schema(schema_id), [(r, 1, 20_000_000 + i) for i, r in enumerate(records)],
                     os.urandom(16))
    container_per_s = len(records) / (time.perf_counter() - t)
    t = time.perf_counter()
    await store.insert_avro("heartbeats", HEARTBEATS.columns, load_as.structure, load_as.select, data)
    avro_insert_per_s = len(records) / (time.perf_counter() - t)
    t = time.perf_counter()
    decoded = [serde.decode(r) for r in records]
    decode_per_s = len(decoded) / (time.perf_counter() - t)
    serde.close()
    rows = []
    for i, record in enumerate(decoded):
        made = row_for(record)
        assert made is not None
        rows.append((*made[1], 0, 10_000_000 + i))
    t = time.perf_counter()
    await store.insert("heartbeats", HEARTBEATS.columns, rows)
    insert_per_s = len(rows) / (time.perf_counter() - t)
    await store.close()
    return {"events": events, "produced_per_s": round(produced_per_s), "sink_rows_per_s": round(events / elapsed),
            "sink_rows_per_s_after_start": round(events / (elapsed - start_s)), "sink_start_s": round(start_s, 2),
            "reference_consume_per_s": round(reference_per_s), "avro_container_per_s": round(container_per_s),
            "chdb_avro_insert_rows_per_s": round(avro_insert_per_s), "python_decode_per_s": round(decode_per_s),
            "chdb_json_insert_rows_per_s": round(insert_per_s)}


async def generate(path: str, channels: int, channel: str, stream: str) -> dict[str, Any]:
    """10 million heartbeats and 500,000 chat messages over the last week, straight into chDB.

    Channel 0 is ``channel`` (a real id, for the API), and its last day's stream is ``stream``.
    """
    store = ChdbStore(path)
    await create_tables(store, 30)
    started = time.perf_counter()
    week_ms = 7 * DAY_MS
    channel_of = f"if(number % {channels} = 0, {{channel:String}}, concat('ch-', toString(number % {channels})))"
    params: dict[str, object] = {"end": int(time.time() * 1000) - 60_000, "channel": channel, "stream": stream}
    await store.query(f"""
INSERT INTO heartbeats
SELECT fromUnixTimestamp64Milli(toInt64({{end:Int64}} - {week_ms} + intDiv(number * {week_ms}, {HEARTBEAT_ROWS})),
                                'UTC') AS occurred_at,
       {channel_of} AS channel_id,
       if(number % {channels} = 0 AND intDiv(number * 7, {HEARTBEAT_ROWS}) = 6, {{stream:String}},
          concat(channel_id, '-d', toString(intDiv(number * 7, {HEARTBEAT_ROWS})))) AS stream_id,
       concat(channel_id, '-v', toString(intDiv(number, {channels}) % {SESSIONS})) AS session_id,
       '' AS user_id,
       ['source', '720p30', '480p30', '360p30'][1 + number % 4] AS rendition,
       if(number % 50 = 0, 0.1, 3.0) AS buffer_health_s, 3000 AS bitrate_kbps, 40 AS latency_ms,
       0 AS dropped_frames, 'LIVE' AS playback, '' AS clip_id, {GENERATED_PARTITION} AS src_partition,
       number AS src_offset
FROM numbers({HEARTBEAT_ROWS})""", params)
    await store.query(f"""
INSERT INTO chat_messages
SELECT fromUnixTimestamp64Milli(toInt64({{end:Int64}} - {week_ms} + intDiv(number * {week_ms}, {CHAT_ROWS})), 'UTC'),
       {channel_of}, toString(number), concat('u', toString(number % 5000)), 'u', 'hello', 0, [],
       {GENERATED_PARTITION}, number
FROM numbers({CHAT_ROWS})""", params)
    generate_s = time.perf_counter() - started
    # A store that has been running a while has its parts merged; right after a bulk load its merges would
    # still run during the latency phase, so they are done first (and timed).
    started = time.perf_counter()
    for table in ("heartbeats", "chat_messages", "viewer_minutes", "rendition_minutes", "watch_sessions",
                  "chat_minutes"):
        await store.query(f"OPTIMIZE TABLE {table} FINAL")
    optimize_s = time.perf_counter() - started
    count = (await store.query("SELECT count() FROM heartbeats")).scalar()
    await store.close()
    return {"heartbeats": count, "chat_messages": CHAT_ROWS, "channels": channels, "generate_s": round(generate_s, 1),
            "optimize_s": round(optimize_s, 1)}


@contextlib.contextmanager
def child(settings: Settings, service: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "infra.cli", "run", service], cwd=ROOT,
                                env=child_env(settings, os.environ), stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_ok(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


async def owner_views(settings: Settings, channel: str, stream: str, start_ms: int, end_ms: int) -> str:
    """The owner, the channel and one ended stream straight into the views; the owner's token."""
    user = str(uuid.uuid4())
    client = aioredis.Redis.from_url(settings.valkey.url)
    try:
        views = ViewStore(client, settings.valkey.key_prefix)
        now = int(time.time() * 1000)
        await views.apply(Applied(1, UserRegistered(occurred_at=now, user_id=user, username="bench_owner")))
        await views.apply(Applied(2, ChannelCreated(occurred_at=now, channel_id=channel, owner_user_id=user,
                                                    name="bench_channel", title="bench", stream_key_hash="x")))
        await views.apply(Applied(3, StreamStarted(occurred_at=start_ms, stream_id=stream, channel_id=channel,
                                                   title="bench", ingest_host="bench")))
        await views.apply(Applied(4, StreamEnded(occurred_at=end_ms, stream_id=stream, channel_id=channel,
                                                 started_at=start_ms, duration_ms=end_ms - start_ms)))
    finally:
        await client.aclose()
    auth = settings.auth
    return issue_token(str(auth.jwt_secret), auth.jwt_issuer, user, "bench_owner", int(time.time()), 3600)


def latencies(url: str, headers: dict[str, str], requests: int) -> dict[str, float]:
    times: list[float] = []
    with httpx.Client(headers=headers, timeout=60) as http:
        for i in range(requests + 5):
            t = time.perf_counter()
            r = http.get(url)
            elapsed = (time.perf_counter() - t) * 1000
            if r.status_code != 200:
                raise RuntimeError(f"{url}: {r.status_code} {r.text[:300]}")
            if i >= 5:  # the first few warm the caches
                times.append(elapsed)
    return {"p50_ms": pct(times, 50), "p99_ms": pct(times, 99), "mean_ms": round(statistics.fmean(times), 2)}


def readme_top_streams() -> str:
    import re

    return str(re.findall(r'glasscast sql "(.*?)"', (ROOT / "README.md").read_text(), flags=re.DOTALL)[0])


async def serve_phase(settings: Settings, tmp: Path, requests: int, channel: str, stream: str,
                      events: int) -> dict[str, Any]:
    url = f"http://glasscast:{secrets.token_urlsafe(16)}@127.0.0.1:{free_port()}"
    # One owner asks every request: above the per-user bound a deployment keeps (120 a minute by default).
    s = settings.with_section("analytics", url=url, reports_per_minute=1_000_000)
    out: dict[str, Any] = {}
    with child(s, "analytics", tmp / "analytics.log") as analytics:
        wait_ok(f"http://127.0.0.1:{url.rsplit(':', 1)[1]}/healthz", analytics, tmp / "analytics.log")
        store = ServiceStore(url)
        # Its sink first loads what the sink phase produced (it reads the log from the start): measure once it
        # has caught up, as a running platform's would have.
        started = time.perf_counter()
        while True:
            loaded = (await store.query("SELECT count() FROM heartbeats WHERE startsWith(channel_id, 'bench-')")
                      ).scalar()
            if isinstance(loaded, int) and loaded >= events:
                break
            if time.perf_counter() - started > 300:
                raise RuntimeError(f"the analytics process's sink loaded {loaded} of {events} heartbeats in 300 s")
            await asyncio.sleep(0.2)
        out["sink_catch_up_s"] = round(time.perf_counter() - started, 1)
        span = await store.query("SELECT toUnixTimestamp64Milli(min(first_at)), toUnixTimestamp64Milli(max(last_at)) "
                                 "FROM watch_sessions WHERE channel_id = {c:String} AND stream_id = {s:String}",
                                 {"c": channel, "s": stream})
        start_ms, end_ms = (int(str(v)) for v in span.rows[0])
        token = await owner_views(s, channel, stream, start_ms, end_ms)
        with child(s, "gateway", tmp / "gateway.log") as gateway:
            base = f"http://127.0.0.1:{s.gateway.port}"
            wait_ok(f"{base}/healthz", gateway, tmp / "gateway.log")
            headers = {"Authorization": f"Bearer {token}"}
            out["stream_24h"] = latencies(f"{base}/v1/streams/{stream}/analytics", headers, requests)
            week_from = int(time.time() * 1000) - 7 * DAY_MS
            out["channel_week"] = latencies(f"{base}/v1/channels/{channel}/analytics?from={week_from}", headers,
                                            requests)
            body = httpx.get(f"{base}/v1/channels/{channel}/analytics?from={week_from}", headers=headers,
                             timeout=60).json()
            out["channel_week_minutes"] = len(body["viewers_per_minute"])
            out["channel_week_peak_viewers"] = body["peak_viewers"]
        # glasscast sql: the command's wall time (a Python start included) and the query alone.
        env = child_env(s, os.environ)
        for name, sql in (("week_aggregate", WEEK_SQL), ("top_streams_last_week", readme_top_streams())):
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "infra.cli", "sql", sql], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=300)
            wall = time.perf_counter() - t
            if done.returncode != 0:
                raise RuntimeError(f"glasscast sql: {done.stderr}")
            t = time.perf_counter()
            await store.query(sql, readonly=True)
            out[f"sql_{name}"] = {"command_s": round(wall, 2), "query_ms": round((time.perf_counter() - t) * 1000)}
        await store.close()
    return out


async def recommendations() -> dict[str, Any] | None:
    """``bench/recommendations.py``'s figures, when it is there; a failure there is reported, not raised."""
    if not (ROOT / "bench" / "recommendations.py").exists():
        return None
    try:
        module = importlib.import_module("bench.recommendations")
        measure = getattr(module, "measure", None)
        if measure is None or not inspect.iscoroutinefunction(measure):
            return None
        figures: dict[str, Any] = await measure()
    except Exception as exc:  # another bench's failure: say so in the line, keep this bench's figures
        return {"error": f"{type(exc).__name__}: {exc}"}
    return figures


async def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"bench": "analytics"}
    with tempfile.TemporaryDirectory(prefix="glasscast-analytics-") as tmp_name:
        tmp = Path(tmp_name)
        with embedded_backbone(tmp) as (settings, _valkey):
            ensure_topics(settings.kafka)
            result["sink"] = await sink_phase(settings, args.events)
            channel, stream = str(uuid.uuid4()), str(uuid.uuid4())
            result["store"] = await generate(str(settings.data_dir / "analytics"), args.channels, channel, stream)
            result["endpoint"] = await serve_phase(settings, tmp, args.requests, channel, stream, args.events)
    result["recommendations"] = await recommendations()
    result["aims"] = {"sink_rows_per_s": 200_000, "endpoint_p99_ms": 200, "hit_rate_vs_baseline": 2.0}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=300_000, help="heartbeats the sink loads")
    parser.add_argument("--channels", type=int, default=50, help="channels of the 10 million heartbeats")
    parser.add_argument("--requests", type=int, default=200, help="requests per endpoint")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()

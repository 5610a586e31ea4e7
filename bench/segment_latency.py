"""GopAvailable-to-SegmentReady latency through a real media worker, for bench/transcode.py.

An embedded broker, registry and Valkey; a ``TranscodeWorker`` (consumer group,
process pool of two) in this process; GOPs stored in a blob store and
announced with ``GopAvailable`` at the pace a live stream produces them; a
latency-critical consumer on ``media.segments``.  For each GOP: time from the
broker acknowledging its GopAvailable to the source (passthrough) SegmentReady
being consumed, and to the last rendition of the full ladder.

This measures the whole-GOP path, so the worker runs with
``transcode.remux=True`` (it remuxes source and audio from each GOP, as it did
before the ingest cut them into LL-HLS parts itself) and
``transcode.live_parts=False`` (the scaled rungs are transcoded per GOP by
the process pool, not part by part from ``media.parts``).  With the defaults
no source SegmentReady would come from the worker and the scaled rungs would
wait for source parts that nothing here publishes.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from infra.embedded.registry.app import create_registry_app
from infra.embedded.tansu import TansuBroker
from infra.embedded.threaded import serve_app
from infra.embedded.valkey import ValkeyProcess
from infra.settings import Settings
from media.blob_stores import open_store
from media.ingest.pipeline import gop_key
from media.transcode.worker import TranscodeWorker
from schemas.records.media import GopAvailable, SegmentReady
from topics.admin import ensure_topics
from topics.consumer import EventConsumer
from topics.producer import EventProducer
from topics.runtime import make_serde

Job = tuple[bytes, int, int, int]  # (GOP FLV, seq, pts ms, duration ms)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))], 1)


def _summary(values: list[float]) -> dict[str, float]:
    return {"p50": _pct(values, 0.5), "p95": _pct(values, 0.95), "p99": _pct(values, 0.99),
            "mean": round(statistics.fmean(values), 1), "n": len(values)}


async def _run(settings: Settings, jobs: list[Job], width: int, height: int, fps: float,
               renditions: int) -> dict[str, Any]:
    await asyncio.to_thread(ensure_topics, settings.kafka)
    serde = make_serde(settings)
    producer = EventProducer(settings.kafka, serde)
    client = aioredis.Redis.from_url(settings.valkey.url)
    gops = open_store(settings, "blobs")
    worker = TranscodeWorker(settings, serde, gops, open_store(settings, "origin"), client)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    arrivals: dict[tuple[int, str], float] = {}
    consumer = EventConsumer(settings.kafka, serde, ["media.segments"])
    consumer.assign("end")
    reading = threading.Event()
    reading.set()

    def read() -> None:
        while reading.is_set():
            event = consumer.poll(0.05)
            if event is not None and isinstance(event.value, SegmentReady):
                arrivals.setdefault((event.value.seq, event.value.rendition), time.perf_counter())

    reader = threading.Thread(target=read)
    reader.start()
    stream_id, channel_id = str(uuid.uuid4()), str(uuid.uuid4())
    acked: dict[int, float] = {}
    # The group must own media.gops before the first GOP (a new group waits ~half the session timeout).
    while not worker.consumer.assignment():
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    for flv_bytes, seq, pts, duration in jobs:
        ref = await asyncio.to_thread(gops.put, gop_key(stream_id, seq), flv_bytes)
        gop = GopAvailable(
            occurred_at=int(time.time() * 1000), stream_id=stream_id, channel_id=channel_id, seq=seq, pts=pts,
            duration=duration, time_base_num=1, time_base_den=1000, byte_size=len(flv_bytes), blob_ref=ref,
            container="flv", codec_config_ref=None, video_codec="avc1", width=width, height=height, fps=fps,
            audio_codec="mp4a.40.2", audio_sample_rate_hz=48000, audio_channels=2, discontinuity=False)
        await producer.send(gop, stream_id)
        acked[seq] = time.perf_counter()
        await asyncio.sleep(duration / 1000)  # a live stream: one GOP per GOP duration
    deadline = time.monotonic() + 60
    while len(arrivals) < len(jobs) * renditions and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    reading.clear()
    reader.join()
    stop.set()
    await task
    await asyncio.to_thread(worker.close)
    await asyncio.to_thread(producer.close, 10.0)
    consumer.close()
    await client.aclose()
    serde.close()
    passthrough = [(arrivals[(seq, "source")] - t) * 1000 for seq, t in acked.items() if (seq, "source") in arrivals]
    full = [(max(v for (s, _), v in arrivals.items() if s == seq) - t) * 1000 for seq, t in acked.items()
            if sum(1 for (s, _) in arrivals if s == seq) == renditions]
    return {"passthrough": _summary(passthrough) if passthrough else None,
            "full_ladder": _summary(full) if full else None,
            "segments_missing": len(jobs) * renditions - len(arrivals)}


def measure(jobs: list[Job], tmp: Path, width: int, height: int, fps: float, renditions: int) -> dict[str, Any]:
    """Run the pipeline on its own embedded services; the latency summary."""
    broker = TansuBroker(tmp / "e2e-broker.log")
    valkey = ValkeyProcess(tmp / "e2e-valkey", persist=False)
    broker.start()
    valkey.start()
    try:
        s = Settings(data_dir=tmp / "e2e").with_section("kafka", bootstrap_servers=broker.bootstrap_servers)
        s = s.with_section("valkey", url=valkey.url).with_section("ladder", mode="full")
        # The whole-GOP path (see the module docstring): remuxes from the worker, rungs per GOP.
        s = s.with_section("transcode", workers=2, remux=True, live_parts=False)
        with serve_app(create_registry_app(s)) as url:
            return asyncio.run(_run(s.with_section("registry", url=url), jobs, width, height, fps, renditions))
    finally:
        valkey.stop()
        broker.stop()

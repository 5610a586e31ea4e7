"""``glasscast run media-worker``: a media worker as a process of its own."""

from __future__ import annotations

import asyncio
import signal

import redis.asyncio as aioredis

from infra.settings import Settings
from media.blob_stores import open_store
from media.transcode.worker import TranscodeWorker
from media.vod.worker import VodWorker
from schemas.records.media import PartReady, SegmentReady
from topics.admin import ensure_topics
from topics.runtime import make_serde

VALKEY_TIMEOUT_S = 5.0


async def serve_worker(settings: Settings) -> None:
    """Transcode GOPs until SIGINT/SIGTERM; in-flight GOPs finish or are left for redelivery."""
    await asyncio.to_thread(ensure_topics, settings.kafka)
    serde = make_serde(settings)
    await asyncio.to_thread(serde.prepare, "media.segments", SegmentReady.RECORD)
    await asyncio.to_thread(serde.prepare, "media.parts", PartReady.RECORD)
    # Bounded reads: a Valkey that stops answering (not just refusing) fails the ladder read, which then
    # falls back to the last audience read or retries the GOP (media/transcode/retry.py).
    client = aioredis.Redis.from_url(settings.valkey.url, socket_timeout=VALKEY_TIMEOUT_S,
                                     socket_connect_timeout=VALKEY_TIMEOUT_S)
    gops, origin = open_store(settings, "blobs"), open_store(settings, "origin")
    worker = TranscodeWorker(settings, serde, gops, origin, client)
    # Videos and clips after the fact (media/vod/worker.py): storyboards, purges, retention, clip MP4s.
    vod = VodWorker(settings, serde, origin, gops, client)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.gather(worker.run(stop), vod.run(stop))
    finally:
        await asyncio.to_thread(worker.close)
        await asyncio.to_thread(vod.close)
        await client.aclose()
        serde.close()

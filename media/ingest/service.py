"""``glasscast run ingest``: the RTMP ingest as a process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from infra.settings import Settings
from media.blob_stores import open_store
from media.ingest.server import IngestServer
from topics.admin import ensure_topics
from topics.catalogue import CATALOGUE
from topics.producer import EventProducer
from topics.runtime import make_serde

log = logging.getLogger("glasscast.ingest")

INGEST_TOPICS = ("stream.lifecycle", "media.gops", "media.parts", "media.segments")
VALKEY_SOCKET_TIMEOUT_S = 1.0


@contextlib.asynccontextmanager
async def open_ingest(settings: Settings) -> AsyncIterator[IngestServer]:
    """A started IngestServer with its producer, Valkey client and blob store; all closed on exit."""
    await asyncio.to_thread(ensure_topics, settings.kafka)
    serde = make_serde(settings)
    # Register the ingest's schemas now so the first GOP does not wait on the registry.
    await asyncio.to_thread(lambda: [serde.prepare(spec.name, record) for spec in CATALOGUE
                                     if spec.name in INGEST_TOPICS for record in spec.records])
    producer = EventProducer(settings.kafka, serde)
    # Bounded: with Valkey down a call fails within about a second instead of retrying for many
    # (redis-py's default), so live sessions keep cutting GOPs and new publishers are refused quickly.
    client = aioredis.Redis.from_url(settings.valkey.url, socket_timeout=VALKEY_SOCKET_TIMEOUT_S,
                                     socket_connect_timeout=VALKEY_SOCKET_TIMEOUT_S,
                                     retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2))
    server = IngestServer(settings, open_store(settings, "blobs"), producer, client,
                          origin=open_store(settings, "origin"))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        await asyncio.to_thread(producer.close, 10.0)
        await client.aclose()
        serde.close()


async def serve_ingest(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_ingest(settings):
        await stop.wait()

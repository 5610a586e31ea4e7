"""What the ingest tests share: an in-process IngestServer on the session broker and Valkey (or
``glasscast run ingest`` as a child process), channels created straight into the channel view,
the real ffmpeg CLI as publisher."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from gateways.auth import new_stream_key
from infra.embedded.process import free_port, port_open
from infra.settings import Settings
from media.blob import FileBlobStore
from media.ingest.server import IngestServer
from media.ingest.service import open_ingest
from schemas.records.channel import ChannelCreated
from tests.servers import run_service
from tests.waiting import eventually, eventually_async
from topics.consumer import Event
from topics.runtime import make_serde
from topics.tools import read_topic
from views.channels import hash_stream_key
from views.fold import Applied
from views.store import ViewStore


@dataclass
class IngestWorld:
    """What an ingest sees (its settings, the channel view, the blob store), with or without a server."""

    settings: Settings
    views: ViewStore
    blobs: FileBlobStore

    @property
    def url(self) -> str:
        return f"rtmp://127.0.0.1:{self.settings.ingest.rtmp_port}/{self.settings.ingest.app}"

    async def channel(self, name: str | None = None) -> tuple[str, str]:
        """A channel in the view (as the processors would have built it): (channel id, stream key)."""
        channel_id, key = str(uuid.uuid4()), new_stream_key()
        await self.views.apply(Applied(0, ChannelCreated(
            occurred_at=1_790_000_000_000, channel_id=channel_id, owner_user_id=str(uuid.uuid4()),
            name=name or f"ch_{uuid.uuid4().hex[:8]}", title="Ingest test", category="Testing",
            tags=(), stream_key_hash=hash_stream_key(key))))
        return channel_id, key

    def events(self, topic: str, key: str) -> list[Event]:
        serde = make_serde(self.settings)
        try:
            return [e for e in read_topic(self.settings.kafka, serde, topic, start="beginning", exit_at_end=True)
                    if e.key == key]
        finally:
            serde.close()

    async def wait_events(self, topic: str, key: str, until: Callable[[list[Event]], bool],
                          timeout_s: float = 30) -> list[Event]:
        """Events for ``key`` once ``until(events)`` holds; fails the test after ``timeout_s``."""

        async def found() -> tuple[list[Event]] | None:
            events = await asyncio.to_thread(self.events, topic, key)
            return (events,) if until(events) else None  # a tuple: truthy even when the list is empty

        (events,) = await eventually_async(found, timeout_s, f"events on {topic} for {key}", every_s=0.3)
        return events


@dataclass
class Ingest(IngestWorld):
    server: IngestServer

    @property
    def url(self) -> str:
        return f"rtmp://127.0.0.1:{self.server.port}/{self.settings.ingest.app}"


@contextlib.asynccontextmanager
async def running_ingest(settings: Settings) -> AsyncIterator[Ingest]:
    async with open_ingest(settings) as server:
        yield Ingest(settings, server.ctx.views, server.ctx.blobs, server)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def ingest_world(settings: Settings) -> AsyncIterator[IngestWorld]:
    """The channel view and blob store of ``settings``, for tests whose ingest runs as a child process."""
    client = aioredis.Redis.from_url(settings.valkey.url)
    try:
        yield IngestWorld(settings, ViewStore(client, settings.valkey.key_prefix),
                          FileBlobStore(settings.data_dir / "blobs"))
    finally:
        await client.aclose()


@contextlib.contextmanager
def ingest_process(settings: Settings, log: Path, timeout_s: float = 60) -> Iterator[subprocess.Popen[bytes]]:
    """``glasscast run ingest`` as a child, once its RTMP port accepts connections."""
    with run_service(settings, "ingest", log) as proc:
        def listening() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"ingest exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            return port_open("127.0.0.1", settings.ingest.rtmp_port)

        eventually(listening, timeout_s, f"the ingest child to listen (log: {log})", every_s=0.1)
        yield proc


def ingest_settings(base: Settings, **ingest: Any) -> Settings:
    return base.with_section("ingest", host="127.0.0.1", rtmp_port=free_port(), **ingest)

"""What the ingest tests share: an in-process IngestServer on the session broker and Valkey,
channels created straight into the channel view, the real ffmpeg CLI as publisher."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

from gateways.auth import new_stream_key
from views.channels import hash_stream_key
from infra.embedded.process import free_port
from infra.settings import Settings
from media.blob import FileBlobStore
from media.ingest.server import IngestServer
from media.ingest.service import open_ingest
from views.fold import Applied
from views.store import ViewStore
from topics.consumer import Event
from topics.runtime import make_serde
from topics.tools import read_topic


@dataclass
class Ingest:
    settings: Settings
    server: IngestServer
    views: ViewStore
    blobs: FileBlobStore

    @property
    def url(self) -> str:
        return f"rtmp://127.0.0.1:{self.server.port}/{self.settings.ingest.app}"

    async def channel(self, name: str | None = None) -> tuple[str, str]:
        """A channel in the view (as the processors would have built it): (channel id, stream key)."""
        channel_id, key = str(uuid.uuid4()), new_stream_key()
        await self.views.apply(Applied("glasscast.channel.ChannelCreated", 0, {
            "occurred_at": 1_790_000_000_000, "channel_id": channel_id, "owner_user_id": str(uuid.uuid4()),
            "name": name or f"ch_{uuid.uuid4().hex[:8]}", "title": "Ingest test", "category": "Testing",
            "tags": [], "stream_key_hash": hash_stream_key(key)}))
        return channel_id, key

    def events(self, topic: str, key: str) -> list[Event]:
        serde = make_serde(self.settings)
        try:
            return [e for e in read_topic(self.settings.kafka, serde, topic, start="beginning", exit_at_end=True)
                    if e.key == key]
        finally:
            serde.close()

    async def wait_events(self, topic: str, key: str, until: Any, timeout_s: float = 30) -> list[Event]:
        """Events for ``key`` once ``until(events)`` holds (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            found = await asyncio.to_thread(self.events, topic, key)
            if until(found) or loop.time() > deadline:
                return found
            await asyncio.sleep(0.3)


@contextlib.asynccontextmanager
async def running_ingest(settings: Settings) -> AsyncIterator[Ingest]:
    async with open_ingest(settings) as server:
        yield Ingest(settings, server, server.ctx.views, server.ctx.blobs)  # type: ignore[arg-type]


def ingest_settings(base: Settings, **ingest: Any) -> Settings:
    return base.with_section("ingest", host="127.0.0.1", rtmp_port=free_port(), **ingest)

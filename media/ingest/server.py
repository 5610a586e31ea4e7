"""The RTMP ingest server: accepts publishers, runs a session per connection.

``IngestServer(settings, ...)`` owns what sessions share (the channel view
for stream-key lookups, the live registry, the blob store, the event
producer), limits concurrent connections, reports health for every live
stream on a timer, and ends parked streams whose reconnect window closed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from infra.settings import Settings
from media.blob import BlobStore
from media.ingest import events
from media.ingest.live import LiveRegistry
from media.ingest.session import RtmpSession
from schemas.record import Record
from topics.errors import TopicsError
from topics.producer import EventProducer
from views.store import ViewStore

log = logging.getLogger("glasscast.ingest")


@dataclass
class IngestContext:
    settings: Settings
    views: ViewStore
    live: LiveRegistry
    blobs: BlobStore
    producer: EventProducer
    host: str
    clock: Callable[[], float] = time.time
    sessions: dict[str, RtmpSession] = field(default_factory=dict)
    # Keyframe arrival -> GopAvailable acknowledged, for the last GOPs of every stream (ms).
    gop_latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def emit(self, event: Record, key: str) -> Any:
        """Produce ``event`` under ``key`` and wait for the broker's acknowledgement."""
        return await self.producer.send(event, key)


class IngestServer:
    def __init__(self, settings: Settings, blobs: BlobStore, producer: EventProducer,
                 client: aioredis.Redis) -> None:
        s = settings.ingest
        self.settings = settings
        self.ctx = IngestContext(
            settings=settings, views=ViewStore(client, settings.valkey.key_prefix),
            live=LiveRegistry(client, settings.valkey.key_prefix, s.silent_after_s, s.reconnect_grace_s),
            blobs=blobs, producer=producer, host=socket.gethostname())
        self.connections = 0
        self.server: asyncio.Server | None = None
        self._health: asyncio.Task[None] | None = None
        self._sessions: set[RtmpSession] = set()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        s = self.settings.ingest
        self.server = await asyncio.start_server(self._serve, s.host, s.rtmp_port, limit=2**20)
        self._health = asyncio.create_task(self._health_loop())
        log.info("RTMP ingest listening on %s:%d (%s)", s.host, self.port, self.settings.rtmp_url)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections >= self.settings.ingest.max_connections:
            log.warning("rtmp: refusing %s: %d connections already", writer.get_extra_info("peername"),
                        self.connections)
            writer.close()
            return
        self.connections += 1
        session = RtmpSession(self.ctx, reader, writer)
        self._sessions.add(session)
        try:
            await session.run()
        except Exception:  # a bug in one session must not take the server down
            log.exception("rtmp session failed")
        finally:
            self._sessions.discard(session)
            self.connections -= 1

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ingest.health_interval_s)
            await self._end_expired()
            for session in list(self.ctx.sessions.values()):
                report = session.health()
                if report is None:
                    continue
                channel_id, health = report
                try:
                    await self.ctx.emit(health, channel_id)
                except TopicsError as exc:
                    log.warning("stream health not recorded: %s", exc)

    async def _end_expired(self) -> None:
        """End parked streams nobody resumed in time (from any ingest process, once: unpark is atomic)."""
        try:
            for stream in await self.ctx.live.expired(self.ctx.now_ms()):
                if await self.ctx.live.unpark(stream.channel_id, stream.stream_id):
                    await self.ctx.emit(events.stream_ended(stream, "RECONNECT_TIMEOUT", self.ctx.now_ms()),
                                        stream.channel_id)
                    log.info("stream %s ended: no reconnect within the grace window", stream.stream_id)
        except (TopicsError, OSError) as exc:
            log.warning("ending expired streams failed (retried): %s", exc)

    async def stop(self, timeout_s: float = 15.0) -> None:
        """Stop accepting, end every connection (live streams are parked for a reconnect), stop."""
        if self.server is not None:
            self.server.close()
        sessions = list(self._sessions)
        for session in sessions:
            session.writer.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._sessions and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self._health is not None:
            self._health.cancel()
        if self.server is not None:
            await self.server.wait_closed()

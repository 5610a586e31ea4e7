"""The RTMP ingest server: accepts publishers, runs a session per connection.

``IngestServer(settings, ...)`` owns what sessions share (the channel view
for stream-key lookups, the live registry, the blob store, the event
producer), admits connections (``admission.py``: a global cap, a cap per client
on connections that have not published, and room made for a publisher in a
flood), and runs three supervised loops
(``tasks.py``): stream health on a timer, the renewal of every live session's
lease (``live.py``) and the reaper, which ends streams nobody resumed within the
grace window, whether their publisher dropped or their ingest process died.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import typing
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from infra.settings import Settings
from media.blob import BlobStore
from media.ingest import events
from media.ingest.admission import Admission, AdmissionLimits, Refuse, client_of
from media.ingest.live import VALKEY_ERRORS, LiveRegistry, LiveStream
from media.ingest.pipeline import settle_stored
from media.ingest.session import RtmpSession
from media.ingest.tasks import start_supervised
from schemas.record import Record
from schemas.records.stream import StreamEndReason
from topics.errors import TopicsError
from topics.producer import EventProducer
from views.store import ViewStore

log = logging.getLogger("glasscast.ingest")

_END_REASONS: tuple[StreamEndReason, ...] = typing.get_args(StreamEndReason)
REAP_INTERVAL_S = 1.0  # how often each ingest process looks for streams to end
VALKEY_TIMEOUT_S = 1.0  # a lease write or check waits no longer (Valkey slow or gone)
TROUBLE_LOG_EVERY_S = 5.0  # one warning per this while Valkey keeps failing
REFUSAL_LOG_EVERY_S = 5.0  # one warning per this while connections are refused (a flood)


@dataclass
class IngestContext:
    settings: Settings
    views: ViewStore
    live: LiveRegistry
    blobs: BlobStore
    producer: EventProducer
    host: str
    origin: BlobStore | None = None  # where the ingest's own renditions (source, audio) go; None: no parts
    clock: Callable[[], float] = time.time
    sessions: dict[str, RtmpSession] = field(default_factory=dict)
    # Keyframe arrival -> GopAvailable acknowledged, for the last GOPs of every stream (ms).
    gop_latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    valkey_timeout_s: float = VALKEY_TIMEOUT_S
    # Who this process is when it takes a stream over to end it.
    reaper_id: str = field(default_factory=lambda: f"reaper-{socket.gethostname()}-{os.getpid()}-"
                                                   f"{uuid.uuid4().hex[:6]}")
    valkey_failures: int = 0
    _trouble_logged: float = 0.0

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def valkey_trouble(self, what: str, exc: BaseException) -> None:
        """Count a failed Valkey call and log it, once per few seconds: retried, not fatal."""
        self.valkey_failures += 1
        now = time.monotonic()
        if now - self._trouble_logged >= TROUBLE_LOG_EVERY_S:
            self._trouble_logged = now
            log.warning("Valkey unavailable while %s (retried; %d failures so far): %r", what,
                        self.valkey_failures, exc)

    async def end_unresumed(self, stream: LiveStream) -> bool:
        """End a stream nobody resumed within the grace window (once, from any process).

        The record is taken over (marked ending) before StreamEnded is produced and deleted
        after, so a reaper that dies in between leaves it to the next one: at least once.
        """
        claimed = await self.live.claim_end(stream, self.reaper_id, self.now_ms(), "RECONNECT_TIMEOUT")
        if claimed is None:
            return False
        claimed = await asyncio.to_thread(settle_stored, self.blobs, claimed)
        reason: StreamEndReason = (claimed.ending if claimed.ending in _END_REASONS
                                   else "RECONNECT_TIMEOUT")
        await self.emit(events.stream_ended(claimed, reason, self.now_ms()), claimed.channel_id)
        await self.live.release(claimed, self.reaper_id)
        log.info("stream %s ended (%s): nobody resumed it within the grace window", claimed.stream_id, reason)
        return True

    async def emit(self, event: Record, key: str) -> Any:
        """Produce ``event`` under ``key`` and wait for the broker's acknowledgement."""
        return await self.producer.send(event, key)


class IngestServer:
    def __init__(self, settings: Settings, blobs: BlobStore, producer: EventProducer,
                 client: aioredis.Redis, origin: BlobStore | None = None) -> None:
        s = settings.ingest
        self.settings = settings
        self.ctx = IngestContext(
            settings=settings, views=ViewStore(client, settings.valkey.key_prefix),
            live=LiveRegistry(client, settings.valkey.key_prefix, s.lease_s, s.reconnect_grace_s),
            blobs=blobs, producer=producer, host=socket.gethostname(), origin=origin)
        self.admission = Admission(AdmissionLimits(s.max_connections, s.max_pending_per_client))
        self.refused = 0  # connections refused since the start
        self.evicted = 0  # connections closed to make room for another
        self._refusal_logged = (0.0, 0)  # when the last refusal warning went out, and the count then
        self.server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sessions: dict[str, RtmpSession] = {}

    @property
    def connections(self) -> int:
        """Connections holding a slot now."""
        return len(self.admission)

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        s = self.settings.ingest
        self.server = await asyncio.start_server(self._serve, s.host, s.rtmp_port, limit=2**20)
        self._tasks = [start_supervised("ingest stream health", self._health_loop),
                       start_supervised("ingest lease renewal", self._lease_loop),
                       start_supervised("ingest reaper", self._reap_loop)]
        log.info("RTMP ingest listening on %s:%d (%s)", s.host, self.port, self.settings.rtmp_url)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = RtmpSession(self.ctx, reader, writer, self.admission)
        peer = writer.get_extra_info("peername")
        decision = self.admission.admit(session.id, client_of(peer[0] if isinstance(peer, tuple) else str(peer)))
        if isinstance(decision, Refuse):
            self._refused(session.peer, decision.reason)
            writer.close()
            return
        if decision.evict is not None:
            victim = self._sessions.get(decision.evict)
            if victim is not None:
                self.evicted += 1
                victim.close(f"evicted before publishing, to make room for {session.peer}")
        self._sessions[session.id] = session
        try:
            await session.run()
        except Exception:  # a bug in one session must not take the server down
            log.exception("rtmp session failed")
        finally:
            self._sessions.pop(session.id, None)
            self.admission.release(session.id)

    def _refused(self, peer: str, reason: str) -> None:
        """Count a refused connection; warn once per few seconds, so a flood cannot flood the log too."""
        self.refused += 1
        now = time.monotonic()
        last, count = self._refusal_logged
        if now - last >= REFUSAL_LOG_EVERY_S:
            self._refusal_logged = (now, self.refused)
            log.warning("rtmp: refusing %s: %s (%d refused since the last warning)", peer, reason,
                        self.refused - count)

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ingest.health_interval_s)
            for session in list(self.ctx.sessions.values()):
                report = session.health()
                if report is None:
                    continue
                channel_id, health = report
                try:
                    await self.ctx.emit(health, channel_id)
                except TopicsError as exc:
                    log.warning("stream health not recorded: %s", exc)

    async def _lease_loop(self) -> None:
        """Renew every live session's lease, at least every second (a third of the lease at most)."""
        interval = min(1.0, self.settings.ingest.lease_s / 3)
        while True:
            await asyncio.sleep(interval)
            sessions = list(self.ctx.sessions.values())
            if sessions:
                await asyncio.gather(*(session.renew_lease() for session in sessions))

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL_S)
            await self._end_expired()

    async def _end_expired(self) -> None:
        """End streams nobody resumed in time: dropped publishers, and ingest processes that died."""
        try:
            for stream in await self.ctx.live.endable(self.ctx.now_ms()):
                if stream.owner in self.ctx.sessions:
                    continue  # our own session, whose renewals failed while Valkey was away: it renews again
                await self.ctx.end_unresumed(stream)
        except VALKEY_ERRORS as exc:
            self.ctx.valkey_trouble("looking for streams to end", exc)
        except TopicsError as exc:
            log.warning("ending expired streams failed (retried): %s", exc)

    async def stop(self, timeout_s: float = 15.0) -> None:
        """Stop accepting, end every connection (live streams are parked for a reconnect), stop."""
        if self.server is not None:
            self.server.close()
        sessions = list(self._sessions.values())
        for session in sessions:
            session.writer.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._sessions and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()

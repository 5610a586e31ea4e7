"""One broadcast's media path: FLV tags -> GOPs -> blob store -> ``GopAvailable``.

The RTMP session pushes every audio/video message; completed GOPs go through a
bounded queue to a storage task, so a slow store pauses the socket reads (TCP
slows the encoder) instead of growing memory (docs/ARCHITECTURE.md, "Media pipeline").  A GOP is
written atomically before its event is produced, and the event waits for the
broker's acknowledgement.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from media.blob import BlobStore
from media.ingest import events
from media.ingest.flv import parse_aac_config, parse_audio, parse_avc_config, parse_video
from media.ingest.gop import Gop, GopSplitter, MediaTag, gop_to_flv
from media.ingest.health import HealthWindow
from media.ingest.live import LiveStream
from schemas.record import Record
from schemas.records.stream import StreamHealth

log = logging.getLogger("glasscast.ingest")

#: Produce one event under a key and wait for the broker's acknowledgement.
Emit = Callable[[Record, str], Awaitable[Any]]


@dataclass(frozen=True)
class Tracks:
    """What the codec configuration says about the tracks."""

    video_codec: str | None = None
    width: int | None = None
    height: int | None = None
    audio_codec: str | None = None
    sample_rate_hz: int | None = None
    channels: int | None = None


class StreamPipeline:
    """Split, store and announce one connection's share of a broadcast."""

    def __init__(self, stream: LiveStream, blobs: BlobStore, emit: Emit, *, queue_maxsize: int,
                 max_gop_ms: int, fps_hint: float | None = None, discontinuity: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.stream = stream
        self.blobs = blobs
        self.emit = emit
        self.clock = clock
        self.splitter = GopSplitter(max_gop_ms=max_gop_ms)
        self.queue: asyncio.Queue[tuple[Gop, float] | None] = asyncio.Queue(maxsize=queue_maxsize)
        self.health = HealthWindow(start_ms=self.now_ms())
        self.tracks = Tracks()
        self.fps_hint = fps_hint
        self.offset_ms: int | None = None  # source timestamp -> stream timeline
        self.discontinuity = discontinuity
        self.on_stored: Callable[[float], None] | None = None  # gets keyframe-arrival -> acked latency (ms)
        self.gops_stored = 0
        self.frames = 0  # audio and video frames pushed (sequence headers are not frames)
        self._dropped_seen = 0
        self._task: asyncio.Task[None] | None = None

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def start(self) -> None:
        self._task = asyncio.create_task(self._store_loop(), name=f"gops-{self.stream.stream_id}")

    async def push(self, kind: str, timestamp_ms: int, payload: bytes) -> None:
        """One RTMP audio (8) or video (9) message body."""
        if self.offset_ms is None:
            # A reconnect continues the stream timeline where the last GOP ended.
            self.offset_ms = self.stream.timeline_end_ms - timestamp_ms if self.stream.timeline_end_ms else 0
        tag = MediaTag.from_payload(kind, timestamp_ms + self.offset_ms, payload)  # type: ignore[arg-type]
        if tag.config:
            self._configure(tag)
        else:
            self.frames += 1
            if kind == "video":
                self.health.on_video(tag.timestamp_ms, len(payload), tag.keyframe)
            else:
                self.health.on_audio(tag.timestamp_ms, len(payload))
        arrived = time.perf_counter()
        for gop in self.splitter.push(tag):
            await self.queue.put((gop, arrived))  # waits when storage is behind
        dropped = self.splitter.dropped_frames
        if dropped != self._dropped_seen:
            self.health.on_dropped(dropped - self._dropped_seen)
            self._dropped_seen = dropped

    def _configure(self, tag: MediaTag) -> None:
        try:
            if tag.kind == "video":
                cfg = parse_avc_config(parse_video(tag.payload).data)
                self.tracks = replace(self.tracks, video_codec=cfg.codec_string, width=cfg.width, height=cfg.height)
            else:
                acfg = parse_aac_config(parse_audio(tag.payload).data)
                self.tracks = replace(self.tracks, audio_codec=acfg.codec_string,
                                      sample_rate_hz=acfg.sample_rate_hz, channels=acfg.channels)
        except ValueError as exc:
            log.warning("stream %s: unreadable %s configuration: %s", self.stream.stream_id, tag.kind, exc)

    async def _store_loop(self) -> None:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            gop, arrived = item
            await self._store(gop, arrived)

    async def _store(self, gop: Gop, arrived: float) -> None:
        seq = self.stream.next_seq
        key = f"gops/{self.stream.stream_id}/{seq:08d}.flv"
        data = gop_to_flv(gop)
        ref = await asyncio.to_thread(self.blobs.put, key, data)
        event = events.gop_available(self.stream, seq, gop, len(data), ref, self.tracks, self.fps_hint,
                                     self.discontinuity, self.now_ms())
        await self.emit(event, self.stream.stream_id)
        if self.on_stored is not None:
            self.on_stored((time.perf_counter() - arrived) * 1000)
        self.discontinuity = False
        self.gops_stored += 1
        self.stream = replace(self.stream, next_seq=seq + 1, timeline_end_ms=gop.start_ms + gop.duration_ms)

    def health_snapshot(self) -> StreamHealth:
        now = self.now_ms()
        return events.stream_health(self.stream, self.health.snapshot(now), self.tracks, now)

    async def close(self) -> LiveStream:
        """Store the last (possibly short) GOP and everything queued; the stream as it now stands."""
        last = self.splitter.flush()
        if last is not None:
            await self.queue.put((last, time.perf_counter()))
        await self.queue.put(None)
        if self._task is not None:
            await self._task
        return self.stream

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()

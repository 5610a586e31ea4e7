"""One broadcast's media path: FLV tags -> GOPs -> blob store -> ``GopAvailable``.

The RTMP session pushes every audio/video message; completed GOPs go through a
bounded queue to a storage task, so a slow store pauses the socket reads (TCP
slows the encoder) instead of growing memory (docs/ARCHITECTURE.md, "Media pipeline").  A GOP is
written atomically before its event is produced, and the event waits for the
broker's acknowledgement.

Before GOP N is stored, ``reserve`` records (in the live lease, ``live.py``) that the
stream continues at N + 1, so an ingest that takes the stream over after a crash never
announces N again.  When that write cannot be made (Valkey down) video keeps flowing, and
``continue_after_stored`` covers the gap: a takeover skips every seq whose blob exists.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from media.blob import BlobError, BlobStore
from media.ingest import events, flv
from media.ingest.flv import parse_aac_config, parse_audio, parse_avc_config, parse_video
from media.ingest.gop import Gop, GopSplitter, MediaTag, gop_to_flv
from media.ingest.health import HealthWindow
from media.ingest.live import LiveStream
from media.ingest.parts import PartPublisher
from schemas.record import Record
from schemas.records.media import GopAvailable
from schemas.records.stream import StreamHealth
from topics.errors import TopicsError

log = logging.getLogger("glasscast.ingest")

EMIT_RETRY_MIN_S, EMIT_RETRY_MAX_S = 0.5, 5.0

#: Produce one event under a key and wait for the broker's acknowledgement.
Emit = Callable[[Record, str], Awaitable[Any]]
#: Record, before a GOP is stored, where the stream will continue; False: the stream was lost
#: to another owner (store nothing more).  True when the record could not be written.
Reserve = Callable[[LiveStream], Awaitable[bool]]


def gop_key(stream_id: str, seq: int) -> str:
    """The blob key of a stream's GOP ``seq``."""
    return f"gops/{stream_id}/{seq:08d}.flv"


def _timeline_end(data: bytes) -> int:
    """Where the stream timeline ends after one stored GOP FLV: its last video frame plus one frame."""
    video = sorted(ts for tag_type, ts, _ in flv.iter_file_tags(data) if tag_type == flv.TAG_VIDEO)
    step = min((b - a for a, b in zip(video, video[1:]) if b > a), default=1)
    return video[-1] + step if video else 0


def continue_after_stored(blobs: BlobStore, stream: LiveStream) -> LiveStream:
    """``stream`` moved past every GOP already stored at or after its ``next_seq``.

    A GOP is stored before it is announced, so no announced seq is reused even if the owner
    that stored it could not record so (Valkey was down when it died).  Any store whose put is atomic
    answers this (a file rename, an S3 PutObject): a blob that exists is whole.  Blocking: run in a thread.
    """
    seq, end = stream.next_seq, stream.timeline_end_ms
    while blobs.exists(ref := blobs.ref(gop_key(stream.stream_id, seq))):
        try:
            end = max(end, _timeline_end(blobs.get(ref)))
        except (ValueError, BlobError) as exc:
            log.warning("stream %s: stored GOP %d unreadable (%s); skipping it", stream.stream_id, seq, exc)
        seq += 1
    if seq != stream.next_seq:
        log.warning("stream %s: GOPs %d..%d were stored by an owner that died; continuing at %d",
                    stream.stream_id, stream.next_seq, seq - 1, seq)
    return replace(stream, next_seq=seq, timeline_end_ms=end)


def settle_stored(blobs: BlobStore, stream: LiveStream) -> LiveStream:
    """``stream`` with ``next_seq`` one past the last GOP actually stored, for its StreamEnded.

    The lease says one ahead of a GOP being stored when its owner died; the blob store says
    whether that GOP made it.  Blocking: run in a thread.
    """
    moved = continue_after_stored(blobs, stream)
    if moved.next_seq != stream.next_seq or stream.next_seq == 0:
        return moved
    last = stream.next_seq - 1
    return stream if blobs.exists(blobs.ref(gop_key(stream.stream_id, last))) else replace(stream, next_seq=last)


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
                 clock: Callable[[], float] = time.time, reserve: Reserve | None = None,
                 origin: BlobStore | None = None) -> None:
        self.stream = stream
        self.reserve = reserve
        self.lost = False  # another owner holds the stream now: nothing more is stored
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
        # The source and audio renditions, as LL-HLS parts, when there is an origin to store them in.
        self.parts = (PartPublisher(stream, origin, emit, fps=fps_hint, discontinuity=discontinuity,
                                    now_ms=self.now_ms) if origin is not None else None)

    def set_frame_rate(self, fps: float | None) -> None:
        """The encoder's frame rate (onMetaData ``framerate``), for GopAvailable and the parts' PART-TARGET."""
        if fps and fps > 0:
            self.fps_hint = fps
            if self.parts is not None:
                self.parts.set_frame_rate(fps)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def start(self) -> None:
        self._task = asyncio.create_task(self._store_loop(), name=f"gops-{self.stream.stream_id}")
        if self.parts is not None:
            self.parts.start()

    async def push(self, kind: str, timestamp_ms: int, payload: bytes) -> None:
        """One RTMP audio (8) or video (9) message body."""
        if self.offset_ms is None:
            # A reconnect continues the stream timeline where the last GOP ended.
            self.offset_ms = self.stream.timeline_end_ms - timestamp_ms if self.stream.timeline_end_ms else 0
        tag = MediaTag.from_payload(kind, timestamp_ms + self.offset_ms, payload)  # type: ignore[arg-type]
        if tag.config:
            self._configure(tag)
            if self.parts is not None:
                self.parts.configure(tag)
        else:
            self.frames += 1
            if kind == "video":
                self.health.on_video(tag.timestamp_ms, len(payload), tag.keyframe)
            else:
                self.health.on_audio(tag.timestamp_ms, len(payload))
        arrived = time.perf_counter()
        gops = self.splitter.push(tag)
        if self.parts is not None:
            await self.parts.put(self.parts.observe(tag, self.splitter, gops))
        for gop in gops:
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
        if self.lost:
            return
        seq = self.stream.next_seq
        if self.reserve is not None and not await self.reserve(
                replace(self.stream, next_seq=seq + 1, timeline_end_ms=gop.start_ms + gop.duration_ms)):
            self.lost = True
            log.warning("stream %s: another ingest holds it now; GOP %d not stored", self.stream.stream_id, seq)
            return
        key = gop_key(self.stream.stream_id, seq)
        data = gop_to_flv(gop)
        ref = await asyncio.to_thread(self.blobs.put, key, data)
        event = events.gop_available(self.stream, seq, gop, len(data), ref, self.tracks, self.fps_hint,
                                     self.discontinuity, self.now_ms())
        await self._announce(event, seq)
        if self.on_stored is not None:
            self.on_stored((time.perf_counter() - arrived) * 1000)
        self.discontinuity = False
        self.gops_stored += 1
        self.stream = replace(self.stream, next_seq=seq + 1, timeline_end_ms=gop.start_ms + gop.duration_ms)

    async def _announce(self, event: GopAvailable, seq: int) -> None:
        """Produce GopAvailable until the broker takes it: a GOP is never skipped for a broker outage.

        The same record (same event_id) is sent again, so a retry after a lost acknowledgement
        is a duplicate consumers drop.  Meanwhile the queue fills and the socket reads pause.
        """
        delay = EMIT_RETRY_MIN_S
        while True:
            try:
                await self.emit(event, self.stream.stream_id)
                return
            except TopicsError as exc:
                log.warning("stream %s: GOP %d not acknowledged (%s); retrying in %.1f s",
                            self.stream.stream_id, seq, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, EMIT_RETRY_MAX_S)

    def health_snapshot(self) -> StreamHealth:
        now = self.now_ms()
        return events.stream_health(self.stream, self.health.snapshot(now), self.tracks, now)

    async def close(self) -> LiveStream:
        """Store the last (possibly short) GOP and everything queued; the stream as it now stands."""
        last = self.splitter.flush()
        if self.parts is not None:
            await self.parts.put(self.parts.flush(last))
        if last is not None:
            await self.queue.put((last, time.perf_counter()))
        await self.queue.put(None)
        if self._task is not None:
            await self._task
        if self.parts is not None:
            await self.parts.close()
        return self.stream

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.parts is not None:
            self.parts.abort()

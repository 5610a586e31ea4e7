"""The ingest's own packager: the source and audio renditions, as LL-HLS parts, while the GOP arrives.

The source rendition (the encoder's video and audio, remuxed) and the audio
rendition need no decoder, so the ingest cuts them itself
(``media/package/parts.py``) instead of waiting for a media worker: they keep
playing while the media workers or the control plane are down, and a part is
stored about one frame after its last frame reached the ingest.  For each
part, and each of the two renditions:

1. the part (moof + mdat) is stored in the origin under
   ``hls/<stream>/<rendition>/<msn:08d>.<i>.m4s`` (the rendition's
   ``init.mp4`` first, once);
2. ``PartReady`` goes on ``media.parts``, after the store, so a gateway that
   hears of a part can serve it; the gateways fold these into the live edge
   of the playlists and wake the blocking reloads waiting for them.

With a segment's last part, the whole segment (its parts concatenated, so the
bytes a player got part by part are the segment's bytes) is stored too, and
``SegmentReady`` (listing the parts) goes on ``media.segments`` for the
segment index, the window and the VOD.  Video bytes never travel through
Kafka.

Parts are stored and announced in order by one task per broadcast, behind a
bounded queue: when the store or the broker falls behind, the queue fills and
the socket reads pause, as for GOPs (``pipeline.py``).  A part that cannot be
announced is retried until the broker takes it; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from media.blob import BlobStore
from media.ingest import flv
from media.ingest.gop import Gop, GopSplitter, MediaTag
from media.ingest.live import LiveStream
from media.package.codecs import aac_codec_string, aac_frame_samples, avc_codec_string
from media.package.fmp4 import AudioTrack, VideoTrack, init_segment
from media.package.parts import (
    AudioFrame,
    CutPart,
    PartCutter,
    VideoFrame,
    part_bytes,
    part_key,
    part_target_ms,
    part_uri,
)
from schemas.record import Record
from schemas.records.media import PartReady, SegmentPart, SegmentReady
from topics.errors import TopicsError

log = logging.getLogger("glasscast.ingest.parts")

SOURCE, AUDIO = "source", "audio"
EMIT_RETRY_MIN_S, EMIT_RETRY_MAX_S = 0.2, 5.0
QUEUE_PARTS = 64  # about 13 s of parts waiting for the store and the broker before reads pause

#: Produce one event under a key and wait for the broker's acknowledgement (as ``pipeline.Emit``).
Emit = Callable[[Record, str], Awaitable[Any]]


@dataclass(frozen=True)
class Rendering:
    """One rendition the ingest packages: its tracks and what the playlists say about it."""

    name: str
    video: VideoTrack | None
    audio: AudioTrack | None
    codecs: str
    fps: float | None

    @property
    def init(self) -> bytes:
        return init_segment([t for t in (self.video, self.audio) if t is not None])


@dataclass
class _Segment:
    seq: int
    pdt_ms: int  # wall clock when its keyframe reached the ingest
    discontinuity: bool
    parts: dict[str, list[bytes]] = field(default_factory=dict)
    entries: dict[str, list[SegmentPart]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Job:
    part: CutPart
    seq: int
    pdt_ms: int  # of the segment's keyframe
    discontinuity: bool


class PartPublisher:
    """Cut, store and announce the parts of one connection's share of a broadcast."""

    def __init__(self, stream: LiveStream, origin: BlobStore, emit: Emit, *, fps: float | None,
                 discontinuity: bool, now_ms: Callable[[], int]) -> None:
        self.stream = stream
        self.origin = origin
        self.emit = emit
        self.now_ms = now_ms  # the ingest's wall clock, ms
        self.fps = fps
        self.part_target_ms = part_target_ms(fps)
        self.discontinuity = discontinuity
        self.next_seq = stream.next_seq  # the seq the splitter's next GOP will be stored under
        self.cutter: PartCutter | None = None
        self.video: VideoTrack | None = None
        self.audio: AudioTrack | None = None
        self.renderings: list[Rendering] = []
        self.parts_stored = 0
        self._segment_pdt = 0
        self._segment_seq = 0
        self._segment_discontinuity = False
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=QUEUE_PARTS)
        self._task: asyncio.Task[None] | None = None
        self._inits_stored = False
        self._segment: _Segment | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"parts-{self.stream.stream_id}")

    def set_frame_rate(self, fps: float) -> None:
        """The PART-TARGET follows the frame rate until the first part is cut; then it never changes."""
        if self.cutter is None:
            self.fps = fps
            self.part_target_ms = part_target_ms(fps)

    # -- cutting (on the session's loop, no I/O) ----------------------------------------------------

    def configure(self, tag: MediaTag) -> None:
        """A sequence header: the tracks the init segments describe (the first of each kind counts)."""
        try:
            if tag.kind == "video" and self.video is None:
                self.video = VideoTrack.from_avcc(flv.parse_video(tag.payload).data)
            elif tag.kind == "audio" and self.audio is None:
                self.audio = AudioTrack.from_asc(flv.parse_audio(tag.payload).data)
        except ValueError as exc:
            log.warning("stream %s: no parts for an unreadable %s configuration: %s", self.stream.stream_id,
                        tag.kind, exc)

    def _ensure_cutter(self) -> PartCutter | None:
        if self.cutter is None and self.video is not None:
            self.cutter = PartCutter(self.part_target_ms, self.audio.sample_rate if self.audio else None,
                                     aac_frame_samples(self.audio.asc) if self.audio else 1024)
            source_codecs = avc_codec_string(self.video.avcc)
            if self.audio is not None:
                source_codecs += "," + aac_codec_string(self.audio.asc)
            self.renderings = [Rendering(SOURCE, self.video, self.audio, source_codecs, self.fps)]
            if self.audio is not None:
                self.renderings.append(Rendering(AUDIO, None, self.audio, aac_codec_string(self.audio.asc), None))
        return self.cutter

    def observe(self, tag: MediaTag, splitter: GopSplitter, gops: list[Gop]) -> list[_Job]:
        """After ``splitter.push(tag)``: the parts that tag completed, to be queued with ``put``."""
        if not tag.frame:
            return []
        cutter = self._ensure_cutter()  # at the first frame: both sequence headers have come by then
        if cutter is None:
            return []
        jobs: list[_Job] = []
        for gop in gops:  # the GOP the splitter finished: its last part ends where the GOP does
            jobs += self._jobs(cutter.end_segment(gop.start_ms + gop.duration_ms))
        ts = splitter.last_timestamp_ms
        if tag.kind == "video":
            if splitter.open_start_ms is None:
                return jobs  # the splitter dropped it (no GOP open, or after an oversize cut)
            body = flv.parse_video(tag.payload)
            frame = VideoFrame(ts, ts + body.composition_time_ms, tag.keyframe, body.data)
            if tag.keyframe and splitter.open_start_ms == ts:
                if cutter.open:  # a GOP the splitter ended without handing it out yet cannot be; be safe
                    jobs += self._jobs(cutter.end_segment(ts))
                cutter.start_segment(frame)
                self._segment_seq, self.next_seq = self.next_seq, self.next_seq + 1
                self._segment_pdt = self.now_ms()
                self._segment_discontinuity, self.discontinuity = self.discontinuity, False
            else:
                jobs += self._jobs(cutter.add_video(frame))
        else:
            body_audio = flv.parse_audio(tag.payload)
            if body_audio.packet_type == "raw" and body_audio.data:
                cutter.add_audio(AudioFrame(ts, body_audio.data))
        return jobs

    def flush(self, gop: Gop | None) -> list[_Job]:
        """End of the connection: the open segment's last part, ending where the splitter's last GOP does."""
        if self.cutter is None or gop is None:
            return []
        return self._jobs(self.cutter.end_segment(gop.start_ms + gop.duration_ms))

    def _jobs(self, parts: list[CutPart]) -> list[_Job]:
        return [_Job(p, self._segment_seq, self._segment_pdt, self._segment_discontinuity) for p in parts]

    async def put(self, jobs: list[_Job]) -> None:
        for job in jobs:
            await self._queue.put(job)  # waits when the store or the broker is behind

    # -- storing and announcing (one task per broadcast) --------------------------------------------

    async def _run(self) -> None:
        while True:
            job = await self._queue.get()
            if job is None:
                return
            try:
                await self._publish(job)
            except Exception:  # never leave the stream without its task: log and go on with the next part
                log.exception("stream %s: part %d.%d failed", self.stream.stream_id, job.seq, job.part.index)

    async def _publish(self, job: _Job) -> None:
        stream_id = self.stream.stream_id
        if not self._inits_stored:
            for r in self.renderings:
                await asyncio.to_thread(self.origin.put, f"hls/{stream_id}/{r.name}/init.mp4", r.init)
            self._inits_stored = True
        if self._segment is None or self._segment.seq != job.seq:
            self._segment = _Segment(job.seq, job.pdt_ms, job.discontinuity)
        segment = self._segment
        part = job.part
        mfhd = job.seq * 100 + part.index + 1  # increasing across the stream (14496-12 8.8.5)
        events: list[Record] = []
        for r in self.renderings:
            data = part_bytes(part, mfhd, r.video, r.audio)
            if not data:
                continue
            await asyncio.to_thread(self.origin.put, part_key(stream_id, r.name, job.seq, part.index), data)
            segment.parts.setdefault(r.name, []).append(data)
            ready = self._part_ready(r, job, len(data))
            segment.entries.setdefault(r.name, []).append(
                SegmentPart(uri=ready.uri, duration_ms=ready.duration_ms, independent=ready.independent))
            events.append(ready)
        if part.last:
            for r in self.renderings:
                whole = b"".join(segment.parts.get(r.name, []))
                if whole:
                    await asyncio.to_thread(self.origin.put, f"hls/{stream_id}/{r.name}/{job.seq:08d}.m4s", whole)
                    events.append(self._segment_ready(r, job, segment, whole))
            self._segment = None
        for event in events:
            await self._announce(event)
        self.parts_stored += 1

    def _reported_ms(self, part: CutPart) -> int:
        """The part's EXT-X-PART DURATION: a part that late frames stretched past the target says the target."""
        return max(1, min(part.duration_ms, self.part_target_ms))

    def _part_ready(self, r: Rendering, job: _Job, size: int) -> PartReady:
        part = job.part
        duration = self._reported_ms(part)
        segment_ms = part.start_ms + part.duration_ms - part.segment_start_ms
        return PartReady(
            occurred_at=self.now_ms(), stream_id=self.stream.stream_id,
            channel_id=self.stream.channel_id, rendition=r.name, seq=job.seq, part=part.index,
            uri=part_uri(job.seq, part.index), duration_ms=duration,
            independent=part.independent or r.video is None, byte_size=size,
            program_date_time=job.pdt_ms + part.start_ms - part.segment_start_ms,
            part_target_ms=self.part_target_ms, segment_complete=part.last,
            segment_uri=f"{job.seq:08d}.m4s" if part.last else None,
            segment_duration_ms=max(segment_ms, 1) if part.last else None, discontinuity=job.discontinuity,
            init_uri="init.mp4", codecs=r.codecs, width=r.video.width if r.video else None,
            height=r.video.height if r.video else None, fps=r.fps if r.video else None, audio_only=r.video is None,
            rung_split_part=part.rung_split if r.video is not None else None)

    def _segment_ready(self, r: Rendering, job: _Job, segment: _Segment, whole: bytes) -> SegmentReady:
        last = job.part
        duration_ms = max(last.start_ms + last.duration_ms - last.segment_start_ms, 1)
        return SegmentReady(
            occurred_at=self.now_ms(), stream_id=self.stream.stream_id,
            channel_id=self.stream.channel_id, rendition=r.name, seq=job.seq, duration_ms=duration_ms,
            program_date_time=segment.pdt_ms, byte_size=len(whole), uri=f"{job.seq:08d}.m4s",
            parts=tuple(segment.entries.get(r.name, ())), discontinuity=segment.discontinuity,
            pts_90k=last.segment_start_ms * 90, init_uri="init.mp4", codecs=r.codecs,
            bandwidth_bps=len(whole) * 8 * 1000 // duration_ms, width=r.video.width if r.video else None,
            height=r.video.height if r.video else None, fps=r.fps if r.video else None, audio_only=r.video is None)

    async def _announce(self, event: Record) -> None:
        delay = EMIT_RETRY_MIN_S
        while True:
            try:
                await self.emit(event, self.stream.stream_id)
                return
            except TopicsError as exc:
                log.warning("stream %s: %s not acknowledged (%s); retrying in %.1f s", self.stream.stream_id,
                            type(event).__name__, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, EMIT_RETRY_MAX_S)

    async def close(self) -> None:
        """Store and announce everything queued, then stop."""
        await self._queue.put(None)
        if self._task is not None:
            await self._task

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()

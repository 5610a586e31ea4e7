"""The media worker: ``GopAvailable`` in, one stored segment per rendition and ``SegmentReady`` out.

Workers share a consumer group on ``media.gops``.  Each GOP is planned
(ladder by audience), transcoded in a process pool sized to the machine (PyAV
work never runs on the event loop), stored in the origin under deterministic
names, then announced.  The newest GOP of each live stream also refreshes
the stream's thumbnail (media/transcode/thumbnail.py), beside the remuxes and
never in the way of an announcement.  Offsets are committed only past GOPs
whose segments are all announced, so a worker that dies mid-GOP leaves that
GOP to be done again: the same segment names are overwritten atomically with
the same content, and the segment index lists each (rendition, seq) once.
GOP times are read in the event's own time base (``time_base_num/den``),
never assumed to be milliseconds (``gop_window_ms``).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction

import redis.asyncio as aioredis

from infra.settings import Settings
from media.blob import BlobNotFound, BlobStore
from media.transcode.job import RenditionOutput, transcode_gop
from media.transcode.ladder import Rendition, gop_kbps, plan_ladder
from media.transcode.offsets import OffsetTracker
from media.transcode.thumbnail import ThumbnailSchedule, gop_thumbnail, thumbnail_key
from media.transcode.timeline import gop_ms
from schemas.records.media import GopAvailable, SegmentReady
from topics.consumer import Event, EventConsumer
from topics.producer import EventProducer
from topics.serde import AvroSerde
from views.viewers import viewers_key

log = logging.getLogger("glasscast.transcode")

ATTEMPTS = 3  # a GOP that fails this often (a corrupt blob) is logged and skipped


def segment_key(stream_id: str, rendition: str, seq: int) -> str:
    return f"hls/{stream_id}/{rendition}/{seq:08d}.m4s"


def init_key(stream_id: str, rendition: str) -> str:
    return f"hls/{stream_id}/{rendition}/init.mp4"


def warm() -> None:
    """Run in each pool process once: PyAV and the codecs load before the first GOP."""
    import av  # noqa: F401

    av.codec.Codec("libx264", "w")


def gop_window_ms(gop: GopAvailable) -> tuple[Fraction, Fraction]:
    """The GOP's (pts, duration) in exact milliseconds, converted from the event's own time base."""
    return (gop_ms(gop.pts, gop.time_base_num, gop.time_base_den),
            gop_ms(gop.duration, gop.time_base_num, gop.time_base_den))


def segment_ready(gop: GopAvailable, out: RenditionOutput, now_ms: int) -> SegmentReady:
    """The SegmentReady of one rendition of one GOP (deterministic but for the envelope)."""
    _, duration_ms = gop_window_ms(gop)
    # The GOP's first frame reached the ingest about one GOP before the GOP was announced.
    pdt = gop.occurred_at - round(duration_ms)
    # One segment per GOP and no LL-HLS parts yet: ``parts`` stays empty.
    return SegmentReady(
        occurred_at=now_ms, stream_id=gop.stream_id, channel_id=gop.channel_id, rendition=out.rendition,
        seq=gop.seq, duration_ms=out.duration_ms, program_date_time=pdt, byte_size=len(out.segment),
        uri=f"{gop.seq:08d}.m4s", parts=(), discontinuity=gop.discontinuity, pts_90k=out.start_pts_90k,
        init_uri="init.mp4", codecs=out.codecs, bandwidth_bps=out.bandwidth_bps, width=out.width,
        height=out.height, fps=out.fps, audio_only=out.audio_only)


class TranscodeWorker:
    def __init__(self, settings: Settings, serde: AvroSerde, gops: BlobStore, origin: BlobStore,
                 client: aioredis.Redis) -> None:
        self.settings = settings
        self.serde = serde
        self.gops = gops
        self.origin = origin
        self.redis = client
        workers = settings.transcode.workers or os.cpu_count() or 1
        # forkserver, not fork: this process runs librdkafka threads, and a forked child
        # would inherit their locks mid-use.
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver"))
        self.workers = workers
        self.max_in_flight = settings.transcode.max_in_flight or 2 * workers
        self.producer = EventProducer(settings.kafka, serde)
        self.consumer = EventConsumer(settings.kafka, serde, ["media.gops"], group_id=settings.transcode.group_id,
                                      dead_letter=self.producer,
                                      **{"enable.auto.commit": False, "enable.partition.eof": False})
        self.offsets = OffsetTracker()
        self.thumbnails = ThumbnailSchedule()
        self.latencies_ms: list[float] = []
        self.done = 0
        self.stale = 0  # GOPs that arrived too late for the ladder and got their remuxes only

    async def _viewers(self, channel_id: str) -> int:
        raw = await self.redis.get(viewers_key(self.settings.valkey.key_prefix, channel_id))
        try:
            return int(raw) if raw is not None else 0
        except ValueError:
            return 0

    async def plan(self, gop: GopAvailable) -> list[Rendition]:
        ladder = self.settings.ladder
        return plan_ladder(ladder.mode, await self._viewers(gop.channel_id), gop.width, gop.height, gop.fps,
                           ladder.tier_small, ladder.tier_medium,
                           gop_kbps(gop.byte_size, gop.duration, gop.time_base_num, gop.time_base_den))

    async def handle(self, gop: GopAvailable) -> None:
        """Transcode, store and announce one GOP: remuxes first, the scaled rungs when they are done."""
        started = time.perf_counter()
        renditions = await self.plan(gop)
        age_s = time.time() - gop.occurred_at / 1000
        live = age_s <= self.settings.transcode.max_gop_age_s
        if not live:
            self.stale += 1
            renditions = [r for r in renditions if r.passthrough or r.audio_only]
        flv = await asyncio.to_thread(self.gops.get, gop.blob_ref)
        # Remuxes (source, audio) take milliseconds: list them without waiting for the encoders.
        remux = [r for r in renditions if r.passthrough or r.audio_only]
        scaled = [r for r in renditions if not (r.passthrough or r.audio_only)]
        work = [self._produce(gop, flv, part) for part in (remux, scaled) if part]
        stream_id, seq = gop.stream_id, gop.seq
        # A backlog GOP is history: the thumbnail shows the live picture.
        if live and self.thumbnails.claim(stream_id, seq):
            work.append(self._thumbnail(stream_id, seq, flv))
        await asyncio.gather(*work)
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        self.done += 1

    async def _produce(self, gop: GopAvailable, flv: bytes, renditions: list[Rendition]) -> None:
        stream_id, seq = gop.stream_id, gop.seq
        pts_ms, duration_ms = gop_window_ms(gop)
        loop = asyncio.get_running_loop()
        outputs: list[RenditionOutput] = await loop.run_in_executor(
            self.pool, transcode_gop, flv, renditions, seq, pts_ms, duration_ms)
        for out in outputs:
            await asyncio.to_thread(self._store, stream_id, seq, out)
        # Announce only once the segments' bytes are durable.
        now_ms = int(time.time() * 1000)
        await asyncio.gather(*[self.producer.send(segment_ready(gop, out, now_ms), stream_id) for out in outputs])

    async def _thumbnail(self, stream_id: str, seq: int, flv: bytes) -> None:
        """Refresh the stream's thumbnail from this GOP's keyframe; a failure costs only the thumbnail."""
        try:
            # One keyframe decode and a 320x180 JPEG: a few ms, in a thread (PyAV releases the GIL).
            jpeg = await asyncio.to_thread(gop_thumbnail, flv)
            await asyncio.to_thread(self.origin.put, thumbnail_key(stream_id), jpeg)
        except Exception:
            log.warning("thumbnail of GOP %s seq %d failed", stream_id, seq, exc_info=True)

    def _store(self, stream_id: str, seq: int, out: RenditionOutput) -> None:
        init = init_key(stream_id, out.rendition)
        if not self.origin.exists(f"file:{init}"):
            self.origin.put(init, out.init)
        self.origin.put(segment_key(stream_id, out.rendition, seq), out.segment)

    async def warm_up(self) -> None:
        """Start every pool process and import PyAV there before the first GOP arrives."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*[loop.run_in_executor(self.pool, warm) for _ in range(self.workers)])

    async def run(self, stop: asyncio.Event) -> None:
        await self.warm_up()
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                if len(tasks) >= self.max_in_flight:
                    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    continue
                event = await asyncio.to_thread(self.consumer.poll, 0.05)
                if event is None:
                    continue
                coords = (event.topic, event.partition)
                self.offsets.started(coords, event.offset)
                task = asyncio.create_task(self._run_one(event, coords))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            if tasks:
                await asyncio.wait(tasks, timeout=30)

    async def _run_one(self, event: Event, coords: tuple[str, int]) -> None:
        if isinstance(event.value, GopAvailable):
            await self._attempt(event.value)
        else:
            log.warning("%s at %s[%d]@%d skipped: a media worker transcodes GopAvailable only", event.type,
                        event.topic, event.partition, event.offset)
        # Done, or given up on after ATTEMPTS: either way later GOPs may be committed past it.
        commit = self.offsets.finished(coords, event.offset)
        if commit is not None:
            self.consumer.commit_offset(coords[0], coords[1], commit)

    async def _attempt(self, gop: GopAvailable) -> None:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await self.handle(gop)
                return
            except BlobNotFound as exc:
                # Permanent: the GOP's blob is gone (retention, or another deployment's store).
                log.warning("GOP %s seq %d skipped: %s", gop.stream_id, gop.seq, exc)
                return
            except Exception:
                log.exception("GOP %s seq %d failed (attempt %d of %d)", gop.stream_id, gop.seq, attempt, ATTEMPTS)
                await asyncio.sleep(0.5 * attempt)

    def close(self) -> None:
        self.consumer.close()
        self.producer.close(10.0)
        self.pool.shutdown(cancel_futures=True)

"""The media worker: ``GopAvailable`` in, one stored segment per rendition and ``SegmentReady`` out.

Workers share a consumer group on ``media.gops``.  Each GOP is planned
(ladder by audience), transcoded in a process pool sized to the machine (PyAV
work never runs on the event loop), stored in the origin under deterministic
names, then announced.  The newest GOP of each live stream also refreshes
the stream's thumbnail (media/transcode/thumbnail.py), beside the remuxes and
never in the way of an announcement; the first GOP of every 10 s of media
also stores a storyboard thumbnail (media/transcode/storyboard_thumbs.py).
Offsets are committed only past GOPs whose segments are all announced, so a
worker that dies mid-GOP leaves that
GOP to be done again: the same segment names are overwritten atomically with
the same content, and the segment index lists each (rendition, seq) once.
GOP times are read in the event's own time base (``time_base_num/den``),
never assumed to be milliseconds (``gop_window_ms``).

A failed GOP is retried (media/transcode/retry.py): for as long as it takes
when a dependency failed (Valkey, the broker, a store, the pool), a few times
when the GOP itself failed, never when its blob is gone.  A GOP being
retried holds the commit back and keeps the ladder it was planned with and
the age it had when it arrived, so catching up after an outage produces the
same renditions as if nothing had happened.  The ladder reads the audience
from Valkey; when Valkey does not answer, the last count this worker read
for the channel stands in, so live video keeps flowing through an outage.

The pool (a forkserver and its processes) dies with the worker, even one
killed with SIGKILL: both arm ``PR_SET_PDEATHSIG`` (media/lifeline.py).

Idle, the worker costs next to nothing: its consumer sleeps on the doorbell
of ``media.gops`` with its partitions paused (topics/doorbell.py), and the
loop asks it for the next GOP with a long poll (``POLL_S``) in a worker
thread rather than every 50 ms.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from fractions import Fraction

import redis.asyncio as aioredis
from confluent_kafka import KafkaException

from infra.settings import Settings
from media.blob import BlobStore
from media.lifeline import die_with_parent
from media.transcode import retry
from media.transcode.job import RenditionOutput, transcode_gop
from media.transcode.ladder import Rendition, gop_kbps, plan_ladder
from media.transcode.offsets import OffsetTracker
from media.transcode.part_worker import PartTranscoder
from media.transcode.retry import TranscodeFailed, Verdict, ViewersUnknown
from media.transcode.storyboard_thumbs import StoryboardThumbnails
from media.transcode.thumbnail import ThumbnailSchedule, gop_thumbnail, thumbnail_key
from media.transcode.timeline import gop_ms
from schemas.records.media import GopAvailable, PartReady, SegmentReady
from topics.consumer import Event, EventConsumer
from topics.errors import TopicsError
from topics.producer import EventProducer
from topics.serde import AvroSerde
from views.errors import VALKEY_UNAVAILABLE
from views.viewers import viewers_key

log = logging.getLogger("glasscast.transcode")

ATTEMPTS = retry.GOP_ATTEMPTS  # a GOP whose own failure repeats this often (a corrupt blob) is skipped
POOL_PRELOAD = "media.lifeline_preload"  # imported by the forkserver: it dies with this worker
POLL_ERROR_PAUSE_S = 0.5  # after the consumer reports an error (the broker is away)
# One poll's longest block, in a worker thread: a record (or, while idle, a ring of media.gops: topics/doorbell.py)
# ends it at once, so this only bounds how soon a stop is noticed.  Offsets committed meanwhile are sent as the
# poll returns (topics/consumer.py), so the event loop never waits for the consumer.
POLL_S = 1.0
REMUX_GRACE_S = 3.0  # how long a GOP's source segment may trail its GopAvailable before the worker makes it
VIEWERS_CACHE_MAX = 10_000  # channels whose last audience is remembered for a Valkey outage


class Outcome(enum.Enum):
    DONE = "done"
    SKIPPED = "skipped"  # given up on for good (retry.Verdict.SKIP, or out of attempts)
    ABANDONED = "abandoned"  # the worker is stopping: left uncommitted for the next one


@dataclass
class Job:
    """One GOP across its attempts: what it was planned with and how it has failed so far."""

    gop: GopAvailable
    received_s: float  # wall clock when this worker got it: its age for the live/backlog choice
    renditions: list[Rendition] | None = None  # planned once, kept across attempts
    backfill: list[Rendition] | None = None  # remuxes the ingest makes; made here if it did not
    live: bool | None = None
    failures: int = 0  # attempts that failed, whatever the cause (drives the back-off)
    own_failures: int = 0  # attempts that failed because of the GOP itself (Verdict.AGAIN)
    pool_breaks: int = 0
    errors: list[str] = field(default_factory=list)


def make_pool(workers: int) -> ProcessPoolExecutor:
    """A forkserver pool whose forkserver and processes die with this process (media/lifeline.py).

    forkserver, not fork: this process runs librdkafka threads, and a forked
    child would inherit their locks mid-use.  The preload arms the death
    signal in the forkserver as it starts; it takes effect only if this is the
    first forkserver use in the process (the forkserver is one per process).
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([POOL_PRELOAD])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=die_with_parent,
                               initargs=(signal.SIGKILL, os.getpid()))


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
        self.pool = make_pool(workers)
        self.workers = workers
        self.max_in_flight = settings.transcode.max_in_flight or 2 * workers
        # Not idempotent: a restarted broker has forgotten producer ids, which is fatal to an idempotent
        # producer (UNKNOWN_PRODUCER_ID); one request in flight keeps the order, and a SegmentReady sent
        # twice is listed once by the segment index.
        self.producer = EventProducer(settings.kafka, serde, **{
            "enable.idempotence": False, "max.in.flight.requests.per.connection": 1})
        self.consumer = EventConsumer(settings.kafka, serde, ["media.gops"], group_id=settings.transcode.group_id,
                                      dead_letter=self.producer,
                                      **{"enable.auto.commit": False, "enable.partition.eof": False})
        self.offsets = OffsetTracker()
        self.thumbnails = ThumbnailSchedule()
        self.storyboard = StoryboardThumbnails(gops, origin)
        self.latencies_ms: list[float] = []
        self.done = 0
        self.stale = 0  # GOPs that arrived too late for the ladder and got their remuxes only
        self.skipped = 0  # GOPs given up on for good
        self.retries = 0  # failed attempts that were tried again
        self.viewers: dict[str, int] = {}  # channel id -> the last audience read (for a Valkey outage)
        self.consumer_healthy = True
        self.backfilled = 0  # GOPs whose source/audio segment the ingest never stored (it died): remuxed here
        self.parts = PartTranscoder(settings, serde, origin, self.producer, self.plan_part)

    async def _viewers(self, channel_id: str) -> int:
        try:
            raw = await self.redis.get(viewers_key(self.settings.valkey.key_prefix, channel_id))
        except VALKEY_UNAVAILABLE as exc:
            known = self.viewers.get(channel_id)
            if known is None:
                raise ViewersUnknown(f"audience of channel {channel_id}: Valkey did not answer ({exc})") from exc
            return known
        try:
            count = int(raw) if raw is not None else 0
        except ValueError:
            count = 0
        if channel_id not in self.viewers and len(self.viewers) >= VIEWERS_CACHE_MAX:
            self.viewers.clear()
        self.viewers[channel_id] = count
        return count

    async def plan(self, gop: GopAvailable) -> list[Rendition]:
        ladder = self.settings.ladder
        # Only the tiered ladder depends on the audience: the others need no Valkey.
        viewers = await self._viewers(gop.channel_id) if ladder.mode == "tiered" else 0
        return plan_ladder(ladder.mode, viewers, gop.width, gop.height, gop.fps,
                           ladder.tier_small, ladder.tier_medium,
                           gop_kbps(gop.byte_size, gop.duration, gop.time_base_num, gop.time_base_den))

    async def plan_part(self, part: PartReady) -> list[Rendition]:
        """The ladder of the GOP a source part opens, planned as for a whole GOP (its bitrate not yet known)."""
        if not part.width or not part.height:
            return []
        ladder = self.settings.ladder
        viewers = await self._viewers(part.channel_id) if ladder.mode == "tiered" else 0
        return plan_ladder(ladder.mode, viewers, part.width, part.height, part.fps, ladder.tier_small,
                           ladder.tier_medium)

    async def handle(self, gop: GopAvailable, job: Job | None = None) -> None:
        """Transcode, store and announce one GOP: remuxes first, the scaled rungs when they are done.

        ``job`` carries the plan and the arrival time across attempts: a retried
        GOP keeps the ladder and the age it had on its first attempt.
        """
        started = time.perf_counter()
        self.storyboard.observe(gop)  # before any await: GOPs are observed in arrival order
        job = job or Job(gop, time.time())
        if job.renditions is None:
            planned = await self.plan(gop)
            # The ingest cuts the remuxes (source, audio) itself, as LL-HLS parts (media/ingest/parts.py).
            remux = [r for r in planned if r.passthrough or r.audio_only]
            scaled = [r for r in planned if not (r.passthrough or r.audio_only)]
            # The scaled rungs come part by part from the live path (part_worker.py) unless it is off.
            job.renditions = ((remux if self.settings.transcode.remux else [])
                              + ([] if self.settings.transcode.live_parts else scaled))
            job.backfill = [] if self.settings.transcode.remux else remux
        renditions = job.renditions
        if job.live is None:
            job.live = job.received_s - gop.occurred_at / 1000 <= self.settings.transcode.max_gop_age_s
            if not job.live:
                self.stale += 1
        live = job.live
        if not live:
            renditions = [r for r in renditions if r.passthrough or r.audio_only]
        flv = await asyncio.to_thread(self.gops.get, gop.blob_ref)
        # Remuxes (source, audio) take milliseconds: list them without waiting for the encoders.
        remux = [r for r in renditions if r.passthrough or r.audio_only]
        remux += await self._not_packaged(gop, job.backfill or [])
        scaled = [r for r in renditions if not (r.passthrough or r.audio_only)]
        work = [self._produce(gop, flv, part) for part in (remux, scaled) if part]
        stream_id, seq = gop.stream_id, gop.seq
        # A backlog GOP is history: the thumbnail shows the live picture.
        if live and self.thumbnails.claim(stream_id, seq):
            work.append(self._thumbnail(stream_id, seq, flv))
        work.append(self.storyboard.write(gop, flv))  # every 10 s of media, backlog too: the VOD needs it
        await asyncio.gather(*work)
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        self.done += 1

    async def _produce(self, gop: GopAvailable, flv: bytes, renditions: list[Rendition]) -> None:
        stream_id, seq = gop.stream_id, gop.seq
        pts_ms, duration_ms = gop_window_ms(gop)
        loop = asyncio.get_running_loop()
        pool = self.pool
        try:
            outputs: list[RenditionOutput] = await loop.run_in_executor(
                pool, transcode_gop, flv, renditions, seq, pts_ms, duration_ms)
        except BrokenProcessPool:
            self._replace_pool(pool)
            raise
        except Exception as exc:  # the job is pure CPU on the GOP's bytes: whatever it raises is the GOP's
            raise TranscodeFailed(f"{type(exc).__name__}: {exc}") from exc
        for out in outputs:
            await asyncio.to_thread(self._store, stream_id, seq, out)
        # Announce only once the segments' bytes are durable.
        now_ms = int(time.time() * 1000)
        await asyncio.gather(*[self.producer.send(segment_ready(gop, out, now_ms), stream_id) for out in outputs])

    async def _not_packaged(self, gop: GopAvailable, renditions: list[Rendition]) -> list[Rendition]:
        """The remuxes the ingest did not store for this GOP within ``REMUX_GRACE_S``: made here instead.

        The ingest stores a GOP's last part, and so its segment, when the next keyframe arrives,
        just as it stores the GOP; an ingest killed in between leaves the GOP without its source and
        audio segments, and the VOD without that GOP.  Normally the segment is already there.
        """
        deadline = time.monotonic() + REMUX_GRACE_S
        missing = renditions
        while missing:
            missing = [r for r in missing if not await asyncio.to_thread(
                self.origin.exists, self.origin.ref(segment_key(gop.stream_id, r.name, gop.seq)))]
            if not missing or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        if missing:
            log.warning("GOP %s seq %d: the ingest stored no %s segment; remuxing it here", gop.stream_id,
                        gop.seq, ", ".join(r.name for r in missing))
            self.backfilled += 1
        return missing

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
        if not self.origin.exists(self.origin.ref(init)):
            self.origin.put(init, out.init)
        self.origin.put(segment_key(stream_id, out.rendition, seq), out.segment)

    def _replace_pool(self, broken: ProcessPoolExecutor) -> None:
        """A new pool for one whose process died (once, whichever GOP noticed first)."""
        if self.pool is not broken:
            return
        log.warning("the transcode pool broke (a pool process died); starting a new one")
        broken.shutdown(wait=False, cancel_futures=True)
        self.pool = make_pool(self.workers)

    async def warm_up(self) -> None:
        """Start every pool process and import PyAV there before the first GOP arrives."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*[loop.run_in_executor(self.pool, warm) for _ in range(self.workers)])

    async def run(self, stop: asyncio.Event) -> None:
        await self.warm_up()
        live = asyncio.create_task(self.parts.run(stop), name="live-parts") if self.settings.transcode.live_parts \
            else None
        try:
            await self._run_gops(stop)
        finally:
            if live is not None:
                await live

    async def _run_gops(self, stop: asyncio.Event) -> None:
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                if len(tasks) >= self.max_in_flight:
                    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    continue
                event = await self._poll()
                if event is None:
                    continue
                coords = (event.topic, event.partition)
                self.offsets.started(coords, event.offset)
                task = asyncio.create_task(self._run_one(event, coords, stop))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            if tasks:
                await asyncio.wait(tasks, timeout=30)

    async def _poll(self) -> Event | None:
        """The next event; a consumer error (the broker is away) is logged once and waited out."""
        try:
            event = await asyncio.to_thread(self.consumer.poll, POLL_S)
        except (TopicsError, KafkaException) as exc:
            if self.consumer_healthy:
                log.warning("consumer error, waiting for the broker: %s", exc)
            self.consumer_healthy = False
            await asyncio.sleep(POLL_ERROR_PAUSE_S)
            return None
        if not self.consumer_healthy and event is not None:
            log.info("consuming again")
            self.consumer_healthy = True
        return event

    async def _run_one(self, event: Event, coords: tuple[str, int], stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        if isinstance(event.value, GopAvailable):
            outcome = await self._attempt(event.value, stop)
        else:
            log.warning("%s at %s[%d]@%d skipped: a media worker transcodes GopAvailable only", event.type,
                        event.topic, event.partition, event.offset)
            outcome = Outcome.SKIPPED
        if outcome is Outcome.ABANDONED:
            return  # not done: the offset stays uncommitted, and the next worker does this GOP again
        # Done, or given up on for good: either way later GOPs may be committed past it.
        commit = self.offsets.finished(coords, event.offset)
        if commit is not None:
            try:
                self.consumer.commit_offset(coords[0], coords[1], commit)
            except KafkaException as exc:  # a later commit covers this one; a restart redoes a few GOPs
                log.warning("commit of %s[%d]@%d failed: %s", coords[0], coords[1], commit, exc)

    async def _attempt(self, gop: GopAvailable, stop: asyncio.Event) -> Outcome:
        """Try one GOP until it is done, can never be done, or the worker stops (media/transcode/retry.py)."""
        job = Job(gop, time.time())
        while True:
            try:
                await asyncio.wait_for(self.handle(gop, job), retry.ATTEMPT_TIMEOUT_S)
                if job.failures:
                    log.info("GOP %s seq %d done after %d failed attempts", gop.stream_id, gop.seq, job.failures)
                return Outcome.DONE
            except Exception as exc:
                job.failures += 1
                job.errors.append(f"{type(exc).__name__}: {exc}")
                verdict = retry.verdict(exc)
                if isinstance(exc, BrokenProcessPool):
                    job.pool_breaks += 1
                    if job.pool_breaks >= retry.POOL_BREAKS:
                        verdict = Verdict.AGAIN  # it keeps killing its pool process: the GOP's own fault
                        job.own_failures = ATTEMPTS - 1
                if verdict is Verdict.SKIP:
                    log.warning("GOP %s seq %d skipped: %s", gop.stream_id, gop.seq, exc)
                    self.skipped += 1
                    return Outcome.SKIPPED
                if verdict is Verdict.AGAIN:
                    job.own_failures += 1
                    log.warning("GOP %s seq %d failed (attempt %d of %d): %s", gop.stream_id, gop.seq,
                                job.own_failures, ATTEMPTS, exc, exc_info=exc)
                    if job.own_failures >= ATTEMPTS:
                        log.error("GOP %s seq %d skipped after %d attempts: %s", gop.stream_id, gop.seq,
                                  ATTEMPTS, "; ".join(job.errors))
                        self.skipped += 1
                        return Outcome.SKIPPED
                elif job.failures == 1 or job.failures % 10 == 0:
                    log.warning("GOP %s seq %d waits for a dependency (attempt %d): %s", gop.stream_id, gop.seq,
                                job.failures, exc)
            self.retries += 1
            try:
                await asyncio.wait_for(stop.wait(), retry.backoff_s(job.failures))
                log.info("GOP %s seq %d left for the next worker: stopping", gop.stream_id, gop.seq)
                return Outcome.ABANDONED
            except TimeoutError:
                pass

    def close(self) -> None:
        self.parts.close()
        self.consumer.close()
        self.producer.close(10.0)
        self.pool.shutdown(cancel_futures=True)

"""The media worker: ``GopAvailable`` in, one stored segment per rendition and ``SegmentReady`` out.

Workers share a consumer group on ``media.gops``.  Each GOP is planned
(ladder by audience), transcoded in a process pool sized to the machine (PyAV
work never runs on the event loop), stored in the origin under deterministic
names, then announced.  Offsets are committed only past GOPs whose segments
are all announced, so a worker that dies mid-GOP leaves that GOP to be done
again: the same segment names are overwritten atomically with the same
content, and the segment index lists each (rendition, seq) once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import redis.asyncio as aioredis

from infra.settings import Settings
from media.blob import BlobStore
from media.transcode.job import RenditionOutput, transcode_gop
from media.transcode.ladder import Rendition, plan_ladder
from media.transcode.offsets import OffsetTracker
from processors.views.fold import to_ms, to_str
from topics.consumer import Event, EventConsumer
from topics.producer import EventProducer
from topics.serde import AvroSerde

log = logging.getLogger("glasscast.transcode")

SEGMENT_READY = "glasscast.media.SegmentReady"
ATTEMPTS = 3  # a GOP that fails this often (a corrupt blob) is logged and skipped


def segment_key(stream_id: str, rendition: str, seq: int) -> str:
    return f"hls/{stream_id}/{rendition}/{seq:08d}.m4s"


def init_key(stream_id: str, rendition: str) -> str:
    return f"hls/{stream_id}/{rendition}/init.mp4"


def viewers_key(prefix: str, channel_id: str) -> str:
    """Where the viewer-count view keeps a channel's current audience (written by the edge's processors)."""
    return f"{prefix}view:viewers:{channel_id}"


def segment_ready(gop: dict[str, Any], out: RenditionOutput, now_ms: int) -> dict[str, Any]:
    """The SegmentReady value for one rendition of one GOP (deterministic but for the envelope)."""
    import uuid

    stream_id = to_str(gop["stream_id"])
    seq = int(gop["seq"])
    # The GOP's first frame reached the ingest about one GOP before the GOP was announced.
    pdt = to_ms(gop["occurred_at"]) - int(gop["duration"])
    return {
        "event_id": str(uuid.uuid4()), "occurred_at": now_ms, "stream_id": stream_id,
        "channel_id": to_str(gop["channel_id"]), "rendition": out.rendition, "seq": seq,
        "duration_ms": out.duration_ms, "program_date_time": pdt, "byte_size": len(out.segment),
        "uri": f"{seq:08d}.m4s", "parts": [], "discontinuity": bool(gop.get("discontinuity")),
        "pts_90k": out.start_pts_ms * 90, "init_uri": "init.mp4", "codecs": out.codecs,
        "bandwidth_bps": out.bandwidth_bps, "width": out.width, "height": out.height, "fps": out.fps,
        "audio_only": out.audio_only,
    }


class TranscodeWorker:
    def __init__(self, settings: Settings, serde: AvroSerde, gops: BlobStore, origin: BlobStore,
                 client: aioredis.Redis) -> None:
        self.settings = settings
        self.serde = serde
        self.gops = gops
        self.origin = origin
        self.redis = client
        workers = settings.transcode.workers or os.cpu_count() or 1
        self.pool = ProcessPoolExecutor(max_workers=workers)
        self.max_in_flight = settings.transcode.max_in_flight or 2 * workers
        self.producer = EventProducer(settings.kafka, serde)
        self.consumer = EventConsumer(settings.kafka, serde, ["media.gops"], group_id=settings.transcode.group_id,
                                      dead_letter=self.producer,
                                      **{"enable.auto.commit": False, "enable.partition.eof": False})
        self.offsets = OffsetTracker()
        self.latencies_ms: list[float] = []
        self.done = 0

    async def _viewers(self, channel_id: str) -> int:
        raw = await self.redis.get(viewers_key(self.settings.valkey.key_prefix, channel_id))
        try:
            return int(raw) if raw is not None else 0
        except ValueError:
            return 0

    async def plan(self, gop: dict[str, Any]) -> list[Rendition]:
        ladder = self.settings.ladder
        return plan_ladder(ladder.mode, await self._viewers(to_str(gop["channel_id"])), int(gop["width"]),
                           int(gop["height"]), gop.get("fps"), ladder.tier_small, ladder.tier_medium)

    async def handle(self, event: Event) -> None:
        """Transcode, store and announce one GOP."""
        gop = event.value
        started = time.perf_counter()
        renditions = await self.plan(gop)
        stream_id = to_str(gop["stream_id"])
        flv = await asyncio.to_thread(self.gops.get, gop["blob_ref"])
        loop = asyncio.get_running_loop()
        outputs: list[RenditionOutput] = await loop.run_in_executor(
            self.pool, transcode_gop, flv, renditions, int(gop["seq"]), int(gop["pts"]), int(gop["duration"]))
        for out in outputs:
            await asyncio.to_thread(self._store, stream_id, int(gop["seq"]), out)
        # Announce only once every rendition's bytes are durable.
        await asyncio.gather(*[self.producer.send(SEGMENT_READY, stream_id, segment_ready(gop, out, int(time.time() * 1000)))
                               for out in outputs])
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        self.done += 1

    def _store(self, stream_id: str, seq: int, out: RenditionOutput) -> None:
        init = init_key(stream_id, out.rendition)
        if not self.origin.exists(f"file:{init}"):
            self.origin.put(init, out.init)
        self.origin.put(segment_key(stream_id, out.rendition, seq), out.segment)

    async def run(self, stop: asyncio.Event) -> None:
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
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await self.handle(event)
                break
            except Exception:
                log.exception("GOP %s seq %s failed (attempt %d of %d)", event.key, event.value.get("seq"),
                              attempt, ATTEMPTS)
                await asyncio.sleep(0.5 * attempt)
        # Done, or given up on after ATTEMPTS: either way later GOPs may be committed past it.
        commit = self.offsets.finished(coords, event.offset)
        if commit is not None:
            self.consumer.commit_offset(coords[0], coords[1], commit)

    def close(self) -> None:
        self.consumer.close()
        self.producer.close(10.0)
        self.pool.shutdown(cancel_futures=True)

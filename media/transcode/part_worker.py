"""The media worker's live path: source ``PartReady`` in, the scaled rungs' parts and segments out.

Workers share a consumer group on ``media.parts`` (keyed by stream, so one
worker has all of a stream's parts, in order).  For each part of the source
rendition (``media/ingest/parts.py`` stored it before announcing it) the
worker transcodes it into the same part of every scaled rung of the GOP's
ladder (``part_encoder.py``), stores each rung part in the origin, then
announces it with ``PartReady``.  A rung splits each GOP in two segments
where the ingest says (``PartReady.rung_split_part``, ``parts.rung_segment``:
media sequence numbers ``2 * seq`` and ``2 * seq + 1``), so that players
without LL-HLS, which hold back three segments, are half as far behind; with
each half's last part the worker stores the rung segment (its parts
concatenated) and announces ``SegmentReady`` listing the parts.  So a rung
part is out about one transcode after its source part, not one GOP later,
and the GOP stays the unit of distribution and of VOD (a GOP is its rungs'
two segments).

How a growing GOP reaches a worker: the parts themselves, through the origin
store, announced on Kafka.  The ingest has to store them for the players
anyway, so the worker adds no copy and no connection to the ingest, and a
worker that starts mid-GOP (a restart, a rebalance) reads the GOP's earlier
parts back from the store to rebuild its decoder and encoders (and stores and
announces those rung parts again: same names, duplicates every fold drops).

Offsets are committed after each source part is fully announced.  The ladder
is planned once per GOP, at its part 0, from the audience as the GOP path plans
it (``worker.py``); parts that arrive older than
``GLASSCAST_TRANSCODE_MAX_GOP_AGE_S`` (a backlog after an outage) get no rungs,
as whole GOPs do not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from confluent_kafka import KafkaException

from infra.settings import Settings
from media.blob import BlobError, BlobStore
from media.package.parts import part_key, part_uri, rung_segment
from media.transcode.ladder import Rendition
from media.transcode.part_encoder import GopParts, RungPart, SourceConfig, source_config
from schemas.record import new_event_id
from schemas.records.media import PartReady, SegmentPart, SegmentReady
from topics.consumer import EventConsumer
from topics.errors import TopicsError
from topics.producer import EventProducer
from topics.serde import AvroSerde

log = logging.getLogger("glasscast.transcode.parts")

SOURCE = "source"
POLL_S = 1.0  # a long poll in a worker thread: a record ends it at once; it bounds how soon a stop is seen
ERROR_PAUSE_S = 1.0
#: The rungs of a GOP: planned from the source part 0 (its size, rate and channel).
Plan = Callable[[PartReady], Awaitable[list[Rendition]]]


@dataclass
class _Gop:
    """The GOP a stream is in: its encoders, the rung segment being built, and where it continues."""

    seq: int
    next_index: int
    encoder: GopParts | None  # None: no scaled rung for this GOP
    pdt_ms: int
    rung_seq: int = -1  # the rungs' segment the parts below belong to (parts.rung_segment)
    rung_pdt_ms: int = 0
    parts: dict[str, list[bytes]] = field(default_factory=dict)
    entries: dict[str, list[SegmentPart]] = field(default_factory=dict)
    last_ready: dict[str, tuple[PartReady, RungPart]] = field(default_factory=dict)
    completed: set[int] = field(default_factory=set)  # rung segments stored and announced whole

    def begin(self, rung_seq: int, pdt_ms: int) -> None:
        self.rung_seq, self.rung_pdt_ms = rung_seq, pdt_ms
        self.parts, self.entries, self.last_ready = {}, {}, {}


class PartTranscoder:
    """Consume source parts, transcode them part by part, store and announce the rungs."""

    def __init__(self, settings: Settings, serde: AvroSerde, origin: BlobStore, producer: EventProducer,
                 plan: Plan) -> None:
        self.settings = settings
        self.origin = origin
        self.producer = producer
        self.plan = plan
        manual: dict[str, Any] = {"enable.auto.commit": False, "enable.partition.eof": False}
        self.consumer = EventConsumer(settings.kafka, serde, ["media.parts"],
                                      group_id=f"{settings.transcode.group_id}-parts", **manual)
        self.gops: dict[str, _Gop] = {}
        self.configs: dict[str, SourceConfig] = {}
        self.inits_stored: set[tuple[str, str]] = set()
        self.parts_done = 0
        self.latencies_ms: list[float] = []  # source PartReady acknowledged -> rung parts announced
        self._healthy = True

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                event = await asyncio.to_thread(self.consumer.poll, POLL_S)
            except (TopicsError, KafkaException) as exc:
                if self._healthy:
                    log.warning("consumer error, waiting for the broker: %s", exc)
                self._healthy = False
                await asyncio.sleep(ERROR_PAUSE_S)
                continue
            if event is None:
                continue
            self._healthy = True
            if isinstance(event.value, PartReady) and event.value.rendition == SOURCE:
                await self._handle_until_done(event.value, stop)
            try:
                self.consumer.commit_offset(event.topic, event.partition, event.offset + 1)
            except KafkaException as exc:  # a later commit covers it; a restart redoes a few parts
                log.warning("commit of %s[%d]@%d failed: %s", event.topic, event.partition, event.offset, exc)

    async def _handle_until_done(self, part: PartReady, stop: asyncio.Event) -> None:
        """A source part; a failure of a dependency is retried, a part that cannot be done is logged and left."""
        delay = 0.2
        while not stop.is_set():
            try:
                await self.handle(part)
                return
            except (TopicsError, BlobError, OSError) as exc:
                log.warning("part %s %d.%d waits for a dependency: %s", part.stream_id, part.seq, part.part, exc)
            except Exception:
                log.exception("part %s %d.%d failed; its rung parts are skipped", part.stream_id, part.seq,
                              part.part)
                self.gops.pop(part.stream_id, None)  # the GOP's encoders may be broken: start again at part 0
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def handle(self, part: PartReady) -> None:
        started = time.monotonic()
        stream_id = part.stream_id
        if time.time() - part.occurred_at / 1000 > self.settings.transcode.max_gop_age_s:
            return  # a backlog: history gets no rungs
        gop = self.gops.get(stream_id)
        if gop is None or gop.seq != part.seq or gop.next_index != part.part:
            gop = await self._start_gop(part)
            self.gops[stream_id] = gop
            for index in range(part.part):  # a worker that comes in mid-GOP replays its earlier parts
                await self._transcode(part, gop, index, last=False, redo=True)
        await self._transcode(part, gop, part.part, last=part.segment_complete)
        if part.segment_complete:
            self.gops.pop(stream_id, None)
        self.parts_done += 1
        self.latencies_ms.append((time.monotonic() - started) * 1000)

    async def _start_gop(self, part: PartReady) -> _Gop:
        rungs = [r for r in await self.plan(part) if not (r.passthrough or r.audio_only)]
        # Part 0's date; a worker that starts mid-GOP estimates it from the parts before (target each).
        pdt = part.program_date_time - part.part * part.part_target_ms
        if not rungs:
            return _Gop(part.seq, part.part, None, pdt)
        stream_id = part.stream_id
        init = await asyncio.to_thread(self.origin.get, self.origin_ref(f"hls/{stream_id}/{SOURCE}/init.mp4"))
        first = await asyncio.to_thread(self.origin.get, self.origin_ref(part_key(stream_id, SOURCE, part.seq, 0)))
        config = self.configs.get(stream_id)
        if config is None:
            config = await asyncio.to_thread(source_config, init, first)
            self.configs[stream_id] = config
        encoder = await asyncio.to_thread(GopParts, config, init, rungs, part.fps)
        return _Gop(part.seq, 0, encoder, pdt)

    def origin_ref(self, key: str) -> str:
        return self.origin.ref(key)

    async def _transcode(self, part: PartReady, gop: _Gop, index: int, last: bool, redo: bool = False) -> None:
        if gop.encoder is None:
            gop.next_index = index + 1
            return
        stream_id = part.stream_id
        split = part.rung_split_part
        rung_seq, rung_index = rung_segment(part.seq, index, split)
        events: list[PartReady | SegmentReady] = []
        if rung_index == 0 and rung_seq != gop.rung_seq:
            if gop.rung_seq >= 0 and gop.rung_seq not in gop.completed:
                # The GOP ended before its predicted middle: the ingest split it at its last part, so the
                # first half is complete only now (its last part is announced again, completing it).
                events += await self._complete(gop, part.seq, repeat=True)
            same = index == part.part and not redo
            gop.begin(rung_seq, part.program_date_time if same else gop.pdt_ms + index * part.part_target_ms)
        key = part_key(stream_id, SOURCE, part.seq, index)
        data = await asyncio.to_thread(self.origin.get, self.origin_ref(key))
        outs = await asyncio.to_thread(gop.encoder.part, data, index, last, rung_index)
        gop.next_index = index + 1
        ends_half = last or (split is not None and index == split - 1)
        for out in outs:
            if not out.data:
                continue
            name = out.rendition.name
            if (stream_id, name) not in self.inits_stored:
                await asyncio.to_thread(self.origin.put, f"hls/{stream_id}/{name}/init.mp4", out.init)
                self.inits_stored.add((stream_id, name))
            await asyncio.to_thread(self.origin.put, part_key(stream_id, name, rung_seq, rung_index), out.data)
            gop.parts.setdefault(name, []).append(out.data)
            ready = self._part_ready(part, gop, out, index, len(out.data), redo)
            gop.entries.setdefault(name, []).append(
                SegmentPart(uri=ready.uri, duration_ms=ready.duration_ms, independent=ready.independent))
            gop.last_ready[name] = (ready, out)
            if not ends_half:
                events.append(ready)
        if ends_half:
            events += await self._complete(gop, part.seq, repeat=False)
        await asyncio.gather(*[self.producer.send(e, stream_id) for e in events])

    async def _complete(self, gop: _Gop, seq: int, repeat: bool) -> list[PartReady | SegmentReady]:
        """Store each rung's segment (its parts concatenated); its last PartReady, marked complete, and its
        SegmentReady.  ``repeat``: that part was announced already, open; this announces it again, complete."""
        events: list[PartReady | SegmentReady] = []
        for name, (ready, out) in gop.last_ready.items():
            whole = b"".join(gop.parts[name])
            uri = f"{gop.rung_seq:08d}.m4s"
            await asyncio.to_thread(self.origin.put, f"hls/{ready.stream_id}/{name}/{uri}", whole)
            duration = sum(e.duration_ms for e in gop.entries[name])
            complete = replace(ready, event_id=new_event_id(), segment_complete=True, segment_uri=uri,
                               segment_duration_ms=duration)
            events += [complete, self._segment_ready(complete, out, gop, whole, duration)]
        gop.completed.add(gop.rung_seq)
        if repeat:
            log.info("stream GOP %d ended before its predicted middle: rung segment %d completed at the split",
                     seq, gop.rung_seq)
        return events

    def _part_ready(self, source: PartReady, gop: _Gop, out: RungPart, index: int, size: int,
                    redo: bool) -> PartReady:
        r = out.rendition
        same = index == source.part and not redo
        # A replayed earlier part is timed from its own bytes, its date estimated from the GOP's.
        duration = source.duration_ms if same else max(1, min(out.duration_ms, source.part_target_ms))
        date = source.program_date_time if same else gop.pdt_ms + index * source.part_target_ms
        rung_seq, rung_index = rung_segment(source.seq, index, source.rung_split_part)
        return PartReady(
            occurred_at=int(time.time() * 1000), stream_id=source.stream_id, channel_id=source.channel_id,
            rendition=r.name, seq=rung_seq, part=rung_index, uri=part_uri(rung_seq, rung_index),
            duration_ms=duration, independent=rung_index == 0,
            byte_size=size, program_date_time=date, part_target_ms=source.part_target_ms,
            discontinuity=source.discontinuity and rung_seq == 2 * source.seq,
            init_uri="init.mp4", codecs=out.codecs, width=r.width, height=r.height, fps=r.fps, audio_only=False)

    def _segment_ready(self, last: PartReady, out: RungPart, gop: _Gop, whole: bytes,
                       duration: int) -> SegmentReady:
        r = out.rendition
        return SegmentReady(
            occurred_at=int(time.time() * 1000), stream_id=last.stream_id, channel_id=last.channel_id,
            rendition=r.name, seq=gop.rung_seq, duration_ms=duration, program_date_time=gop.rung_pdt_ms,
            byte_size=len(whole), uri=f"{gop.rung_seq:08d}.m4s", parts=tuple(gop.entries[r.name]),
            discontinuity=last.discontinuity, pts_90k=None, init_uri="init.mp4", codecs=out.codecs,
            bandwidth_bps=len(whole) * 8 * 1000 // max(duration, 1), width=r.width, height=r.height, fps=r.fps,
            audio_only=False)

    def close(self) -> None:
        self.consumer.close()

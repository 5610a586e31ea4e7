"""The live edge of the LL-HLS playlists: the newest segments and the open one, with their parts, in memory.

Complete segments are indexed in Valkey by the processors (views/segments.py),
a hop too late for a blocking playlist reload.  Every gateway instead folds
``PartReady`` (``media.parts``) itself: per (stream, rendition) the last
``keep`` complete segments with their parts, the open segment (the one being
received), PART-TARGET and the rendition's init segment and codecs.  Every
gateway reads the same records in the same order (one partition per stream),
so every gateway folds the same edge and renders the same playlists.

Pure part (no I/O, no clock: time is passed in):

* ``fold_part(edge, record, keep)``: one record into one rendition's edge;
  ``None`` when it changes nothing (a redelivery, a part of a segment that is
  already past).  A segment whose parts did not all arrive from part 0, in
  order and within the draft's MUSTs (bis 4.4.4.9: at most PART-TARGET, at
  least 85 % of it unless independent or the segment's last, adding up to
  the segment) is kept but not ``listable``: the playlist lists it whole, with
  no EXT-X-PART lines.  The open segment's last part announced again as the
  segment's last completes it (a media worker learns only with the next part
  that a GOP ended before its predicted middle: ``media/package/parts.py``).
  A new segment abandons an open one that never completed (its GOP was lost
  with an ingest).
* ``LiveEdge``: those edges by stream, a version per stream (bumped by every
  change: renderings are shared per version), ``StreamEnded`` (directives
  are ignored once a stream ended), and ``expire``: streams silent for
  ``idle_ms`` are dropped, so memory is bounded by the live streams.
* ``satisfied``: whether a blocking request's condition holds (bis 6.2.5.2).

I/O shell: ``EdgeFeed`` reads ``media.parts`` and ``stream.lifecycle`` with
no consumer group (every partition, from ``offsets_for_times(now -
lookback)``, so a restarted gateway rebuilds the edge) in a thread.  Records
are handed to the event loop in batches (``call_soon_threadsafe``) and
folded there, so the edge is only touched by the loop; each changed stream
then resolves the futures its held requests wait on.  Nothing polls: a
request is answered by the event that satisfies it.  Futures are shared per
condition, so thousands of players waiting for the same part wait on one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Container, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Literal, TypeVar

from infra.settings import Settings
from media.package.playlist import SegmentEntry
from schemas.record import Record
from schemas.records.media import PartReady
from schemas.records.stream import StreamEnded
from topics.consumer import EventConsumer
from topics.serde import AvroSerde

log = logging.getLogger("glasscast.gateway.edge")

TOPICS = ("media.parts", "stream.lifecycle")
MIN_SHARE_PCT = 85  # bis 4.4.4.9: a part lasts at least 85 % of PART-TARGET unless independent or its segment's last
MAX_PARTS = 600  # parts of one segment kept (2 minutes of 200 ms parts): a runaway producer cannot grow memory
POLL_S = 0.2  # the consumer thread's longest block: how soon it notices close(); records wake it at once
BATCH = 500  # records handed to the loop at once (a restart's replay)
EXPIRE_EVERY_MS = 1000
RETRY_S = (0.2, 5.0)  # the consumer thread's back-off after an error, first and longest


@dataclass(frozen=True, slots=True)
class EdgePart:
    index: int
    uri: str
    duration_ms: int
    independent: bool
    byte_size: int


@dataclass(frozen=True, slots=True)
class EdgeSegment:
    """One segment at the edge: open (``uri`` None) or complete."""

    seq: int
    parts: tuple[EdgePart, ...]
    first_pdt_ms: int  # the first part's PROGRAM-DATE-TIME (the segment's own when ``listable``)
    discontinuity: bool
    listable: bool  # parts from 0, in order, within the MUSTs: they may be listed as EXT-X-PART
    uri: str | None = None
    duration_ms: int | None = None
    program_date_time_ms: int | None = None  # set when complete

    @property
    def complete(self) -> bool:
        return self.uri is not None

    @property
    def byte_size(self) -> int:
        return sum(p.byte_size for p in self.parts)


@dataclass(frozen=True, slots=True)
class RenditionEdge:
    """One rendition's edge: the last complete segments (oldest first) and the open one."""

    stream_id: str
    rendition: str
    part_target_ms: int
    init_uri: str
    codecs: str
    audio_only: bool
    width: int | None
    height: int | None
    fps: float | None
    complete: tuple[EdgeSegment, ...] = ()
    open: EdgeSegment | None = None
    longest_segment_ms: int = 0  # of every complete segment folded: the target duration's floor

    @property
    def last_seq(self) -> int:
        """The newest segment's seq, open or complete; -1 for none."""
        if self.open is not None:
            return self.open.seq
        return self.complete[-1].seq if self.complete else -1

    @property
    def last_complete_seq(self) -> int:
        """The newest complete segment's seq; one before the open segment when none is held."""
        if self.complete:
            return self.complete[-1].seq
        return self.open.seq - 1 if self.open is not None else -1

    def position(self) -> tuple[int, int]:
        """(msn, part index) of the newest part."""
        newest = self.open if self.open is not None else self.complete[-1] if self.complete else None
        if newest is None or not newest.parts:
            return (-1, -1)
        return (newest.seq, newest.parts[-1].index)

    def report(self) -> tuple[int, int | None]:
        """LAST-MSN and LAST-PART as a playlist of this rendition lists them (bis 4.4.5.4)."""
        if self.open is not None and self.open.listable:
            return self.open.seq, self.open.parts[-1].index
        last = self.last_complete_seq
        segment = self.complete[-1] if self.complete else None
        return last, segment.parts[-1].index if segment is not None and segment.listable else None

    def target_duration_s(self) -> int:
        """EXT-X-TARGETDURATION as the complete segments seen here imply it (at least 1)."""
        return max(1, (self.longest_segment_ms + 500) // 1000)


def part_ok(duration_ms: int, independent: bool, last: bool, part_target_ms: int) -> bool:
    """The MUSTs of bis 4.4.4.9 for one part's duration (85 % in integers, as the renderer checks it)."""
    long_enough = independent or last or duration_ms * 100 >= MIN_SHARE_PCT * part_target_ms
    return 0 < duration_ms <= part_target_ms and long_enough


def _part(p: PartReady) -> EdgePart:
    return EdgePart(p.part, p.uri, p.duration_ms, p.independent, p.byte_size)


def _new_segment(p: PartReady) -> EdgeSegment:
    ok = p.part == 0 and part_ok(p.duration_ms, p.independent, p.segment_complete, p.part_target_ms)
    return EdgeSegment(p.seq, (_part(p),), p.program_date_time, p.discontinuity, ok)


def _extend(segment: EdgeSegment, p: PartReady) -> EdgeSegment:
    ok = (segment.listable and p.part == segment.parts[-1].index + 1
          and part_ok(p.duration_ms, p.independent, p.segment_complete, p.part_target_ms))
    return replace(segment, parts=(*segment.parts, _part(p))[-MAX_PARTS:], listable=ok)


def _complete(segment: EdgeSegment, p: PartReady) -> EdgeSegment:
    duration = p.segment_duration_ms or sum(part.duration_ms for part in segment.parts)
    total = sum(part.duration_ms for part in segment.parts)
    listable = segment.listable and abs(total - duration) <= len(segment.parts)
    # A segment seen from its first part starts there; one joined late ends where its last part ends.
    start = segment.first_pdt_ms if segment.parts[0].index == 0 else p.program_date_time + p.duration_ms - duration
    return replace(segment, uri=p.segment_uri or f"{p.seq:08d}.m4s", duration_ms=duration,
                   program_date_time_ms=max(0, start), listable=listable)


def fold_part(edge: RenditionEdge | None, p: PartReady, keep: int) -> RenditionEdge | None:
    """Fold one PartReady into its rendition's edge; None when nothing changes."""
    if edge is not None and edge.open is not None and p.seq == edge.open.seq:
        if p.segment_complete and p.part == edge.open.parts[-1].index:
            segment = edge.open  # its last part again, now saying the segment is complete (a late rung split)
        elif p.part <= edge.open.parts[-1].index:
            return None  # redelivered
        else:
            segment = _extend(edge.open, p)
    elif edge is not None and p.seq <= edge.last_seq:
        return None  # a segment already complete, or older than the edge
    else:
        segment = _new_segment(p)  # a new segment; an open one that never completed is abandoned
    if edge is None:
        edge = RenditionEdge(p.stream_id, p.rendition, p.part_target_ms, p.init_uri, p.codecs, p.audio_only,
                             p.width, p.height, p.fps)
    edge = replace(edge, part_target_ms=p.part_target_ms, init_uri=p.init_uri, codecs=p.codecs,
                   audio_only=p.audio_only, width=p.width, height=p.height, fps=p.fps)
    if not p.segment_complete:
        return replace(edge, open=segment)
    done = _complete(segment, p)
    return replace(edge, open=None, complete=(*edge.complete, done)[-keep:],
                   longest_segment_ms=max(edge.longest_segment_ms, done.duration_ms or 0))


# A blocking request's condition: ("segment", M, None) segment M complete; ("part", M, P) part P of M (or
# part 0 of M+1 when P is past M's last part); ("hint", M, P) the hinted part exists or M completed without it.
Target = tuple[Literal["segment", "part", "hint"], int, int | None]


def satisfied(edge: RenditionEdge | None, target: Target) -> bool:
    if edge is None:
        return False
    kind, msn, part = target
    if kind == "segment":
        return edge.last_complete_seq >= msn
    at = edge.position()
    if kind == "hint" and edge.last_complete_seq >= msn:
        return True
    return at >= (msn, part or 0)  # (M+1, 0) > (M, P) for any P: past the last part means part 0 of the next


@dataclass
class _Stream:
    renditions: dict[str, RenditionEdge] = field(default_factory=dict)
    version: int = 0
    seen_ms: int = 0
    ended: bool = False


class LiveEdge:
    """The edges of every live stream; mutated only by ``apply`` and ``expire``."""

    def __init__(self, keep_segments: int = 4, idle_ms: int = 60_000) -> None:
        if keep_segments < 1 or idle_ms < 1:
            raise ValueError("keep_segments and idle_ms must be >= 1")
        self.keep = keep_segments
        self.idle_ms = idle_ms
        self._streams: dict[str, _Stream] = {}

    def __len__(self) -> int:
        return len(self._streams)

    def apply(self, record: Record, now_ms: int) -> str | None:
        """Fold one record; the stream id when its edge changed."""
        if isinstance(record, PartReady):
            stream = self._streams.get(record.stream_id)
            old = None if stream is None else stream.renditions.get(record.rendition)
            new = fold_part(old, record, self.keep)
            if new is None:
                return None
            if stream is None:
                stream = self._streams[record.stream_id] = _Stream()
            stream.renditions[record.rendition] = new
        elif isinstance(record, StreamEnded):
            stream = self._streams.get(record.stream_id)
            if stream is None or stream.ended:
                return None  # a stream with no parts here needs no end: its playlists are not LL
            stream.ended = True
        else:
            return None
        stream.version += 1
        stream.seen_ms = now_ms
        return record.stream_id

    def expire(self, now_ms: int) -> list[str]:
        """Drop the streams nothing was heard of for ``idle_ms``; their ids."""
        gone = [sid for sid, s in self._streams.items() if now_ms - s.seen_ms > self.idle_ms]
        for sid in gone:
            del self._streams[sid]
        return gone

    def rendition(self, stream_id: str, rendition: str) -> RenditionEdge | None:
        stream = self._streams.get(stream_id)
        return None if stream is None else stream.renditions.get(rendition)

    def renditions(self, stream_id: str) -> Mapping[str, RenditionEdge]:
        stream = self._streams.get(stream_id)
        return {} if stream is None else stream.renditions

    def version(self, stream_id: str) -> int:
        stream = self._streams.get(stream_id)
        return -1 if stream is None else stream.version

    def ended(self, stream_id: str) -> bool:
        stream = self._streams.get(stream_id)
        return stream is not None and stream.ended


class Waiters:
    """Held requests' conditions per stream, each one future shared by every request with that condition."""

    def __init__(self) -> None:
        self._by_stream: dict[str, dict[tuple[str, Target], asyncio.Future[None]]] = {}

    def __len__(self) -> int:
        return sum(len(w) for w in self._by_stream.values())

    def waiting(self, stream_id: str) -> int:
        """How many conditions of one stream are waited on."""
        return len(self._by_stream.get(stream_id, ()))

    def renditions(self, stream_id: str) -> set[str]:
        """The renditions of a stream that requests wait on."""
        return {rendition for rendition, _ in self._by_stream.get(stream_id, ())}

    def future(self, stream_id: str, rendition: str, target: Target) -> asyncio.Future[None]:
        waiting = self._by_stream.setdefault(stream_id, {})
        fut = waiting.get((rendition, target))
        if fut is None:
            fut = waiting[(rendition, target)] = asyncio.get_running_loop().create_future()
        return fut

    def wake(self, stream_id: str, check: Callable[[str, Target], bool]) -> int:
        """Resolve the stream's conditions that ``check`` says hold (all of them when it says so)."""
        waiting = self._by_stream.get(stream_id)
        if not waiting:
            return 0
        done = [k for k in waiting if check(*k)]
        for k in done:
            fut = waiting.pop(k)
            if not fut.done():
                fut.set_result(None)
        if not waiting:
            del self._by_stream[stream_id]
        return len(done)

    def wake_all(self) -> None:
        for stream_id in list(self._by_stream):
            self.wake(stream_id, lambda _r, _t: True)


@dataclass(frozen=True, slots=True)
class IndexTail:
    """What the segment index (views/segments.py) adds to the edge: the stream's state and its newest segments.

    ``segments`` are the last ones indexed (segment URIs without a token), ``discontinuities_before``
    the discontinuity flags of the ones left out, and ``target_s`` the target duration from every
    segment ever indexed (it must never change).
    """

    ended: bool
    segments: tuple[SegmentEntry, ...]
    discontinuities_before: int
    target_s: int


T = TypeVar("T")


Key = tuple[object, ...]  # (stream_id, ...): what a shared result is made for


@dataclass
class _Made(Generic[T]):
    version: int
    at: float
    result: asyncio.Future[T]
    make: Callable[[], Awaitable[T]]


class Shared(Generic[T]):
    """Results made once per (key, version) and shared by every request that asks meanwhile.

    A woken blocking reload renders once per stream, rendition, edge version and skip: the
    thousands of requests held for the same part share one rendering.  A result is reused
    for ``max_age_s`` at most (what it read besides the edge may change without a new
    version); a failure is not kept.  ``remake`` starts the results a stream's held requests
    will want before they are woken, so each of them answers in one step.
    """

    def __init__(self, max_age_s: float = 1.0, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic, stale_while_revalidate: bool = False) -> None:
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self.clock = clock
        self.stale_while_revalidate = stale_while_revalidate  # an aged result answers once more while remade
        self.made = 0  # results made (tests, metrics)
        self._entries: dict[Key, _Made[T]] = {}

    async def get(self, key: Key, version: int, make: Callable[[], Awaitable[T]]) -> T:
        entry = self._entries.get(key)
        if entry is None or entry.version != version:
            entry = self._make(key, version, make)
        elif entry.result.done() and self.clock() - entry.at > self.max_age_s:
            aged, entry = entry.result, self._make(key, version, make)
            if self.stale_while_revalidate and not aged.cancelled() and aged.exception() is None:
                return aged.result()
        return await asyncio.shield(entry.result)  # a request that goes away does not cancel the others' result

    def remake(self, stream_id: str, version: int, renditions: Container[object] | None = None) -> int:
        """Start, for ``version``, the results of the stream (of ``renditions``: the keys' second item)
        made before; how many."""
        stale = [(k, e.make) for k, e in self._entries.items() if k[0] == stream_id and e.version != version
                 and (renditions is None or (len(k) > 1 and k[1] in renditions))]
        for key, make in stale:
            self._make(key, version, make)
        return len(stale)

    def forget(self, stream_id: str) -> None:
        """Drop a stream's results (it left the edge)."""
        for key in [k for k in self._entries if k[0] == stream_id]:
            del self._entries[key]

    def _make(self, key: Key, version: int, make: Callable[[], Awaitable[T]]) -> _Made[T]:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        task = asyncio.ensure_future(make())
        self.made += 1
        entry = self._entries[key] = _Made(version, self.clock(), task, make)
        task.add_done_callback(functools.partial(self._forget_failure, key))
        return entry

    def _forget_failure(self, key: Key, task: asyncio.Future[T]) -> None:
        if not task.cancelled() and task.exception() is None:
            return
        entry = self._entries.get(key)
        if entry is not None and entry.result is task:
            del self._entries[key]


class EdgeFeed:
    """The live edge kept current from the log, and held requests woken by it (see the module docstring)."""

    def __init__(self, settings: Settings, serde: AvroSerde, clock: Callable[[], float] = time.time) -> None:
        g = settings.gateway
        self.settings = settings
        self.serde = serde
        self.clock = clock
        self.edge = LiveEdge(g.live_edge_segments, int(g.live_edge_idle_s * 1000))
        self.waiters = Waiters()
        self.renderings: Shared[tuple[str, str]] = Shared()  # per (stream, rendition, skip) and edge version
        # Per (stream, rendition), read at most once a second, and never waited for once read: a woken
        # rendering must not wait for Valkey (what the index adds changes once a segment at most).
        self.indexes: Shared[IndexTail] = Shared(stale_while_revalidate=True)
        self.records = 0  # folded records (tests, metrics)
        self.held = 0  # requests waiting now (tests, metrics)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._expired_at = 0

    # -- the loop side ------------------------------------------------------
    async def start(self) -> bool:
        """Start reading; True once the edge has caught up with the log (bounded by the settings)."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="live-edge", daemon=True)
        self._thread.start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.gateway.live_edge_ready_timeout_s):
                await self._ready.wait()
        if not self._ready.is_set():
            log.warning("live edge not caught up with media.parts after %.1f s; serving anyway",
                        self.settings.gateway.live_edge_ready_timeout_s)
        return self._ready.is_set()

    async def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)
        self.waiters.wake_all()  # held requests answer now (503), not when their time is up

    def get(self, stream_id: str, rendition: str) -> RenditionEdge | None:
        return self.edge.rendition(stream_id, rendition)

    def renditions(self, stream_id: str) -> Mapping[str, RenditionEdge]:
        return self.edge.renditions(stream_id)

    def version(self, stream_id: str) -> int:
        return self.edge.version(stream_id)

    def ended(self, stream_id: str) -> bool:
        return self.edge.ended(stream_id)

    async def wait(self, stream_id: str, rendition: str, target: Target, timeout_s: float) -> bool:
        """Hold until ``target`` holds for the rendition or its stream ends; False after ``timeout_s``."""
        check = self._checker(stream_id)
        if check(rendition, target):
            return True
        fut = self.waiters.future(stream_id, rendition, target)
        self.held += 1
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(fut)  # shared: one request giving up does not cancel the others'
        finally:
            self.held -= 1
        return self._checker(stream_id)(rendition, target)

    def _checker(self, stream_id: str) -> Callable[[str, Target], bool]:
        ended = self.edge.ended(stream_id)

        def check(rendition: str, target: Target) -> bool:
            return ended or satisfied(self.edge.rendition(stream_id, rendition), target)

        return check

    def _apply(self, records: list[Record], caught_up: bool) -> None:
        now_ms = int(self.clock() * 1000)
        changed = {sid for sid in (self.edge.apply(r, now_ms) for r in records) if sid is not None}
        self.records += len(records)
        for sid in changed:
            if self.waiters.waiting(sid):  # render first: the woken requests then answer without waiting again
                self.renderings.remake(sid, self.edge.version(sid), self.waiters.renditions(sid))
            self.waiters.wake(sid, self._checker(sid))
        if now_ms - self._expired_at >= EXPIRE_EVERY_MS:
            self._expired_at = now_ms
            for sid in self.edge.expire(now_ms):
                self.waiters.wake(sid, lambda _r, _t: True)
                self.renderings.forget(sid)
                self.indexes.forget(sid)
        if caught_up:
            self._ready.set()

    # -- the consumer thread ------------------------------------------------
    def _run(self) -> None:
        delay = RETRY_S[0]
        while not self._stop.is_set():
            try:
                for batch, caught_up in self._batches():
                    delay = RETRY_S[0]
                    self._hand_over(batch, caught_up)
            except Exception:  # never let the thread die: the edge would freeze
                log.exception("live edge consumer failed; reconnecting in %.1f s", delay)
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_S[1])

    def _hand_over(self, batch: list[Record], caught_up: bool) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._apply, batch, caught_up)

    def _batches(self) -> Iterator[tuple[list[Record], bool]]:
        """Batches of relevant records, and whether the consumer has reached the end of every partition."""
        kafka = self.settings.kafka
        latency_critical: dict[str, Any] = {"fetch.wait.max.ms": kafka.fetch_wait_max_ms}
        consumer = EventConsumer(kafka, self.serde, TOPICS, **latency_critical)
        try:
            consumer.assign("end")
            consumer.seek_to_time(int((self.clock() - self.settings.gateway.live_edge_lookback_s) * 1000))
            reported = False
            while not self._stop.is_set():
                batch: list[Record] = []
                event = consumer.poll(POLL_S)
                while event is not None:
                    if isinstance(event.value, PartReady | StreamEnded):
                        batch.append(event.value)
                    if len(batch) >= BATCH:
                        break
                    event = consumer.poll(0)  # what is already fetched, without waiting
                caught_up = not reported and consumer.caught_up()
                if batch or caught_up:
                    reported = reported or caught_up
                    yield batch, caught_up
        finally:
            consumer.close()

"""The live edge fold (gateways/live_edge.py): PartReady records into each rendition's newest segments and parts."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from gateways.live_edge import (
    LiveEdge,
    RenditionEdge,
    Shared,
    Target,
    Waiters,
    fold_part,
    part_ok,
    satisfied,
)
from schemas.records.media import PartReady
from schemas.records.stream import StreamEnded

STREAM = str(uuid.uuid4())
CHANNEL = str(uuid.uuid4())
PT = 223  # PART-TARGET at 30 fps
T0 = 1_790_000_000_000


def part(seq: int, index: int, *, last_of: int | None = None, duration: int = 200, rendition: str = "source",
         stream: str = STREAM, **changes: Any) -> PartReady:
    """Part ``index`` of segment ``seq``; ``last_of=n``: the last of n parts (the segment completes)."""
    complete = last_of is not None
    fields: dict[str, Any] = dict(
        occurred_at=T0, stream_id=stream, channel_id=CHANNEL, rendition=rendition, seq=seq, part=index,
        uri=f"{seq:08d}.{index}.m4s", duration_ms=duration, independent=index == 0, byte_size=1000,
        program_date_time=T0 + seq * 2000 + index * 200, part_target_ms=PT, segment_complete=complete,
        segment_uri=f"{seq:08d}.m4s" if complete else None,
        segment_duration_ms=(index * 200 + duration) if complete else None, init_uri="init.mp4",
        codecs="avc1.64001f,mp4a.40.2", width=1280, height=720, fps=30.0)
    fields.update(changes)
    return PartReady(**fields)


def segment_parts(seq: int, n: int = 10, **changes: Any) -> list[PartReady]:
    return [part(seq, i, last_of=n if i == n - 1 else None, **changes) for i in range(n)]


def fold_all(records: list[PartReady], keep: int = 4, edge: RenditionEdge | None = None) -> RenditionEdge:
    for r in records:
        edge = fold_part(edge, r, keep) or edge
    assert edge is not None
    return edge


def test_parts_build_the_open_segment_then_a_complete_one() -> None:
    edge = fold_all([part(0, 0), part(0, 1)])
    assert edge.open is not None and [p.index for p in edge.open.parts] == [0, 1] and edge.open.listable
    assert edge.complete == () and edge.last_seq == 0 and edge.last_complete_seq == -1
    assert edge.position() == (0, 1) and edge.report() == (0, 1)
    edge = fold_all(segment_parts(0)[2:], edge=edge)
    assert edge.open is None and len(edge.complete) == 1
    done = edge.complete[0]
    assert done.complete and done.uri == "00000000.m4s" and done.duration_ms == 2000 and done.listable
    assert done.program_date_time_ms == T0 and done.byte_size == 10_000
    assert edge.position() == (0, 9) and edge.report() == (0, 9) and edge.target_duration_s() == 2
    assert (edge.part_target_ms, edge.init_uri, edge.codecs, edge.width) == (PT, "init.mp4", "avc1.64001f,mp4a.40.2",
                                                                               1280)


def test_only_the_last_segments_are_kept() -> None:
    edge = fold_all([r for seq in range(10) for r in segment_parts(seq)] + [part(10, 0)], keep=4)
    assert [s.seq for s in edge.complete] == [6, 7, 8, 9] and edge.open is not None and edge.open.seq == 10
    assert edge.last_complete_seq == 9 and edge.last_seq == 10


def test_redeliveries_and_older_segments_change_nothing() -> None:
    edge = fold_all(segment_parts(0) + [part(1, 0), part(1, 1)])
    assert fold_part(edge, part(1, 1), 4) is None  # redelivered
    assert fold_part(edge, part(1, 0), 4) is None
    assert fold_part(edge, part(0, 3), 4) is None  # a segment already complete
    assert fold_part(edge, part(0, 9, last_of=10), 4) is None


def test_a_new_segment_abandons_an_open_one_that_never_completed() -> None:
    edge = fold_all(segment_parts(0) + [part(1, 0), part(1, 1), part(2, 0)])
    assert [s.seq for s in edge.complete] == [0] and edge.open is not None and edge.open.seq == 2
    assert edge.last_complete_seq == 0 and edge.position() == (2, 0)


def test_a_segment_joined_late_is_kept_whole_but_lists_no_parts() -> None:
    # A gateway that starts reading in the middle of a segment: its parts cannot be listed.
    edge = fold_all(segment_parts(0)[4:])
    done = edge.complete[0]
    assert not done.listable and done.duration_ms == 2000
    assert done.program_date_time_ms == T0  # from where its last part ends
    assert edge.report() == (0, None)
    edge = fold_all([part(1, 2), part(1, 3)])
    assert edge.open is not None and not edge.open.listable and edge.report() == (0, None)


def test_parts_that_break_a_must_make_their_segment_unlistable() -> None:
    assert part_ok(200, False, False, PT) and part_ok(190, False, False, PT)  # 190 >= 85 % of 223 (189.55)
    assert not part_ok(189, False, False, PT) and part_ok(189, True, False, PT) and part_ok(50, False, True, PT)
    assert not part_ok(224, True, True, PT) and not part_ok(0, True, True, PT)
    too_long = fold_all([part(0, 0), part(0, 1, duration=250)])
    assert too_long.open is not None and not too_long.open.listable
    too_short = fold_all([part(0, 0), part(0, 1, duration=100)])
    assert too_short.open is not None and not too_short.open.listable
    short_last = fold_all([part(0, 0), part(0, 1, duration=100, last_of=2)])
    assert short_last.complete[0].listable and short_last.complete[0].duration_ms == 300
    hole = fold_all([part(0, 0), part(0, 2)])
    assert hole.open is not None and not hole.open.listable
    off = fold_all([part(0, 0), part(0, 1, last_of=2, segment_duration_ms=450)])
    assert not off.complete[0].listable  # 400 ms of parts for a 450 ms segment


def test_satisfied_follows_the_blocking_reload_rules() -> None:
    edge = fold_all(segment_parts(0) + [part(1, 0), part(1, 1)])

    def ok(target: Target) -> bool:
        return satisfied(edge, target)

    assert ok(("segment", 0, None)) and not ok(("segment", 1, None))
    assert ok(("part", 1, 1)) and ok(("part", 0, 9)) and ok(("part", 0, 12))  # past 0's last part: part 0 of 1
    assert not ok(("part", 1, 2)) and not ok(("part", 2, 0))
    assert ok(("hint", 1, 1)) and not ok(("hint", 1, 2))
    assert not satisfied(None, ("part", 0, 0))
    # _HLS_part past the open segment's last part waits for part 0 of the next segment.
    edge = fold_all([part(1, i, last_of=10 if i == 9 else None) for i in range(2, 10)], edge=edge)
    assert ok(("segment", 1, None)) and not ok(("part", 1, 10)) and ok(("hint", 1, 10))  # completed without it
    edge = fold_all([part(2, 0)], edge=edge)
    assert ok(("part", 1, 10)) and ok(("part", 2, 0)) and not ok(("part", 2, 1))


def test_the_live_edge_versions_streams_ends_them_and_drops_silent_ones() -> None:
    live = LiveEdge(keep_segments=4, idle_ms=60_000)
    other = str(uuid.uuid4())
    assert live.version(STREAM) == -1 and live.rendition(STREAM, "source") is None
    assert live.apply(part(0, 0), 1000) == STREAM and live.version(STREAM) == 1
    assert live.apply(part(0, 0, rendition="audio"), 1000) == STREAM and live.version(STREAM) == 2
    assert live.apply(part(0, 0), 1000) is None and live.version(STREAM) == 2  # redelivered: no new version
    assert set(live.renditions(STREAM)) == {"source", "audio"}
    assert live.apply(part(0, 0, stream=other), 30_000) == other
    end = StreamEnded(occurred_at=T0, stream_id=STREAM, channel_id=CHANNEL, started_at=T0, duration_ms=2000)
    assert not live.ended(STREAM)
    assert live.apply(end, 2000) == STREAM and live.ended(STREAM) and live.version(STREAM) == 3
    assert live.apply(end, 2000) is None
    assert live.apply(StreamEnded(occurred_at=T0, stream_id=str(uuid.uuid4()), channel_id=CHANNEL, started_at=T0,
                                  duration_ms=1), 2000) is None and len(live) == 2  # not kept: it had no parts here
    assert live.expire(62_000) == [] and live.expire(62_001) == [STREAM] and len(live) == 1
    assert live.rendition(STREAM, "source") is None and live.rendition(other, "source") is not None
    with pytest.raises(ValueError):
        LiveEdge(keep_segments=0)


async def test_waiters_share_one_future_per_condition_and_wake_only_what_holds() -> None:
    waiters = Waiters()
    a = waiters.future(STREAM, "source", ("part", 1, 2))
    assert waiters.future(STREAM, "source", ("part", 1, 2)) is a
    b = waiters.future(STREAM, "source", ("part", 1, 3))
    c = waiters.future(STREAM, "audio", ("part", 1, 2))
    assert len(waiters) == 3 and waiters.renditions(STREAM) == {"source", "audio"} and waiters.waiting(STREAM) == 3
    assert waiters.wake(STREAM, lambda rendition, target: rendition == "source" and target[2] == 2) == 1
    assert a.done() and not b.done() and not c.done() and len(waiters) == 2
    assert waiters.wake(str(uuid.uuid4()), lambda _r, _t: True) == 0
    waiters.wake_all()
    assert b.done() and c.done() and len(waiters) == 0


async def test_shared_results_are_made_once_per_version_and_failures_are_not_kept() -> None:
    shared: Shared[str] = Shared(max_age_s=60)
    gate = asyncio.Event()
    made: list[int] = []

    async def make(v: int) -> str:
        made.append(v)
        await gate.wait()
        return f"v{v}"

    waiting = [asyncio.ensure_future(shared.get(("k",), 1, lambda: make(1))) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    assert set(await asyncio.gather(*waiting)) == {"v1"} and made == [1]
    assert await shared.get(("k",), 1, lambda: make(1)) == "v1" and made == [1]  # kept for this version
    assert await shared.get(("k",), 2, lambda: make(2)) == "v2" and made == [1, 2]

    async def fail() -> str:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        await shared.get(("f",), 1, fail)
    assert await shared.get(("f",), 1, lambda: make(3)) == "v3"  # the failure was not kept
    # remake: a stream's results are made again for a new version, before anyone asks.
    assert shared.remake("k", 5) == 1  # with the make it was last made with
    assert await shared.get(("k",), 5, lambda: make(9)) == "v2" and made == [1, 2, 3, 2]
    assert shared.remake("k", 5) == 0 and shared.remake("other", 5) == 0
    assert shared.remake("k", 6, renditions={"source"}) == 0  # ("k",) has no rendition
    shared.forget("k")
    assert shared.remake("k", 7) == 0 and await shared.get(("k",), 7, lambda: make(4)) == "v4"


def test_directives_are_checked_against_the_edge() -> None:
    from gateways.errors import BadRequest
    from gateways.hls import Directives, advance_part_limit, check_directives

    assert advance_part_limit(223) == 13 and advance_part_limit(1000) == 3 and advance_part_limit(2000) == 3
    assert advance_part_limit(900) == 3  # 3 / 0.9 s is 3.3 parts
    edge = fold_all(segment_parts(0) + segment_parts(1) + [part(2, 0), part(2, 1)])
    assert check_directives(edge, Directives()) is None
    assert check_directives(edge, Directives(msn=3)) == ("segment", 3, None)  # last complete 1, + 2
    assert check_directives(edge, Directives(msn=2, part=14)) == ("part", 2, 14)  # 13 past part 1
    assert check_directives(edge, Directives(msn=3, part=12)) == ("part", 3, 12)
    assert check_directives(edge, Directives(msn=0, part=99)) == ("part", 0, 99)  # behind: answered at once
    for too_far in (Directives(msn=4), Directives(msn=2, part=15), Directives(msn=3, part=13)):
        with pytest.raises(BadRequest):
            check_directives(edge, too_far)


async def test_an_aged_result_is_remade_and_answers_once_more_meanwhile_when_stale_while_revalidate() -> None:
    now = [0.0]
    calls: list[str] = []

    async def make(v: str) -> str:
        calls.append(v)
        await asyncio.sleep(0)
        return v

    for swr, expected in ((True, "old"), (False, "new")):
        shared: Shared[str] = Shared(max_age_s=1, clock=lambda: now[0], stale_while_revalidate=swr)
        now[0] = 0.0
        assert await shared.get(("s",), 1, lambda: make("old")) == "old"
        now[0] = 2.0  # aged
        assert await shared.get(("s",), 1, lambda: make("new")) == expected
        assert await shared.get(("s",), 1, lambda: make("later")) == "new"  # the remade one

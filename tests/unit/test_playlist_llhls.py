"""LL-HLS playlists (draft-pantos-hls-rfc8216bis, "bis"): the MUSTs every rendered playlist keeps.

Live edges are random: segments cut into parts the way the ingest cuts them (every part
within 85-100 % of PART-TARGET but a segment's last or an independent one, and adding up
to the segment within a millisecond a part), holes in ``seq``, clocks that drift or jump,
discontinuities, init segment changes and an open segment; each is rendered in full and as
a delta update and read back.  Each rule names its section.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from media.package.playlist import (
    LowLatency,
    OpenSegment,
    ParsedOpenSegment,
    ParsedPart,
    ParsedPlaylist,
    ParsedPreloadHint,
    ParsedSegment,
    ParsedServerControl,
    PartEntry,
    RenditionReport,
    SegmentEntry,
    parse_media_playlist,
    part_target_ms,
    render_media,
)

# No timing assertions in tests (docs/ARCHITECTURE.md, "Tests"): no deadline; inputs are bounded instead.
quick = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20.000Z


def at_least_85_percent(duration_ms: int, target_ms: int) -> bool:
    return 100 * duration_ms >= 85 * target_ms


@dataclass(frozen=True)
class Edge:
    """A rendition's live edge as the gateway holds it."""

    segments: list[SegmentEntry]
    open_segment: OpenSegment | None
    low_latency: LowLatency
    window: int | None
    target_duration_s: int | None

    def render(self, *, skip: bool = False, ended: bool = False) -> str:
        return render_media(
            self.segments, init_uri="init.mp4", ended=ended, window=self.window,
            target_duration_s=self.target_duration_s, low_latency=replace(self.low_latency, skip=skip),
            open_segment=None if ended else self.open_segment,
        )

    def listed(self) -> list[SegmentEntry]:
        return self.segments if self.window is None else self.segments[-self.window:]

    def end_seq(self) -> int:
        return self.open_segment.seq if self.open_segment is not None else self.segments[-1].seq


@st.composite
def cut_parts(draw: st.DrawFn, seq: int, target_ms: int, *, complete: bool) -> tuple[PartEntry, ...]:
    """A segment's parts: the first starts on the IDR; only a complete one's last (or an independent one) is short."""
    count = draw(st.integers(1 if complete else 0, 10))
    parts = []
    for i in range(count):
        independent = i == 0 or draw(st.integers(0, 9)) == 0
        shortest = 1 if independent or (complete and i == count - 1) else -(-85 * target_ms // 100)
        duration_ms = draw(st.integers(shortest, target_ms))
        parts.append(PartEntry(duration_ms, f"{seq:08d}.{i}.m4s", independent, draw(st.integers(0, 10**5))))
    return tuple(parts)


@st.composite
def edges(draw: st.DrawFn, max_segments: int = 12) -> Edge:
    target_ms = draw(st.one_of(st.sampled_from([200, 223, 267, 278, 334]), st.integers(200, 1000)))
    seq = draw(st.integers(0, 10**6))
    date_ms = T0 + draw(st.integers(0, 10**9))
    inits = st.sampled_from([None, None, "init-b.mp4"])
    segments: list[SegmentEntry] = []
    for _ in range(draw(st.integers(0, max_segments))):
        parts = draw(cut_parts(seq, target_ms, complete=True))
        total_ms = sum(p.duration_ms for p in parts)
        duration_ms = max(1, total_ms + draw(st.integers(-len(parts), len(parts))))
        segments.append(SegmentEntry(
            seq, duration_ms, f"{seq:08d}.m4s", date_ms, discontinuity=draw(st.booleans()),
            byte_size=draw(st.integers(0, 10**6)), init_uri=draw(inits), parts=parts,
        ))
        seq += draw(st.sampled_from([1, 1, 1, 1, 1, 2, 3]))  # a step > 1: GOPs never packaged
        # Usually back to back; sometimes drift, a hole in time, or a clock jump back.
        date_ms = max(0, date_ms + duration_ms + draw(st.sampled_from([0, 0, 0, 0, 7, 2_000, -90_000])))
    open_segment = None
    if not segments or draw(st.booleans()):
        open_seq = segments[-1].seq + 1 if segments else seq
        parts = draw(cut_parts(open_seq, target_ms, complete=False).filter(lambda p: bool(p or segments)))
        open_segment = OpenSegment(open_seq, date_ms, parts, discontinuity=draw(st.booleans()), init_uri=draw(inits))
    end_seq = open_segment.seq if open_segment is not None else segments[-1].seq
    next_part = len(open_segment.parts) if open_segment is not None else 0
    hint = draw(st.sampled_from([None, f"{end_seq + (open_segment is None):08d}.{next_part}.m4s"]))
    reports = draw(st.lists(st.builds(
        RenditionReport, st.sampled_from(["../480p30/index.m3u8", "../audio_only/index.m3u8?token=t"]),
        st.integers(0, 10**6), st.one_of(st.none(), st.integers(0, 12)),
    ), max_size=3))
    low_latency = LowLatency(target_ms, hint, tuple(reports), part_segments=draw(st.integers(1, 3)))
    window = draw(st.one_of(st.none(), st.integers(1, 12)))
    return Edge(segments, open_segment, low_latency, window, draw(st.one_of(st.none(), st.integers(1, 8))))


def parts_of(parsed: ParsedPlaylist) -> list[tuple[tuple[ParsedPart, ...], bool]]:
    """Every listed part run, with whether its segment is complete."""
    runs = [(s.parts, True) for s in parsed.segments if s.parts]
    return runs + ([(parsed.open_segment.parts, False)] if parsed.open_segment is not None else [])


def blocks(text: str) -> list[list[str]]:
    """The playlist's lines, cut after each segment URI; the last block holds the open segment and the tail."""
    out: list[list[str]] = [[]]
    for line in text.splitlines():
        out[-1].append(line)
        if not line.startswith("#"):
            out.append([])
    return out


@quick
@given(edges())
def test_parts_keep_within_the_part_target(edge: Edge) -> None:
    parsed = parse_media_playlist(edge.render())
    target_ms = edge.low_latency.part_target_ms
    assert parsed.part_target_ms == target_ms  # bis 4.4.3.7: PART-INF wherever there are parts
    for parts, complete in parts_of(parsed):
        for i, part in enumerate(parts):
            # bis 4.4.4.9: <= PART-TARGET, and >= 85 % of it unless independent or the segment's last.
            assert part.duration_ms <= target_ms
            assert at_least_85_percent(part.duration_ms, target_ms) or part.independent or (
                complete and i == len(parts) - 1
            )
    for seg in parsed.segments:
        if seg.parts:  # the parts are the segment: they add up to its EXTINF
            assert abs(sum(p.duration_ms for p in seg.parts) - seg.duration_ms) <= len(seg.parts)


@quick
@given(edges(), st.booleans())
def test_server_control_hold_backs(edge: Edge, skip: bool) -> None:
    parsed = parse_media_playlist(edge.render(skip=skip))
    target_ms = 1000 * (parsed.target_duration_s or 0)
    control = parsed.server_control
    assert control is not None and control.can_block_reload
    # bis 4.4.3.8: PART-HOLD-BACK >= 2 part targets (SHOULD >= 3: we take 3), HOLD-BACK >= 3 target
    # durations, the Skip Boundary >= 6.
    assert control.part_hold_back_ms == 3 * edge.low_latency.part_target_ms
    assert control.hold_back_ms is not None and control.hold_back_ms >= 3 * target_ms
    assert control.can_skip_until_ms is not None and control.can_skip_until_ms >= 6 * target_ms
    assert edge.low_latency.part_target_ms <= target_ms


@quick
@given(edges())
def test_parts_are_listed_for_the_newest_segments_only(edge: Edge) -> None:
    text = edge.render()
    parsed = parse_media_playlist(text)
    newest = edge.end_seq() - edge.low_latency.part_segments  # parts for seqs above this, counting the open one
    given_parts = {s.seq: s.parts for s in edge.segments}
    for seg in parsed.segments:
        expected = given_parts.get(seg.media_sequence, ()) if seg.media_sequence > newest and not seg.gap else ()
        assert seg.parts == tuple(ParsedPart(p.uri, p.duration_ms, p.independent) for p in expected)
    for block in blocks(text):
        if not any(line.startswith("#EXT-X-PART:") for line in block):
            continue
        first_part = next(i for i, line in enumerate(block) if line.startswith("#EXT-X-PART:"))
        # bis 4.4.4.9: DISCONTINUITY, MAP and PROGRAM-DATE-TIME of a parent segment precede its first part;
        # and a segment that lists parts always carries its date.
        assert not any(
            line == "#EXT-X-DISCONTINUITY" or line.startswith(("#EXT-X-MAP:", "#EXT-X-PROGRAM-DATE-TIME:"))
            for line in block[first_part:]
        )
        assert any(line.startswith("#EXT-X-PROGRAM-DATE-TIME:") for line in block[:first_part])


def without_discontinuity_sequence(segments: tuple[ParsedSegment, ...]) -> list[ParsedSegment]:
    return [replace(s, discontinuity_sequence=0) for s in segments]


@quick
@given(edges(max_segments=20))
def test_a_delta_update_skips_exactly_the_old_segments(edge: Edge) -> None:
    full_text, delta_text = edge.render(), edge.render(skip=True)
    full, delta = parse_media_playlist(full_text), parse_media_playlist(delta_text)
    # bis 6.2.5.1: the segments that end at least the Skip Boundary before the playlist's end.
    open_ms = sum(p.duration_ms for p in full.open_segment.parts) if full.open_segment is not None else 0
    boundary_ms = sum(s.duration_ms for s in full.segments) + open_ms - 6 * 1000 * (full.target_duration_s or 0)
    ends = [sum(s.duration_ms for s in full.segments[: i + 1]) for i in range(len(full.segments))]
    skipped = sum(end <= boundary_ms for end in ends)
    assert delta.skipped_segments == skipped
    assert ("#EXT-X-SKIP:" in delta_text) == (skipped > 0) and delta_text.count("#EXT-X-SKIP:") <= 1
    assert delta.version == (9 if skipped else 7) and full.version == 7  # bis 7: EXT-X-SKIP needs 9
    # 4.4.5.2: the sequence tags still describe the first, skipped, segment; the first listed one follows it.
    assert (delta.media_sequence, delta.discontinuity_sequence) == (full.media_sequence, full.discontinuity_sequence)
    if delta.segments:
        assert delta.segments[0].media_sequence == full.media_sequence + skipped
    # The delta's tail is the full playlist's tail (MAP and date restated after the skip); only the
    # discontinuities among the skipped segments are left for the client to carry over ...
    assert without_discontinuity_sequence(delta.segments) == without_discontinuity_sequence(full.segments[skipped:])
    assert (delta.open_segment is None) == (full.open_segment is None)
    if delta.open_segment is not None and full.open_segment is not None:
        assert replace(delta.open_segment, discontinuity_sequence=0) == replace(full.open_segment,
                                                                                discontinuity_sequence=0)
    assert (delta.preload_hint, delta.rendition_reports) == (full.preload_hint, full.rendition_reports)
    # ... which merging with the last full playlist does: the merged delta is the full playlist.
    merged = parse_media_playlist(delta_text, previous=full)
    assert (merged.segments, merged.open_segment) == (full.segments, full.open_segment)
    if skipped:  # nothing of a skipped segment is left before the SKIP: it comes right after the header
        lines = delta_text.splitlines()
        assert lines[lines.index("#EXT-X-INDEPENDENT-SEGMENTS") + 1].startswith("#EXT-X-SKIP:")


@quick
@given(edges())
def test_the_preload_hint_comes_last_and_never_with_endlist(edge: Edge) -> None:
    lines = edge.render().splitlines()
    hints = [i for i, line in enumerate(lines) if line.startswith("#EXT-X-PRELOAD-HINT:")]
    reports = [i for i, line in enumerate(lines) if line.startswith("#EXT-X-RENDITION-REPORT:")]
    assert len(hints) == (edge.low_latency.preload_hint_uri is not None)
    # The hint follows every segment and part; only the rendition reports (bis 4.4.5.4) come after it.
    assert reports == list(range(len(lines) - len(reports), len(lines)))
    assert hints == [len(lines) - len(reports) - 1] if hints else True
    assume(edge.segments)
    ended = edge.render(ended=True)
    # bis 4.4.5.3: no EXT-X-PRELOAD-HINT in a playlist with EXT-X-ENDLIST.
    assert "#EXT-X-PRELOAD-HINT" not in ended and ended.endswith("#EXT-X-ENDLIST\n")


@quick
@given(edges())
def test_render_then_parse_keeps_every_segment_part_and_attribute(edge: Edge) -> None:
    parsed = parse_media_playlist(edge.render())
    listed = edge.listed()
    newest = edge.end_seq() - edge.low_latency.part_segments

    def parts(seq: int, given: tuple[PartEntry, ...]) -> tuple[ParsedPart, ...]:
        return tuple(ParsedPart(p.uri, p.duration_ms, p.independent) for p in given) if seq > newest else ()

    real = [s for s in parsed.segments if not s.gap]
    assert [
        (s.media_sequence, s.uri, s.duration_ms, s.discontinuity, s.program_date_time_ms, s.map_uri, s.parts)
        for s in real
    ] == [
        (s.seq, s.uri, s.duration_ms, s.discontinuity and i > 0, s.program_date_time_ms, s.init_uri or "init.mp4",
         parts(s.seq, s.parts))
        for i, s in enumerate(listed)
    ]
    if (opened := edge.open_segment) is not None and opened.parts:
        dseq = parsed.segments[-1].discontinuity_sequence if parsed.segments else parsed.discontinuity_sequence
        assert parsed.open_segment == ParsedOpenSegment(
            opened.seq, opened.discontinuity and bool(listed), dseq + (opened.discontinuity and bool(listed)),
            opened.program_date_time_ms, opened.init_uri or "init.mp4", parts(opened.seq, opened.parts),
        )
    else:
        assert parsed.open_segment is None
    ll = edge.low_latency
    assert parsed.part_target_ms == ll.part_target_ms
    assert parsed.server_control == ParsedServerControl(
        True, 3 * ll.part_target_ms, 3000 * (parsed.target_duration_s or 0), 6000 * (parsed.target_duration_s or 0)
    )
    hint = None if ll.preload_hint_uri is None else ParsedPreloadHint("PART", ll.preload_hint_uri)
    assert (parsed.preload_hint, parsed.rendition_reports) == (hint, ll.rendition_reports)
    assert not parsed.ended and parsed.skipped_segments == 0


@quick
@given(edges())
def test_parts_change_no_sequence_or_discontinuity_number(edge: Edge) -> None:
    assume(edge.segments)
    plain = parse_media_playlist(render_media(
        [replace(s, parts=()) for s in edge.segments], init_uri="init.mp4", ended=False, window=edge.window,
        target_duration_s=edge.target_duration_s,
    ))
    low = parse_media_playlist(edge.render())
    assert (low.media_sequence, low.discontinuity_sequence, low.target_duration_s) == (
        plain.media_sequence, plain.discontinuity_sequence, plain.target_duration_s
    )
    assert [replace(s, parts=()) for s in low.segments] == list(plain.segments)
    if low.open_segment is not None:  # 4.3.3.3: the open segment numbers on from the last one
        last = low.segments[-1]
        assert low.open_segment.media_sequence == last.media_sequence + 1
        assert low.open_segment.discontinuity_sequence == last.discontinuity_sequence + low.open_segment.discontinuity


# Examples: the exact text, and what the renderer refuses.

def seg(seq: int, *durations: int, discontinuity: bool = False, init_uri: str | None = None) -> SegmentEntry:
    parts = tuple(PartEntry(d, f"{seq}.{i}.m4s", i == 0) for i, d in enumerate(durations))
    return SegmentEntry(seq, sum(durations), f"{seq}.m4s", T0 + 1000 * seq, discontinuity, 0, init_uri, parts)


def test_a_low_latency_playlist() -> None:
    segments = [seg(0, 1000), seg(1, 223, 223, 223, 223, 108), seg(2, 223, 223, 223, 223, 108)]
    opened = OpenSegment(3, T0 + 5000, (PartEntry(223, "3.0.m4s", True),), discontinuity=True, init_uri="init-2.mp4")
    ll = LowLatency(223, "3.1.m4s", (RenditionReport("../480p30/index.m3u8", 3, 0),), part_segments=2)
    text = render_media(segments, init_uri="init.mp4", ended=False, low_latency=ll, open_segment=opened)
    assert text == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:7\n"
        "#EXT-X-TARGETDURATION:1\n"
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.669,HOLD-BACK=3.000,CAN-SKIP-UNTIL=6.000\n"
        "#EXT-X-PART-INF:PART-TARGET=0.223\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:0\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-MAP:URI="init.mp4"\n'
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z\n"
        "#EXTINF:1.000,\n"
        "0.m4s\n"
        "#EXTINF:1.000,\n"
        "1.m4s\n"
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.000Z\n"
        '#EXT-X-PART:DURATION=0.223,URI="2.0.m4s",INDEPENDENT=YES\n'
        '#EXT-X-PART:DURATION=0.223,URI="2.1.m4s"\n'
        '#EXT-X-PART:DURATION=0.223,URI="2.2.m4s"\n'
        '#EXT-X-PART:DURATION=0.223,URI="2.3.m4s"\n'
        '#EXT-X-PART:DURATION=0.108,URI="2.4.m4s"\n'
        "#EXTINF:1.000,\n"
        "2.m4s\n"
        "#EXT-X-DISCONTINUITY\n"
        '#EXT-X-MAP:URI="init-2.mp4"\n'
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:25.000Z\n"
        '#EXT-X-PART:DURATION=0.223,URI="3.0.m4s",INDEPENDENT=YES\n'
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="3.1.m4s"\n'
        '#EXT-X-RENDITION-REPORT:URI="../480p30/index.m3u8",LAST-MSN=3,LAST-PART=0\n'
    )


def test_a_delta_update() -> None:
    segments = [seg(n, 500, 500, discontinuity=n == 1) for n in range(9)]
    ll = LowLatency(500, "9.0.m4s", skip=True)
    text = render_media(segments, init_uri="init.mp4", ended=False, low_latency=ll)
    # 9 s listed, CAN-SKIP-UNTIL 6 s: segments 0-2 end at least 6 s before the end.
    assert text.split("#EXT-X-INDEPENDENT-SEGMENTS\n")[1].startswith(
        "#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n"
        '#EXT-X-MAP:URI="init.mp4"\n'
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:23.000Z\n"
        "#EXTINF:1.000,\n"
        "3.m4s\n"
    )
    assert "#EXT-X-VERSION:9\n" in text and "#EXT-X-DISCONTINUITY\n" not in text
    full_text = render_media(segments, init_uri="init.mp4", ended=False, low_latency=replace(ll, skip=False))
    full = parse_media_playlist(full_text)
    alone, merged = parse_media_playlist(text), parse_media_playlist(text, previous=full)
    assert alone.segments[0].media_sequence == 3 and alone.segments[0].discontinuity_sequence == 0
    assert merged.segments == full.segments and merged.segments[3].discontinuity_sequence == 1
    with pytest.raises(ValueError, match="lacks skipped segments of 0..2: reload without _HLS_skip"):
        parse_media_playlist(text, previous=replace(full, segments=full.segments[1:]))


def test_a_playlist_of_one_open_segment() -> None:
    opened = OpenSegment(7, T0, (PartEntry(200, "7.0.m4s", True), PartEntry(200, "7.1.m4s", False)), True)
    text = render_media([], init_uri="i.mp4", ended=False, low_latency=LowLatency(223, "7.2.m4s"),
                        open_segment=opened, discontinuities_before=2, target_duration_s=2)
    parsed = parse_media_playlist(text)
    assert (parsed.media_sequence, parsed.discontinuity_sequence, parsed.segments) == (7, 3, ())
    assert parsed.open_segment is not None and parsed.open_segment.media_sequence == 7
    assert "#EXT-X-DISCONTINUITY\n" not in text  # the first listed segment's flag is in the sequence


@pytest.mark.parametrize(
    ("frame_duration_ms", "target_ms"),
    [(1000 / 30, 223), (1000 / 25, 267), (1000 / 24, 278), (1000 / 50, 200), (1000 / 60, 200), (30.0, 200),
     (1000 / 29.97, 223), (45.0, 300), (100.0, 667), (1024 / 48, 200)],
)
def test_part_target_is_the_smallest_with_a_frame_at_most_15_percent(frame_duration_ms: float, target_ms: int) -> None:
    assert part_target_ms(frame_duration_ms) == target_ms
    assert 100 * frame_duration_ms <= 15 * target_ms + 1e-9


@pytest.mark.parametrize("frame_duration_ms", [0.0, -1.0, math.inf, math.nan])
def test_part_target_refuses_a_frame_without_duration(frame_duration_ms: float) -> None:
    with pytest.raises(ValueError, match="frame_duration_ms"):
        part_target_ms(frame_duration_ms)


LL = LowLatency(223, None)


@pytest.mark.parametrize(
    ("segments", "kwargs", "message"),
    [
        ([seg(0, 224, 100)], {}, "segment 0 part 0: 224 ms is longer than PART-TARGET 223"),
        ([seg(0, 223, 189, 223)], {}, "segment 0 part 1: 189 ms is under 85 %"),
        ([replace(seg(0, 223, 100), duration_ms=326)], {}, "segment 0: its parts do not add up to its 326 ms"),
        ([seg(0, 223)], {"open_segment": OpenSegment(2, T0, ())}, "open segment seq 2 does not follow .* 0"),
        ([seg(0, 223)], {"open_segment": OpenSegment(1, T0, (PartEntry(223, "a", True), PartEntry(150, "b", False)))},
         "segment 1 part 1: 150 ms is under 85 %"),
        ([seg(0, 223)], {"open_segment": OpenSegment(1, T0, ()), "low_latency": None}, "live low-latency playlist"),
        ([seg(0, 223)], {"open_segment": OpenSegment(1, T0, ()), "ended": True}, "live low-latency playlist"),
        ([], {"open_segment": OpenSegment(1, T0, ())}, "at least one segment \\(or part\\)"),
        ([seg(0, 223)], {"low_latency": LowLatency(1001, None)}, "part_target_ms 1001 is longer than the target"),
    ],
)
def test_render_refuses_what_would_break_a_must(
    segments: list[SegmentEntry], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        render_media(segments, **{"init_uri": "i", "ended": False, "low_latency": LL, **kwargs})  # type: ignore[arg-type]


def test_short_parts_pass_where_the_draft_allows_them() -> None:
    # The segment's last part, and an independent one, may be under 85 %; parts older than part_segments are not
    # listed, so not checked either.
    old = replace(seg(0, 223, 10), parts=(PartEntry(223, "0.0.m4s", True), PartEntry(5, "0.1.m4s", False)))
    newest_only = replace(LL, part_segments=1)
    text = render_media([old, seg(1, 100, 223, 50)], init_uri="i", ended=False, low_latency=newest_only)
    assert '"1.0.m4s",INDEPENDENT=YES' in text and "0.1.m4s" not in text


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: PartEntry(0, "a.m4s", True), "duration_ms must be > 0"),
        (lambda: PartEntry(10, 'a".m4s', True), "part uri is not a valid"),
        (lambda: OpenSegment(-1, T0, ()), "seq must be in 0..2\\*\\*64-1"),
        (lambda: RenditionReport("../a.m3u8", -1, None), "last_msn and last_part"),
        (lambda: RenditionReport("a b", 1, None), "rendition report uri"),
        (lambda: LowLatency(0, None), "part_target_ms must be >= 1"),
        (lambda: LowLatency(223, None, part_segments=4), "part_segments must be in 1..3"),
        (lambda: LowLatency(223, "a\nb"), "preload_hint_uri is not a valid"),
    ],
)
def test_values_refuse_what_cannot_be_written(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_parser_reads_a_foreign_low_latency_playlist() -> None:
    text = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-VERSION:9\n#EXT-X-PART-INF:PART-TARGET=1.004\n"
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=24,PART-HOLD-BACK=3.012\n"
        "#EXT-X-MEDIA-SEQUENCE:214452\n#EXT-X-SKIP:SKIPPED-SEGMENTS=9\n"
        "#EXTINF:4.00008,\nfileSequence214461.ts\n"
        '#EXT-X-PART:DURATION=1.00001,URI="filePart214462.0.ts",INDEPENDENT=YES\n'
        "#EXTINF:4.00008,\nfileSequence214462.ts\n"
        '#EXT-X-PART:DURATION=1.00001,URI="filePart214463.0.ts"\n'
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="filePart214463.1.ts"\n'
        '#EXT-X-RENDITION-REPORT:URI="../1M/waitForMSN.php",LAST-MSN=214463,LAST-PART=0\n'
        '#EXT-X-RENDITION-REPORT:URI="../4M/waitForMSN.php",LAST-MSN=214463\n'
    )
    parsed = parse_media_playlist(text)
    assert (parsed.version, parsed.part_target_ms, parsed.skipped_segments) == (9, 1004, 9)
    assert parsed.server_control == ParsedServerControl(True, 3012, None, 24000)
    assert [(s.media_sequence, s.parts) for s in parsed.segments] == [
        (214461, ()), (214462, (ParsedPart("filePart214462.0.ts", 1000, True),)),
    ]
    assert parsed.open_segment == ParsedOpenSegment(
        214463, False, 0, None, None, (ParsedPart("filePart214463.0.ts", 1000, False),)
    )
    assert parsed.preload_hint == ParsedPreloadHint("PART", "filePart214463.1.ts")
    assert parsed.rendition_reports == (
        RenditionReport("../1M/waitForMSN.php", 214463, 0), RenditionReport("../4M/waitForMSN.php", 214463, None)
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('#EXTM3U\n#EXT-X-PART:DURATION=0.2,URI="a"\n#EXT-X-DISCONTINUITY\n', r"^line 3: #EXT-X-DISCONTINUITY after"),
        ('#EXTM3U\n#EXT-X-PART:DURATION=0.2,URI="a"\n#EXT-X-MAP:URI="i"\n', r"^line 3: #EXT-X-MAP after the first"),
        ("#EXTM3U\n#EXT-X-PART:URI=\"a\"\n", r"^line 2: attribute DURATION is required$"),
        ("#EXTM3U\n#EXTINF:2,\na.ts\n#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n", r"^line 4: #EXT-X-SKIP must come once"),
        ("#EXTM3U\n#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n", r"^line 3: #EXT-X-SKIP must"),
        ("#EXTM3U\n#EXT-X-PART-INF:PART-TARGET=x\n", r"^line 2: 'x' is not a decimal-floating-point"),
        ('#EXTM3U\n#EXT-X-RENDITION-REPORT:URI="a",LAST-MSN=-1\n', r"^line 2: '-1' is not a decimal-integer"),
        ("#EXTM3U\n#EXT-X-PRELOAD-HINT:TYPE=PART\n", r"^line 2: attribute URI is required$"),
    ],
)
def test_parser_errors_on_low_latency_tags(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_media_playlist(text)

"""RFC 8216 rules that every playlist ``media.package.playlist`` renders must keep.

Histories are random segment lists: steps in ``seq`` (holes are missing GOPs), short
and long durations, clocks that run on, drift or jump, discontinuities and init
segment changes.  Each rule names its section.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media.package.playlist import (
    LowLatency,
    ParsedPlaylist,
    SegmentEntry,
    VariantInfo,
    parse_master_playlist,
    parse_media_playlist,
    render_master,
    render_media,
)

# No timing assertions in tests (docs/ARCHITECTURE.md, "Tests"): no deadline; inputs are bounded instead.
quick = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
T0 = 1_700_000_000_000


@st.composite
def histories(draw: st.DrawFn, max_size: int = 30) -> list[SegmentEntry]:
    """A segment index for one rendition, in seq order."""
    seq = draw(st.integers(0, 10**6))
    date_ms = T0 + draw(st.integers(0, 10**9))
    segments: list[SegmentEntry] = []
    for _ in range(draw(st.integers(1, max_size))):
        duration_ms = draw(st.one_of(st.integers(1_900, 2_100), st.integers(1, 12_000)))
        segments.append(
            SegmentEntry(
                seq,
                duration_ms,
                f"v/{seq}.m4s",
                date_ms,
                discontinuity=draw(st.booleans()),
                byte_size=draw(st.integers(0, 10**6)),
                init_uri=draw(st.sampled_from([None, None, "init-b.mp4"])),
            )
        )
        seq += draw(st.sampled_from([1, 1, 1, 1, 2, 4]))
        # Usually back to back; sometimes drift, a hole in time, or a clock jump back.
        date_ms = max(0, date_ms + duration_ms + draw(st.sampled_from([0, 0, 0, 7, 2_000, 6_000, -90_000])))
    return segments


windows = st.one_of(st.none(), st.integers(1, 12))


def real(parsed: ParsedPlaylist) -> list[tuple[int, str, int, bool, int | None, str | None]]:
    """The non-gap segments as (seq, uri, duration, discontinuity, date, init)."""
    return [
        (s.media_sequence, s.uri, s.duration_ms, s.discontinuity, s.program_date_time_ms, s.map_uri)
        for s in parsed.segments
        if not s.gap
    ]


def expected(listed: list[SegmentEntry]) -> list[tuple[int, str, int, bool, int | None, str | None]]:
    # The first listed segment's discontinuity lives in DISCONTINUITY-SEQUENCE, not a tag.
    return [
        (s.seq, s.uri, s.duration_ms, s.discontinuity and i > 0, s.program_date_time_ms, s.init_uri or "init.mp4")
        for i, s in enumerate(listed)
    ]


@quick
@given(histories(), windows, st.booleans(), st.one_of(st.none(), st.integers(1, 15)))
def test_every_extinf_rounds_to_at_most_the_target(
    history: list[SegmentEntry], window: int | None, ended: bool, given_s: int | None
) -> None:
    # 4.3.3.1, under either reading of "nearest" (halves up, halves to even).
    parsed = parse_media_playlist(
        render_media(history, init_uri="init.mp4", ended=ended, window=window, target_duration_s=given_s)
    )
    target = parsed.target_duration_s
    assert target is not None and target >= max(1, given_s or 0)
    for s in parsed.segments:
        assert (s.duration_ms + 500) // 1000 <= target and round(s.duration_ms / 1000) <= target


@quick
@given(histories(), windows)
def test_a_live_window_rolls_forward_without_renumbering(history: list[SegmentEntry], window: int | None) -> None:
    last_media_seq = last_discontinuity_seq = last_target = 0
    seen: dict[int, tuple[int, int, str, bool]] = {}  # seq -> (DSN, EXTINF, URI, gap), first seen
    for k in range(1, len(history) + 1):
        text = render_media(
            history[:k], init_uri="init.mp4", ended=False, window=window, target_duration_s=last_target or None
        )
        parsed = parse_media_playlist(text)
        start = 0 if window is None else max(0, k - window)
        listed = history[start:k]
        # 4.3.3.2 / 6.2.2: MEDIA-SEQUENCE is the first listed seq and never goes back.
        assert parsed.media_sequence == listed[0].seq >= last_media_seq
        # 4.3.3.3 / 6.2.2: DISCONTINUITY-SEQUENCE counts the flags that slid out (and the first
        # listed segment's own), never goes back, and with the tags adds up to every flag so far.
        assert parsed.discontinuity_sequence == sum(s.discontinuity for s in history[: start + 1])
        assert parsed.discontinuity_sequence >= last_discontinuity_seq
        tags = sum(s.discontinuity for s in parsed.segments)
        assert tags + parsed.discontinuity_sequence == sum(s.discontinuity for s in history[:k])
        # Section 3: numbers run on by one, gap placeholders included, so seq is the number.
        assert [s.media_sequence for s in parsed.segments] == list(range(listed[0].seq, listed[-1].seq + 1))
        assert [s.media_sequence for s in parsed.segments if not s.gap] == [s.seq for s in listed]
        # 6.2.2: a segment, placeholders included, reads the same on every reload.
        for s in parsed.segments:
            now = (s.discontinuity_sequence, s.duration_ms, s.uri, s.gap)
            assert seen.setdefault(s.media_sequence, now) == now
        # 6.2.2: the target never changes once passed back in (it may only grow from a too-small one).
        assert parsed.target_duration_s is not None and parsed.target_duration_s >= last_target
        assert not parsed.ended and parsed.playlist_type is None and "#EXT-X-ENDLIST" not in text
        last_media_seq, last_discontinuity_seq = parsed.media_sequence, parsed.discontinuity_sequence
        last_target = parsed.target_duration_s


@quick
@given(histories(), windows)
def test_vod_lists_everything_and_ends(history: list[SegmentEntry], window: int | None) -> None:
    text = render_media(history, init_uri="init.mp4", ended=True, window=window)
    parsed = parse_media_playlist(text)
    assert parsed.ended and parsed.playlist_type == "VOD" and text.endswith("#EXT-X-ENDLIST\n")  # 4.3.3.4-5
    assert real(parsed) == expected(history)


@quick
@given(histories(), windows, st.booleans(), st.integers(0, 50))
def test_render_then_parse_gives_the_segments_back(
    history: list[SegmentEntry], window: int | None, ended: bool, before: int
) -> None:
    text = render_media(history, init_uri="init.mp4", ended=ended, window=window, discontinuities_before=before)
    parsed = parse_media_playlist(text)
    start = 0 if ended or window is None else max(0, len(history) - window)
    assert real(parsed) == expected(history[start:])
    assert parsed.discontinuity_sequence == before + sum(s.discontinuity for s in history[: start + 1])
    assert parsed.map_uri == (history[start].init_uri or "init.mp4")
    # 4.3.2.6: every segment's date is known, gap placeholders included, so none is None.
    assert all(s.program_date_time_ms is not None for s in parsed.segments)
    # bis 4.4.4.7: placeholders stand exactly for the missing seqs.
    present = {s.seq for s in history}
    assert all(s.gap == (s.media_sequence not in present) for s in parsed.segments)


@quick
@given(histories(max_size=8), st.integers(1, 2_000))
def test_low_latency_header_is_consistent(history: list[SegmentEntry], part_ms: int) -> None:
    low_latency = LowLatency(part_ms, None)
    text = render_media(history, init_uri="init.mp4", ended=False, target_duration_s=2, low_latency=low_latency)
    target_s = parse_media_playlist(text).target_duration_s or 0
    hold = next(line for line in text.splitlines() if line.startswith("#EXT-X-SERVER-CONTROL:"))
    part = next(line for line in text.splitlines() if line.startswith("#EXT-X-PART-INF:"))
    assert hold == (
        f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={3 * part_ms / 1000:.3f},"
        f"HOLD-BACK={3 * target_s}.000,CAN-SKIP-UNTIL={6 * target_s}.000"
    )
    assert part == f"#EXT-X-PART-INF:PART-TARGET={part_ms / 1000:.3f}"  # bis 4.4.3.7-8


@st.composite
def variants(draw: st.DrawFn) -> VariantInfo:
    n, peak = draw(st.integers(0, 10**6)), draw(st.integers(1, 10**8))
    average = max(1, int(peak * draw(st.floats(0.01, 1.0))))
    if draw(st.booleans()):
        return VariantInfo(f"v{n}", f"v{n}/index.m3u8", peak, average, "mp4a.40.2", audio_only=True)
    width, height, fps = draw(st.integers(16, 7680)), draw(st.integers(16, 4320)), draw(st.floats(1.0, 240.0))
    return VariantInfo(f"v{n}", f"v{n}/index.m3u8", peak, average, "avc1.64002a,mp4a.40.2", width, height, fps)


@quick
@given(st.lists(variants(), min_size=1, max_size=8, unique_by=lambda v: v.uri))
def test_master_round_trip_best_first(ladder: list[VariantInfo]) -> None:
    parsed = parse_master_playlist(render_master(ladder))
    bandwidths = [int(v["BANDWIDTH"]) for v in parsed]
    assert bandwidths == sorted(bandwidths, reverse=True) and len(parsed) == len(ladder)
    by_uri = {v.uri: v for v in ladder}
    for attrs in parsed:
        v = by_uri[attrs["URI"]]
        assert int(attrs["AVERAGE-BANDWIDTH"]) == v.average_bandwidth_bps and attrs["CODECS"] == v.codecs
        assert ("RESOLUTION" in attrs) == ("FRAME-RATE" in attrs) == (not v.audio_only)


@quick
@given(st.text(max_size=300))
def test_parser_raises_only_value_error(text: str) -> None:
    for parse in (parse_media_playlist, parse_master_playlist):
        try:
            parse("#EXTM3U\n" + text)
            parse(text)
        except ValueError:
            pass


@quick
@given(histories(max_size=6), st.lists(st.integers(0, 200), max_size=4), st.text(max_size=12))
def test_damaged_playlists_raise_only_value_error(history: list[SegmentEntry], cuts: list[int], junk: str) -> None:
    lines = render_media(history, init_uri="init.mp4", ended=True).splitlines()
    for cut in cuts:
        if len(lines) > 1:
            lines[cut % len(lines)] = lines[cut % len(lines)][: cut % 13] + junk
    try:
        parse_media_playlist("\n".join(lines))
    except ValueError:
        pass

"""HLS playlists: render the multivariant and media playlists, and parse them back.

RFC 8216 (HTTP Live Streaming), plus draft-pantos-hls-rfc8216bis ("bis") where it adds
to it.  Pure: the edge gateway passes in values from its segment-index view.  Segments
are fMP4/CMAF, one per GOP, so media playlists carry EXT-X-MAP and say version 7
(section 7: EXT-X-MAP outside I-frame playlists needs 6 or higher).  Our choices:

- ``seq`` is the Media Sequence Number.  Section 3 numbers each segment one past the
  one before, and 6.2.2 lets a live server only drop segments from the front and raise
  the sequence tags, so a segment keeps its number on every reload (blocking reload
  asks for it by number: bis 6.2.5.2).  Skipping a hole in ``seq`` (a GOP never
  packaged) would renumber what follows once the hole slid out, so EXT-X-GAP
  placeholders (bis 4.4.4.7), which clients do not load, fill it.  They span the hole's
  wall time, so no discontinuity is needed, and repeat the previous segment's URI, so
  an older client that ignores the tag gets no 404.
- A discontinuity flag sits on the segment after the break (4.3.2.3).  The first listed
  segment's flag is counted in EXT-X-DISCONTINUITY-SEQUENCE, like every flag that slid
  out of the window, and gets no tag, so each segment keeps its Discontinuity Sequence
  Number (4.3.3.3, 6.2.2).
- EXT-X-PROGRAM-DATE-TIME (4.3.2.6) goes on the first segment, after each discontinuity
  and wherever the previous date plus EXTINF is not this segment's date.
- One init segment per rendition; ``SegmentEntry.init_uri`` overrides it (passthrough
  whose codec setup changed on reconnect); EXT-X-MAP repeats only where it changes.
- LL-HLS (``low_latency``): parts, the open segment, preload hint, rendition reports and
  delta updates, by the rules and choices in ``media.package.llhls``.  A segment that
  lists parts always carries its date, and its DISCONTINUITY, MAP and date come before
  its first EXT-X-PART (bis 4.4.4.9).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from media.package.llhls import (
    MAX_DECIMAL_INTEGER,
    SKIP_VERSION,
    LowLatency,
    OpenSegment,
    ParsedOpenSegment,
    ParsedPart,
    ParsedPreloadHint,
    ParsedServerControl,
    PartEntry,
    PlaylistTags,
    RenditionReport,
    check_parts,
    header_lines,
    part_lines,
    part_target_ms,
    read_part,
    read_playlist_tag,
    read_skip,
    skipped_count,
    tail_lines,
)
from media.package.llhls import attributes as _attributes
from media.package.llhls import check_uri as _check_uri
from media.package.llhls import integer as _integer
from media.package.llhls import milliseconds as _milliseconds
from media.package.llhls import seconds as _seconds

__all__ = [
    "LowLatency", "OpenSegment", "ParsedOpenSegment", "ParsedPart", "ParsedPlaylist", "ParsedPreloadHint",
    "ParsedSegment", "ParsedServerControl", "PartEntry", "RenditionReport", "SegmentEntry", "VariantInfo",
    "parse_master_playlist", "parse_media_playlist", "part_target_ms", "render_master", "render_media",
]

VERSION = 7
MAX_GAP_SEGMENTS = 1800  # an hour of 2 s GOPs; a longer hole in seq is a bug upstream
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MSEQ, _DSEQ = "#EXT-X-MEDIA-SEQUENCE", "#EXT-X-DISCONTINUITY-SEQUENCE"


@dataclass(frozen=True)
class SegmentEntry:
    """One media segment (one GOP) of one rendition, as the segment index lists it."""

    seq: int
    duration_ms: int
    uri: str
    program_date_time_ms: int
    discontinuity: bool = False
    byte_size: int = 0
    init_uri: str | None = None
    parts: tuple[PartEntry, ...] = ()  # LL-HLS parts, in order; listed for the newest segments only

    def __post_init__(self) -> None:
        if not 0 <= self.seq <= MAX_DECIMAL_INTEGER:  # 4.3.3.2: MEDIA-SEQUENCE is a decimal-integer
            raise ValueError(f"segment seq {self.seq} is outside 0..2**64-1")
        if self.duration_ms <= 0 or self.program_date_time_ms < 0 or self.byte_size < 0:
            raise ValueError(f"segment {self.seq}: duration_ms must be > 0, the others >= 0")
        _check_uri(self.uri, f"segment {self.seq} uri")
        if self.init_uri is not None:
            _check_uri(self.init_uri, f"segment {self.seq} init_uri", quoted=True)


@dataclass(frozen=True)
class VariantInfo:
    """One rendition as the multivariant playlist advertises it (RFC 8216 4.3.4.2)."""

    name: str
    uri: str
    bandwidth_bps: int
    average_bandwidth_bps: int
    codecs: str
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    audio_only: bool = False

    def __post_init__(self) -> None:
        where = f"variant {self.name!r}"
        _check_uri(self.uri, f"{where} uri")
        _check_uri(self.codecs, f"{where} codecs", quoted=True)
        if not 0 < self.average_bandwidth_bps <= self.bandwidth_bps:
            raise ValueError(f"{where}: need 0 < average_bandwidth_bps <= bandwidth_bps")
        if self.audio_only and (self.width, self.height, self.fps) != (None, None, None):
            raise ValueError(f"{where}: an audio-only variant has no width, height or fps")
        sides = [d for d in (self.width, self.height) if d is not None]
        if len(sides) == 1 or any(d < 1 for d in sides):
            raise ValueError(f"{where}: width and height must both be positive, or both None")
        if self.fps is not None and not 0 < self.fps < math.inf:
            raise ValueError(f"{where}: fps must be positive, got {self.fps}")


def render_master(variants: Sequence[VariantInfo]) -> str:
    """The multivariant playlist, one EXT-X-STREAM-INF per variant, highest bandwidth first."""
    if not variants:
        raise ValueError("a multivariant playlist needs at least one variant")
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{VERSION}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    # Players start on the first variant listed (Apple's authoring spec, hls.js's firstLevel):
    # lead with the best, let them step down.  Audio-only is a plain entry, as on Twitch.
    for v in sorted(variants, key=lambda v: -v.bandwidth_bps):
        attrs = f'BANDWIDTH={v.bandwidth_bps},AVERAGE-BANDWIDTH={v.average_bandwidth_bps},CODECS="{v.codecs}"'
        if v.width is not None and v.height is not None:
            attrs += f",RESOLUTION={v.width}x{v.height}"
        if v.fps is not None:
            attrs += f",FRAME-RATE={v.fps:.3f}"
        lines += [f"#EXT-X-STREAM-INF:{attrs}", v.uri]
    return "\n".join(lines) + "\n"


def _rounded_s(duration_ms: int) -> int:
    return (duration_ms + 500) // 1000  # halves up: the larger reading of "nearest" (4.3.3.1)


def _date_time(ms: int) -> str:
    return f"{_EPOCH + timedelta(milliseconds=ms):%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"  # 4.3.2.6


def render_media(
    segments: Sequence[SegmentEntry], *, init_uri: str, ended: bool, window: int | None = None,
    target_duration_s: int | None = None, discontinuities_before: int = 0,
    low_latency: LowLatency | None = None, open_segment: OpenSegment | None = None,
) -> str:
    """A media playlist: the last ``window`` segments while live, all of them once ended.

    ``window`` counts given segments; gap placeholders between them come on top.
    ``discontinuities_before``: flags older than ``segments[0]``, for a trimmed history.
    ``target_duration_s``: pass the last target back in; 6.2.2 lets it never change.
    ``low_latency``: write LL-HLS; ``open_segment`` (live, LL-HLS only) is the segment being
    written, listed by its parts after the last complete one (``segments`` may then be empty).
    """
    _check_uri(init_uri, "init_uri", quoted=True)
    _check_order(segments, open_segment)
    if any(n is not None and n < 1 for n in (window, target_duration_s)) or discontinuities_before < 0:
        raise ValueError("window and target_duration_s must be >= 1, discontinuities_before >= 0")
    if open_segment is not None and (low_latency is None or ended):
        raise ValueError("an open segment is listed only in a live low-latency playlist")
    start = 0 if ended or window is None else max(0, len(segments) - window)
    listed = segments[start:]
    entries = list(_fill_gaps(listed)) if listed else []
    # 4.3.3.1: each EXTINF, rounded, <= the target; at least 1 for sub-second segments.
    target_s = max([target_duration_s or 1, *(_rounded_s(s.duration_ms) for s in listed)])
    first_seq, discontinuity_seq = _first(segments, start, open_segment, discontinuities_before)
    open_parts = open_segment.parts if open_segment is not None else ()
    skipped = 0
    if low_latency is not None and low_latency.skip:  # bis 6.2.5.1: a delta update
        skipped = skipped_count([s.duration_ms for s, _ in entries], sum(p.duration_ms for p in open_parts), target_s)
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{SKIP_VERSION if skipped else VERSION}", f"#EXT-X-TARGETDURATION:{target_s}"]
    if low_latency is not None:
        lines += header_lines(low_latency, target_s)
    lines += [f"#EXT-X-MEDIA-SEQUENCE:{first_seq}", f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_seq}"]
    if ended:
        lines.append("#EXT-X-PLAYLIST-TYPE:VOD")  # 4.3.3.5: the list will not change
    lines.append("#EXT-X-INDEPENDENT-SEGMENTS")  # 4.3.5.1: every segment starts on an IDR
    if skipped:
        # bis 4.4.5.2: the skipped segments' URIs and their EXTINF, DISCONTINUITY, MAP, date and GAP
        # tags go; the next segment restates MAP and date, as the loop below starts with neither.
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
    part_target = low_latency.part_target_ms if low_latency is not None else 0
    end_seq = open_segment.seq if open_segment is not None else entries[-1][0].seq
    parts_from = end_seq + 1 - (low_latency.part_segments if low_latency is not None else 0)
    current_map: str | None = None
    next_date_ms: int | None = None
    for i, (seg, gap) in enumerate(entries[skipped:], skipped):
        parts = seg.parts if seg.seq >= parts_from else ()
        check_parts(seg.seq, parts, part_target, seg.duration_ms)
        map_uri = seg.init_uri or init_uri
        dated = bool(parts) or seg.program_date_time_ms != next_date_ms
        lines += _segment_head(seg.discontinuity and i > 0, map_uri, current_map, seg.program_date_time_ms, dated)
        lines += part_lines(parts)
        lines.append(f"#EXTINF:{_seconds(seg.duration_ms)},")
        lines += ["#EXT-X-GAP", seg.uri] if gap else [seg.uri]
        current_map, next_date_ms = map_uri, seg.program_date_time_ms + seg.duration_ms
    if open_segment is not None and open_parts:
        check_parts(open_segment.seq, open_parts, part_target, None)
        discontinuity = open_segment.discontinuity and bool(entries)
        map_uri = open_segment.init_uri or init_uri
        lines += _segment_head(discontinuity, map_uri, current_map, open_segment.program_date_time_ms, True)
        lines += part_lines(open_parts)
    if low_latency is not None:
        lines += tail_lines(low_latency, ended)
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def _first(
    segments: Sequence[SegmentEntry], start: int, open_segment: OpenSegment | None, before: int
) -> tuple[int, int]:
    """The first listed segment's seq, and the discontinuity sequence: its flag counts in it, untagged."""
    if segments:
        return segments[start].seq, before + sum(s.discontinuity for s in segments[: start + 1])
    if open_segment is None:
        raise ValueError("a media playlist needs at least one segment")
    return open_segment.seq, before + open_segment.discontinuity


def _check_order(segments: Sequence[SegmentEntry], open_segment: OpenSegment | None) -> None:
    if not segments and (open_segment is None or not open_segment.parts):
        raise ValueError("a media playlist needs at least one segment (or part)")
    for prev, seg in zip(segments, segments[1:]):
        if seg.seq <= prev.seq:
            kind = "duplicate" if seg.seq == prev.seq else "out of order"
            raise ValueError(f"segment seq {seg.seq} after {prev.seq}: {kind}")
    if open_segment is not None and segments and open_segment.seq != segments[-1].seq + 1:
        raise ValueError(f"open segment seq {open_segment.seq} does not follow the last segment, {segments[-1].seq}")


def _segment_head(discontinuity: bool, map_uri: str, current_map: str | None, date_ms: int, dated: bool) -> list[str]:
    """A segment's DISCONTINUITY, MAP and PROGRAM-DATE-TIME, in that order, before its parts."""
    lines = ["#EXT-X-DISCONTINUITY"] if discontinuity else []
    if map_uri != current_map:
        lines.append(f'#EXT-X-MAP:URI="{map_uri}"')
    if discontinuity or dated:
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date_time(date_ms)}")
    return lines


def _fill_gaps(listed: Sequence[SegmentEntry]) -> Iterator[tuple[SegmentEntry, bool]]:
    """The listed segments, with a placeholder (flagged True) for each missing seq."""
    yield listed[0], False
    for prev, seg in zip(listed, listed[1:]):
        missing = seg.seq - prev.seq - 1
        if missing > MAX_GAP_SEGMENTS:
            raise ValueError(f"{missing} segments missing between seq {prev.seq} and {seg.seq}")
        date_ms = prev.program_date_time_ms + prev.duration_ms
        share_ms, extra = divmod(seg.program_date_time_ms - date_ms, max(missing, 1))
        # Share the hole's wall time out if that gives sane durations; else (a clock jump,
        # a discontinuity) repeat the last duration: the next PROGRAM-DATE-TIME re-anchors.
        # The bound comes from the neighbours alone, so a placeholder never changes on reload.
        limit_s = max(_rounded_s(prev.duration_ms), _rounded_s(seg.duration_ms))
        fits = share_ms >= 1 and _rounded_s(share_ms + 1) <= limit_s and not seg.discontinuity
        for k in range(missing):
            duration_ms = share_ms + (k < extra) if fits else prev.duration_ms
            yield replace(prev, seq=prev.seq + 1 + k, duration_ms=duration_ms, program_date_time_ms=date_ms,
                          discontinuity=False, byte_size=0, parts=()), True
            date_ms += duration_ms
        yield seg, False


@dataclass(frozen=True)
class ParsedSegment:
    """A segment read back from a media playlist, with the numbers the RFC implies."""

    media_sequence: int
    uri: str
    duration_ms: int
    discontinuity: bool
    discontinuity_sequence: int
    program_date_time_ms: int | None
    map_uri: str | None
    gap: bool = False
    parts: tuple[ParsedPart, ...] = ()


@dataclass(frozen=True)
class ParsedPlaylist:
    """A media playlist read back: the tags Glasscast writes, and its segments."""

    target_duration_s: int | None
    media_sequence: int
    discontinuity_sequence: int
    playlist_type: str | None
    ended: bool
    map_uri: str | None
    segments: tuple[ParsedSegment, ...]
    version: int | None = None
    part_target_ms: int | None = None
    server_control: ParsedServerControl | None = None
    open_segment: ParsedOpenSegment | None = None
    preload_hint: ParsedPreloadHint | None = None
    rendition_reports: tuple[RenditionReport, ...] = ()
    skipped_segments: int = 0  # EXT-X-SKIP's SKIPPED-SEGMENTS: this was a delta update


def _lines(text: str) -> list[tuple[int, str]]:
    lines = [(n, line.removesuffix("\r")) for n, line in enumerate(text.split("\n"), 1)]
    if lines[0][1] != "#EXTM3U":
        raise ValueError("line 1: a playlist must start with #EXTM3U (RFC 8216 4.3.1.1)")
    return [(n, line) for n, line in lines[1:] if line]


def _date_time_ms(value: str, where: str) -> int:
    try:
        when = datetime.fromisoformat(value)
        if when.tzinfo is not None:
            return (when - _EPOCH) // timedelta(milliseconds=1)
    except (ValueError, OverflowError):
        pass
    raise ValueError(f"{where}: {value!r} is not an ISO 8601 date-time with a zone (RFC 8216 4.3.2.6)")


def parse_media_playlist(text: str, *, previous: ParsedPlaylist | None = None) -> ParsedPlaylist:
    """Read a media playlist; unknown tags and comments are skipped (RFC 8216 6.3.1).

    A delta update (EXT-X-SKIP) lists only the segments after the skipped ones, numbered
    right; the discontinuities among the skipped ones are not in it.  Pass the last full
    playlist read as ``previous`` to merge as a client does (bis 6.2.5.1): the skipped
    segments are taken from it and the discontinuity numbers carried on.  Without it, the
    numbers after the skip count only the discontinuities listed.
    """
    numbers = {_MSEQ: 0, _DSEQ: 0}
    playlist_type = map_uri = duration_ms = date_ms = next_date_ms = None
    ended = discontinuity = gap = False
    segments: list[ParsedSegment] = []
    parts: list[ParsedPart] = []
    found = PlaylistTags()

    def numbered() -> tuple[int, int | None, int]:
        # 4.3.2.6: a date carries on to the next segments, but not past a discontinuity.
        dated = next_date_ms if date_ms is None and not discontinuity else date_ms
        # 4.3.3.3: a segment's number counts the discontinuity tags up to and on it.
        dseq = discontinuity + (segments[-1].discontinuity_sequence if segments else numbers[_DSEQ])
        return numbers[_MSEQ] + found.skipped + len(segments), dated, dseq

    for n, line in _lines(text):
        where, (tag, _, value) = f"line {n}", line.partition(":")
        if not line.startswith("#"):
            if duration_ms is None:
                raise ValueError(f"{where}: segment URI {line!r} without #EXTINF")
            msn, date_ms, dseq = numbered()
            segments.append(
                ParsedSegment(msn, line, duration_ms, discontinuity, dseq, date_ms, map_uri, gap, tuple(parts))
            )
            next_date_ms = None if date_ms is None else date_ms + duration_ms
            duration_ms, date_ms, discontinuity, gap, parts = None, None, False, False, []
        elif tag in ("#EXT-X-DISCONTINUITY", "#EXT-X-MAP", "#EXT-X-PROGRAM-DATE-TIME") and parts:
            raise ValueError(f"{where}: {tag} after the first #EXT-X-PART of its segment (bis 4.4.4.9)")
        elif tag == "#EXT-X-PART":
            parts.append(read_part(value, where))
        elif tag == "#EXTINF":
            duration_ms = _milliseconds(value.partition(",")[0], where)
        elif tag in ("#EXT-X-TARGETDURATION", *numbers):
            if segments and tag != "#EXT-X-TARGETDURATION":
                raise ValueError(f"{where}: {tag} after the first segment (RFC 8216 4.3.3.2-3)")
            numbers[tag] = _integer(value, where)
        elif tag == "#EXT-X-SKIP":
            if segments or parts or duration_ms is not None or found.skipped:
                raise ValueError(f"{where}: #EXT-X-SKIP must come once, before every segment (bis 4.4.5.2)")
            found.skipped = read_skip(value, where)
        elif tag == "#EXT-X-PLAYLIST-TYPE":
            playlist_type = value
        elif tag == "#EXT-X-MAP":
            map_uri = _attributes(value, where).get("URI")
        elif tag == "#EXT-X-PROGRAM-DATE-TIME":
            date_ms = _date_time_ms(value, where)
        else:
            read_playlist_tag(found, tag, value, where)
        discontinuity |= line == "#EXT-X-DISCONTINUITY"
        gap |= line == "#EXT-X-GAP"
        ended |= line == "#EXT-X-ENDLIST"
    if duration_ms is not None:
        raise ValueError("end of playlist: #EXTINF without a segment URI")
    open_segment = None
    if parts:
        msn, date_ms, dseq = numbered()
        open_segment = ParsedOpenSegment(msn, discontinuity, dseq, date_ms, map_uri, tuple(parts))
    if found.skipped and previous is not None:
        segments, open_segment = _merge_skipped(previous, numbers[_MSEQ], numbers[_DSEQ], found.skipped,
                                                segments, open_segment)
    return ParsedPlaylist(
        numbers.get("#EXT-X-TARGETDURATION"), numbers[_MSEQ], numbers[_DSEQ], playlist_type, ended,
        segments[0].map_uri if segments else map_uri, tuple(segments), found.version, found.part_target_ms,
        found.server_control, open_segment, found.preload_hint, tuple(found.rendition_reports), found.skipped,
    )


def _merge_skipped(
    previous: ParsedPlaylist, first_msn: int, discontinuity_seq: int, skipped: int,
    listed: list[ParsedSegment], open_segment: ParsedOpenSegment | None,
) -> tuple[list[ParsedSegment], ParsedOpenSegment | None]:
    """A delta update's segments with the skipped ones taken from ``previous``."""
    known = {s.media_sequence: s for s in previous.segments}
    carried = [known[msn] for msn in range(first_msn, first_msn + min(skipped, len(known))) if msn in known]
    if len(carried) < skipped:
        raise ValueError(f"the previous playlist lacks skipped segments of {first_msn}..{first_msn + skipped - 1}: "
                         "reload without _HLS_skip (bis 6.2.5.1)")
    shift = carried[-1].discontinuity_sequence - discontinuity_seq
    merged = [replace(s, discontinuity_sequence=s.discontinuity_sequence + shift) for s in listed]
    if open_segment is not None:
        open_segment = replace(open_segment, discontinuity_sequence=open_segment.discontinuity_sequence + shift)
    return carried + merged, open_segment


def parse_master_playlist(text: str) -> list[dict[str, str]]:
    """The EXT-X-STREAM-INF attributes of a multivariant playlist, each with its "URI"."""
    variants: list[dict[str, str]] = []
    pending: dict[str, str] | None = None
    for n, line in _lines(text):
        if line.startswith("#EXT-X-STREAM-INF:"):
            pending = _attributes(line.partition(":")[2], f"line {n}")
        elif not line.startswith("#") and pending is not None:
            variants.append({**pending, "URI": line})
            pending = None
    if pending is not None:
        raise ValueError("end of playlist: #EXT-X-STREAM-INF without a URI (RFC 8216 4.3.4.2)")
    return variants

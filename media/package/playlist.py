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
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

VERSION = 7
MAX_DECIMAL_INTEGER = 2**64 - 1  # RFC 8216 4.2: the decimal-integer range
MAX_GAP_SEGMENTS = 1800  # an hour of 2 s GOPs; a longer hole in seq is a bug upstream
PART_HOLD_BACK_PARTS = 3  # bis 4.4.3.8: PART-HOLD-BACK >= 2 part targets, SHOULD be >= 3
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^",]*)(?:,|$)')  # 4.2 attribute-list
_MSEQ, _DSEQ = "#EXT-X-MEDIA-SEQUENCE", "#EXT-X-DISCONTINUITY-SEQUENCE"
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]*)?")


def _check_uri(uri: str, what: str, *, quoted: bool = False) -> None:
    # 4.1: no whitespace or control characters outside quoted-strings, and a line that
    # starts with '#' is a tag or comment; 4.2: a quoted-string holds no '"'.
    bad = any(c.isspace() or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in uri)
    if not uri or bad or (quoted and '"' in uri) or (not quoted and uri.startswith("#")):
        raise ValueError(f"{what} is not a valid playlist URI: {uri!r}")


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


def _seconds(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"  # three places, exactly: no float rounding


def _date_time(ms: int) -> str:
    return f"{_EPOCH + timedelta(milliseconds=ms):%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"  # 4.3.2.6


def render_media(
    segments: Sequence[SegmentEntry], *, init_uri: str, ended: bool, window: int | None = None,
    target_duration_s: int | None = None, part_target_s: float | None = None, discontinuities_before: int = 0,
) -> str:
    """A media playlist: the last ``window`` segments while live, all of them once ended.

    ``window`` counts given segments; gap placeholders between them come on top.
    ``discontinuities_before``: flags older than ``segments[0]``, for a trimmed history.
    ``target_duration_s``: pass the last target back in; 6.2.2 lets it never change.
    """
    _check_uri(init_uri, "init_uri", quoted=True)
    if not segments:
        raise ValueError("a media playlist needs at least one segment")
    for prev, seg in zip(segments, segments[1:]):
        if seg.seq <= prev.seq:
            kind = "duplicate" if seg.seq == prev.seq else "out of order"
            raise ValueError(f"segment seq {seg.seq} after {prev.seq}: {kind}")
    if any(n is not None and n < 1 for n in (window, target_duration_s)) or discontinuities_before < 0:
        raise ValueError("window and target_duration_s must be >= 1, discontinuities_before >= 0")
    start = 0 if ended or window is None else max(0, len(segments) - window)
    listed = segments[start:]
    # 4.3.3.1: each EXTINF, rounded, <= the target; at least 1 for sub-second segments.
    target_s = max(target_duration_s or 1, *(_rounded_s(s.duration_ms) for s in listed))
    discontinuity_seq = discontinuities_before + sum(s.discontinuity for s in segments[: start + 1])
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{VERSION}", f"#EXT-X-TARGETDURATION:{target_s}"]
    if part_target_s is not None:
        if not 0.001 <= part_target_s <= target_s:
            raise ValueError(f"part_target_s must be in 0.001..{target_s}, got {part_target_s}")
        part_ms = round(part_target_s * 1000)
        hold_back = _seconds(PART_HOLD_BACK_PARTS * part_ms)
        lines.append(f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={hold_back}")
        lines.append(f"#EXT-X-PART-INF:PART-TARGET={_seconds(part_ms)}")  # bis 4.4.3.7
    lines += [f"#EXT-X-MEDIA-SEQUENCE:{listed[0].seq}", f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_seq}"]
    if ended:
        lines.append("#EXT-X-PLAYLIST-TYPE:VOD")  # 4.3.3.5: the list will not change
    lines.append("#EXT-X-INDEPENDENT-SEGMENTS")  # 4.3.5.1: every segment starts on an IDR
    current_init: str | None = None
    next_date_ms: int | None = None
    for i, (seg, gap) in enumerate(_fill_gaps(listed)):
        discontinuity = seg.discontinuity and i > 0
        if discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if (seg.init_uri or init_uri) != current_init:
            current_init = seg.init_uri or init_uri
            lines.append(f'#EXT-X-MAP:URI="{current_init}"')
        if discontinuity or seg.program_date_time_ms != next_date_ms:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date_time(seg.program_date_time_ms)}")
        lines.append(f"#EXTINF:{_seconds(seg.duration_ms)},")
        lines += ["#EXT-X-GAP", seg.uri] if gap else [seg.uri]
        next_date_ms = seg.program_date_time_ms + seg.duration_ms
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


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
                          discontinuity=False, byte_size=0), True
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


def _lines(text: str) -> list[tuple[int, str]]:
    lines = [(n, line.removesuffix("\r")) for n, line in enumerate(text.split("\n"), 1)]
    if lines[0][1] != "#EXTM3U":
        raise ValueError("line 1: a playlist must start with #EXTM3U (RFC 8216 4.3.1.1)")
    return [(n, line) for n, line in lines[1:] if line]


def _integer(value: str, where: str) -> int:
    if not (value.isascii() and value.isdigit() and len(value) <= 20 and int(value) <= MAX_DECIMAL_INTEGER):
        raise ValueError(f"{where}: {value!r} is not a decimal-integer (RFC 8216 4.2)")
    return int(value)


def _milliseconds(value: str, where: str) -> int:
    if not _DECIMAL.fullmatch(value):
        raise ValueError(f"{where}: {value!r} is not a decimal-floating-point (RFC 8216 4.2)")
    return int((Decimal(value) * 1000).to_integral_value())


def _date_time_ms(value: str, where: str) -> int:
    try:
        when = datetime.fromisoformat(value)
        if when.tzinfo is not None:
            return (when - _EPOCH) // timedelta(milliseconds=1)
    except (ValueError, OverflowError):
        pass
    raise ValueError(f"{where}: {value!r} is not an ISO 8601 date-time with a zone (RFC 8216 4.3.2.6)")


def _attributes(value: str, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(value):
        if (match := _ATTRIBUTE.match(value, pos)) is None:
            raise ValueError(f"{where}: malformed attribute list at column {pos}: {value!r}")
        out[match[1]] = match[2].strip('"')
        pos = match.end()
    return out


def parse_media_playlist(text: str) -> ParsedPlaylist:
    """Read a media playlist; unknown tags and comments are skipped (RFC 8216 6.3.1)."""
    numbers = {_MSEQ: 0, _DSEQ: 0}
    playlist_type = map_uri = duration_ms = date_ms = next_date_ms = None
    ended = discontinuity = gap = False
    segments: list[ParsedSegment] = []
    for n, line in _lines(text):
        where, (tag, _, value) = f"line {n}", line.partition(":")
        if not line.startswith("#"):
            if duration_ms is None:
                raise ValueError(f"{where}: segment URI {line!r} without #EXTINF")
            # 4.3.2.6: a date carries on to the next segments, but not past a discontinuity.
            date_ms = next_date_ms if date_ms is None and not discontinuity else date_ms
            # 4.3.3.3: a segment's number counts the discontinuity tags up to and on it.
            dseq = discontinuity + (segments[-1].discontinuity_sequence if segments else numbers[_DSEQ])
            msn = numbers[_MSEQ] + len(segments)
            segments.append(ParsedSegment(msn, line, duration_ms, discontinuity, dseq, date_ms, map_uri, gap))
            next_date_ms = None if date_ms is None else date_ms + duration_ms
            duration_ms, date_ms, discontinuity, gap = None, None, False, False
        elif tag == "#EXTINF":
            duration_ms = _milliseconds(value.partition(",")[0], where)
        elif tag in ("#EXT-X-TARGETDURATION", *numbers):
            if segments and tag != "#EXT-X-TARGETDURATION":
                raise ValueError(f"{where}: {tag} after the first segment (RFC 8216 4.3.3.2-3)")
            numbers[tag] = _integer(value, where)
        elif tag == "#EXT-X-PLAYLIST-TYPE":
            playlist_type = value
        elif tag == "#EXT-X-MAP":
            map_uri = _attributes(value, where).get("URI")
        elif tag == "#EXT-X-PROGRAM-DATE-TIME":
            date_ms = _date_time_ms(value, where)
        discontinuity |= line == "#EXT-X-DISCONTINUITY"
        gap |= line == "#EXT-X-GAP"
        ended |= line == "#EXT-X-ENDLIST"
    if duration_ms is not None:
        raise ValueError("end of playlist: #EXTINF without a segment URI")
    return ParsedPlaylist(
        numbers.get("#EXT-X-TARGETDURATION"), numbers[_MSEQ], numbers[_DSEQ], playlist_type, ended,
        segments[0].map_uri if segments else map_uri, tuple(segments),
    )


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

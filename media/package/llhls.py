"""LL-HLS (draft-pantos-hls-rfc8216bis, "bis") values and rules for ``media.package.playlist``.

``playlist.render_media`` writes the tags; this module holds what it writes them from and
the rules they must keep.  Our choices, each the smallest value the draft allows or
recommends:

- PART-TARGET is fixed per stream: the smallest value >= 200 ms in which one frame is at
  most 15 % (``part_target_ms``), so parts cut at frame boundaries always fill 85-100 % of
  it (4.4.4.9) and hls.js and Apple's players (which both dislike parts under 200 ms) are
  served well.
- PART-HOLD-BACK is 3 part targets (4.4.3.8: MUST be >= 2, SHOULD be >= 3), HOLD-BACK 3
  target durations (its default and minimum) and CAN-SKIP-UNTIL 6 target durations (the
  minimum Skip Boundary).
- Parts are listed for the last ``part_segments`` segments only, counting the open one
  (6.2.2 lets them go once they are more than three target durations from the end).
- A delta update (6.2.5.1) replaces every segment that ends at least CAN-SKIP-UNTIL
  before the playlist's end with one EXT-X-SKIP (4.4.5.2): their URIs and the EXTINF,
  DISCONTINUITY, MAP, PROGRAM-DATE-TIME and GAP tags applied to them.  MEDIA-SEQUENCE and
  DISCONTINUITY-SEQUENCE still describe the first, skipped, segment; the first segment
  after the skip repeats EXT-X-MAP and EXT-X-PROGRAM-DATE-TIME, so only the
  discontinuity count of the skipped segments is left for the client to carry over from
  its last full playlist (``parse_media_playlist(text, previous=...)`` does that).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

MAX_DECIMAL_INTEGER = 2**64 - 1  # RFC 8216 4.2: the decimal-integer range
MIN_PART_TARGET_MS = 200  # Apple advises against shorter parts; hls.js is unstable with tiny ones
MIN_PART_SHARE_PCT = 85  # bis 4.4.4.9: every part but a segment's last (or an independent one) >= 85 %
PART_HOLD_BACK_PARTS = 3  # bis 4.4.3.8: PART-HOLD-BACK >= 2 part targets, SHOULD be >= 3
HOLD_BACK_TARGETS = 3  # bis 4.4.3.8: HOLD-BACK >= 3 target durations
SKIP_TARGETS = 6  # bis 4.4.3.8: the Skip Boundary >= 6 target durations
MAX_PART_SEGMENTS = 3  # bis 6.2.2: parts may go once they are > 3 target durations from the end
SKIP_VERSION = 9  # bis 7: a playlist holding EXT-X-SKIP says version 9 or higher
_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^",]*)(?:,|$)')  # 4.2 attribute-list
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]*)?")


# The playlist syntax both modules use (RFC 8216 4.1-4.2).


def check_uri(uri: str, what: str, *, quoted: bool = False) -> None:
    # 4.1: no whitespace or control characters outside quoted-strings, and a line that
    # starts with '#' is a tag or comment; 4.2: a quoted-string holds no '"'.
    bad = any(c.isspace() or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in uri)
    if not uri or bad or (quoted and '"' in uri) or (not quoted and uri.startswith("#")):
        raise ValueError(f"{what} is not a valid playlist URI: {uri!r}")


def seconds(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"  # three places, exactly: no float rounding


def integer(value: str, where: str) -> int:
    if not (value.isascii() and value.isdigit() and len(value) <= 20 and int(value) <= MAX_DECIMAL_INTEGER):
        raise ValueError(f"{where}: {value!r} is not a decimal-integer (RFC 8216 4.2)")
    return int(value)


def milliseconds(value: str, where: str) -> int:
    if not _DECIMAL.fullmatch(value):
        raise ValueError(f"{where}: {value!r} is not a decimal-floating-point (RFC 8216 4.2)")
    return int((Decimal(value) * 1000).to_integral_value())


def attributes(value: str, where: str, *required: str) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(value):
        if (match := _ATTRIBUTE.match(value, pos)) is None:
            raise ValueError(f"{where}: malformed attribute list at column {pos}: {value!r}")
        out[match[1]] = match[2].strip('"')
        pos = match.end()
    if missing := [name for name in required if name not in out]:
        raise ValueError(f"{where}: attribute {missing[0]} is required")
    return out


def part_target_ms(frame_duration_ms: float) -> int:
    """PART-TARGET for a frame duration: >= 200 ms, with one frame at most 15 % of it.

    Exact (no float rounding at the boundary): 223 ms at 30 fps, 267 at 25, 278 at 24,
    200 at 50 and 60.
    """
    if not 0 < frame_duration_ms < math.inf:
        raise ValueError(f"frame_duration_ms must be positive and finite, got {frame_duration_ms}")
    frames_worth = Fraction(frame_duration_ms) * 100 / (100 - MIN_PART_SHARE_PCT)
    return max(MIN_PART_TARGET_MS, math.ceil(frames_worth))


def min_part_ms(target_ms: int) -> int:
    """The shortest part (ms) that is at least 85 % of ``target_ms``."""
    return -(-MIN_PART_SHARE_PCT * target_ms // 100)


@dataclass(frozen=True)
class PartEntry:
    """One LL-HLS part (a moof+mdat with its own URI) of a segment."""

    duration_ms: int
    uri: str
    independent: bool
    byte_size: int = 0

    def __post_init__(self) -> None:
        if self.duration_ms <= 0 or self.byte_size < 0:
            raise ValueError(f"part {self.uri!r}: duration_ms must be > 0 and byte_size >= 0")
        check_uri(self.uri, "part uri", quoted=True)


@dataclass(frozen=True)
class OpenSegment:
    """The segment being written: its parts so far, no EXTINF or URI yet.

    ``init_uri`` overrides the playlist's init segment, as ``SegmentEntry.init_uri`` does.
    """

    seq: int
    program_date_time_ms: int
    parts: tuple[PartEntry, ...]
    discontinuity: bool = False
    init_uri: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.seq <= MAX_DECIMAL_INTEGER or self.program_date_time_ms < 0:
            raise ValueError(f"open segment {self.seq}: seq must be in 0..2**64-1, program_date_time_ms >= 0")
        if self.init_uri is not None:
            check_uri(self.init_uri, f"open segment {self.seq} init_uri", quoted=True)


@dataclass(frozen=True)
class RenditionReport:
    """EXT-X-RENDITION-REPORT (bis 4.4.5.4): a sibling rendition's newest segment and part."""

    uri: str
    last_msn: int
    last_part: int | None

    def __post_init__(self) -> None:
        check_uri(self.uri, "rendition report uri", quoted=True)
        if not 0 <= self.last_msn <= MAX_DECIMAL_INTEGER or not 0 <= (self.last_part or 0) <= MAX_DECIMAL_INTEGER:
            raise ValueError(f"rendition report {self.uri!r}: last_msn and last_part must be in 0..2**64-1")


@dataclass(frozen=True)
class LowLatency:
    """What turns a media playlist into an LL-HLS one.

    ``skip``: render a delta update (the request said ``_HLS_skip=YES``).
    """

    part_target_ms: int
    preload_hint_uri: str | None
    rendition_reports: tuple[RenditionReport, ...] = ()
    part_segments: int = 3
    skip: bool = False

    def __post_init__(self) -> None:
        if self.part_target_ms < 1:
            raise ValueError(f"part_target_ms must be >= 1, got {self.part_target_ms}")
        if not 1 <= self.part_segments <= MAX_PART_SEGMENTS:
            raise ValueError(f"part_segments must be in 1..{MAX_PART_SEGMENTS}, got {self.part_segments}")
        if self.preload_hint_uri is not None:
            check_uri(self.preload_hint_uri, "preload_hint_uri", quoted=True)


def header_lines(ll: LowLatency, target_s: int) -> list[str]:
    """EXT-X-SERVER-CONTROL (bis 4.4.3.8) and EXT-X-PART-INF (4.4.3.7)."""
    if ll.part_target_ms > target_s * 1000:
        raise ValueError(f"part_target_ms {ll.part_target_ms} is longer than the target duration ({target_s} s)")
    control = (
        f"CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={seconds(PART_HOLD_BACK_PARTS * ll.part_target_ms)},"
        f"HOLD-BACK={seconds(HOLD_BACK_TARGETS * target_s * 1000)},"
        f"CAN-SKIP-UNTIL={seconds(SKIP_TARGETS * target_s * 1000)}"
    )
    return [f"#EXT-X-SERVER-CONTROL:{control}", f"#EXT-X-PART-INF:PART-TARGET={seconds(ll.part_target_ms)}"]


def check_parts(seq: int, parts: Sequence[PartEntry], target_ms: int, duration_ms: int | None) -> None:
    """Refuse parts that would break a MUST of bis 4.4.4.9; ``duration_ms`` None: the open segment."""
    if not parts:
        return
    shortest = min_part_ms(target_ms)
    for i, part in enumerate(parts):
        if part.duration_ms > target_ms:
            raise ValueError(f"segment {seq} part {i}: {part.duration_ms} ms is longer than PART-TARGET {target_ms}")
        final = duration_ms is not None and i == len(parts) - 1
        if part.duration_ms < shortest and not (final or part.independent):
            raise ValueError(
                f"segment {seq} part {i}: {part.duration_ms} ms is under 85 % of PART-TARGET {target_ms}"
                " and neither independent nor the segment's last"
            )
    if duration_ms is not None and abs(sum(p.duration_ms for p in parts) - duration_ms) > len(parts):
        raise ValueError(f"segment {seq}: its parts do not add up to its {duration_ms} ms")


def part_lines(parts: Sequence[PartEntry]) -> list[str]:
    return [
        f'#EXT-X-PART:DURATION={seconds(p.duration_ms)},URI="{p.uri}"' + (",INDEPENDENT=YES" if p.independent else "")
        for p in parts
    ]


def tail_lines(ll: LowLatency, ended: bool) -> list[str]:
    """EXT-X-PRELOAD-HINT (bis 4.4.5.3: never with ENDLIST), then EXT-X-RENDITION-REPORT (4.4.5.4)."""
    hint = ll.preload_hint_uri
    lines = [] if ended or hint is None else [f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{hint}"']
    for r in ll.rendition_reports:
        last_part = "" if r.last_part is None else f",LAST-PART={r.last_part}"
        lines.append(f'#EXT-X-RENDITION-REPORT:URI="{r.uri}",LAST-MSN={r.last_msn}{last_part}')
    return lines


def skipped_count(durations_ms: Sequence[int], open_ms: int, target_s: int) -> int:
    """How many leading segments a delta update skips: those ending >= CAN-SKIP-UNTIL before the end."""
    boundary_ms = sum(durations_ms) + open_ms - SKIP_TARGETS * target_s * 1000
    end_ms = count = 0
    for duration_ms in durations_ms:
        end_ms += duration_ms
        if end_ms > boundary_ms:
            break
        count += 1
    return count


@dataclass(frozen=True)
class ParsedPart:
    uri: str
    duration_ms: int
    independent: bool = False


@dataclass(frozen=True)
class ParsedServerControl:
    """EXT-X-SERVER-CONTROL read back; times in ms, None where the attribute is absent."""

    can_block_reload: bool
    part_hold_back_ms: int | None
    hold_back_ms: int | None
    can_skip_until_ms: int | None


@dataclass(frozen=True)
class ParsedOpenSegment:
    """The parts after the last segment URI: the segment being written."""

    media_sequence: int
    discontinuity: bool
    discontinuity_sequence: int
    program_date_time_ms: int | None
    map_uri: str | None
    parts: tuple[ParsedPart, ...]


@dataclass(frozen=True)
class ParsedPreloadHint:
    type: str
    uri: str


@dataclass
class PlaylistTags:
    """The playlist-wide tags ``parse_media_playlist`` collects on the way."""

    version: int | None = None
    part_target_ms: int | None = None
    server_control: ParsedServerControl | None = None
    preload_hint: ParsedPreloadHint | None = None
    rendition_reports: list[RenditionReport] = field(default_factory=list)
    skipped: int = 0


def read_part(value: str, where: str) -> ParsedPart:
    attrs = attributes(value, where, "URI", "DURATION")  # bis 4.4.4.9
    return ParsedPart(attrs["URI"], milliseconds(attrs["DURATION"], where), attrs.get("INDEPENDENT") == "YES")


def read_skip(value: str, where: str) -> int:
    return integer(attributes(value, where, "SKIPPED-SEGMENTS")["SKIPPED-SEGMENTS"], where)  # bis 4.4.5.2


def read_playlist_tag(found: PlaylistTags, tag: str, value: str, where: str) -> None:
    """EXT-X-VERSION and the LL-HLS tags that describe the whole playlist; others are skipped."""
    if tag == "#EXT-X-VERSION":
        found.version = integer(value, where)
    elif tag == "#EXT-X-PART-INF":
        found.part_target_ms = milliseconds(attributes(value, where, "PART-TARGET")["PART-TARGET"], where)
    elif tag == "#EXT-X-SERVER-CONTROL":
        attrs = attributes(value, where)
        found.server_control = ParsedServerControl(attrs.get("CAN-BLOCK-RELOAD") == "YES", *(
            None if name not in attrs else milliseconds(attrs[name], where)
            for name in ("PART-HOLD-BACK", "HOLD-BACK", "CAN-SKIP-UNTIL")
        ))
    elif tag == "#EXT-X-PRELOAD-HINT":
        attrs = attributes(value, where, "TYPE", "URI")
        found.preload_hint = ParsedPreloadHint(attrs["TYPE"], attrs["URI"])
    elif tag == "#EXT-X-RENDITION-REPORT":
        attrs = attributes(value, where, "URI", "LAST-MSN")
        last_part = None if "LAST-PART" not in attrs else integer(attrs["LAST-PART"], where)
        found.rendition_reports.append(RenditionReport(attrs["URI"], integer(attrs["LAST-MSN"], where), last_part))

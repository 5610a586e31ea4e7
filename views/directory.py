"""The live directory: live streams in a stable keyset order, per category, and each category's totals.

The pure half of the discovery views; ``views/discovery.py`` keeps
them in Valkey.  A stream is listed while its stream view says ``live``
(StreamStarted until StreamEnded); a configured stream is not listed.

Order.  A page is a range of a lexicographic sorted set: every member has
score 0 and members compare byte by byte, so ``ZRANGE key (member + BYLEX
LIMIT 0 n`` (https://valkey.io/commands/zrange/) continues strictly after the
last member a client saw.  Each member spells its own sort key:

    viewers   {999999999999 - viewers:012}:{9999999999999 - started_at_ms:013}:{stream_id}
    recent    {9999999999999 - started_at_ms:013}:{stream_id}

Inverted, zero-padded numbers make ascending byte order the wanted descending
order (most viewers first, then the newest); the stream id makes every member
unique, so ties (thousands of streams with 0 viewers) still have one exact
order, and a cursor never repeats or skips a stream that stays where it is.

A cursor is the last member of a page and its sort, in URL-safe base64: opaque
to clients, checked on the way back in (``decode_cursor`` raises ValueError).

Categories are free text; they compare case-insensitively after NFKC
(``category_key``), so "Just Chatting" and "just chatting" are one category,
shown under the first of its spellings in code-point order.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from views.channels import ChannelView
from views.streams import StreamView

VIEWERS, RECENT = "viewers", "recent"
SORTS = (VIEWERS, RECENT)
MAX_VIEWERS = 10**12 - 1  # 12 digits in a member
MAX_MS = 10**13 - 1  # 13 digits: wall times in ms until the year 2286
MAX_CURSOR_LENGTH = 256
THUMBNAIL_URL = "/thumbs/{stream_id}.jpg"
_MEMBER_RE = {
    VIEWERS: re.compile(r"^\d{12}:\d{13}:[^:\s]{1,64}$"),
    RECENT: re.compile(r"^\d{13}:[^:\s]{1,64}$"),
}


@dataclass(frozen=True)
class DirectoryEntry:
    """What the directory shows about one live stream."""

    stream_id: str
    channel_id: str
    channel_name: str | None
    title: str
    category: str | None
    tags: tuple[str, ...]
    viewers: int
    started_at_ms: int

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["tags"] = list(self.tags)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DirectoryEntry:
        return cls(**{**data, "tags": tuple(data["tags"])})

    def public(self) -> dict[str, Any]:
        """The entry as ``GET /v1/directory/streams`` lists it."""
        return {"stream_id": self.stream_id, "channel_id": self.channel_id, "channel_name": self.channel_name,
                "title": self.title, "category": self.category, "tags": list(self.tags),
                "viewers": self.viewers, "started_at_ms": self.started_at_ms,
                "thumbnail_url": THUMBNAIL_URL.format(stream_id=self.stream_id)}


@dataclass(frozen=True)
class Audience:
    """A stream's latest viewer count and the ``viewer.counts`` offset it came from."""

    viewers: int
    seq: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Audience:
        return cls(**data)


def category_key(name: str | None) -> str | None:
    """The form categories compare under: NFKC, case-folded, inner spaces collapsed; None for none."""
    if name is None:
        return None
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split()) or None


def live_entry(stream: StreamView | None, channel: ChannelView | None, viewers: int) -> DirectoryEntry | None:
    """The directory entry of a stream: present while it is live, None otherwise."""
    if stream is None or not stream.live:
        return None
    name = channel.name if channel is not None and channel.id == stream.channel_id else None
    return DirectoryEntry(stream_id=stream.id, channel_id=stream.channel_id, channel_name=name, title=stream.title,
                          category=stream.category or None, tags=stream.tags,
                          viewers=min(max(0, viewers), MAX_VIEWERS), started_at_ms=stream.started_at_ms or 0)


def apply_count(offset: int, viewers: int, audience: Audience | None) -> Audience:
    """A stream's audience after a ViewerCountUpdated at ``offset``; a redelivery changes nothing.

    Counts are absolute snapshots keyed by channel, so within one partition the
    latest offset is the latest count.
    """
    if audience is not None and offset <= audience.seq:
        return audience
    return Audience(viewers=min(max(0, int(viewers)), MAX_VIEWERS), seq=offset)


def member(sort: str, entry: DirectoryEntry) -> str:
    """The entry's member in the ``sort`` sets (see the module docstring)."""
    started = f"{MAX_MS - min(max(0, entry.started_at_ms), MAX_MS):013d}"
    if sort == VIEWERS:
        return f"{MAX_VIEWERS - entry.viewers:012d}:{started}:{entry.stream_id}"
    if sort == RECENT:
        return f"{started}:{entry.stream_id}"
    raise ValueError(f"unknown sort {sort!r} (expected one of {', '.join(SORTS)})")


def stream_of(member_: str) -> str:
    """The stream id a member ends with."""
    return member_.rsplit(":", 1)[-1]


def placements(entry: DirectoryEntry | None) -> set[tuple[str, str | None, str]]:
    """Every (sort, category key or None for all categories, member) the entry is listed under."""
    if entry is None:
        return set()
    cats = [None, category_key(entry.category)] if entry.category else [None]
    return {(sort, cat, member(sort, entry)) for sort in SORTS for cat in dict.fromkeys(cats)}


def category_deltas(old: DirectoryEntry | None, new: DirectoryEntry | None) -> dict[str, tuple[int, int]]:
    """(live streams, viewers) to add per category key, for every category either entry is in.

    Categories whose totals do not move are included with (0, 0), so that the
    totals' fields exist for the same categories however counts and lifecycle
    events interleave on a replay.
    """
    out: dict[str, tuple[int, int]] = {}
    for entry, sign in ((old, -1), (new, 1)):
        key = category_key(entry.category) if entry is not None else None
        if entry is not None and key is not None:
            live, viewers = out.get(key, (0, 0))
            out[key] = (live + sign, viewers + sign * entry.viewers)
    return out


def category_rows(names: Iterable[str], live: Mapping[str, int],
                  viewers: Mapping[str, int]) -> list[dict[str, Any]]:
    """``GET /v1/categories`` rows: every category ever used, most viewers first, then by name.

    ``names`` are every spelling seen; a category shows under its first spelling
    in code-point order.  ``live`` and ``viewers`` are keyed by ``category_key``.
    """
    shown: dict[str, str] = {}
    for name in names:
        key = category_key(name)
        if key is not None and (key not in shown or name < shown[key]):
            shown[key] = name
    rows = [{"name": name, "live_streams": max(0, int(live.get(key, 0))), "viewers": max(0, int(viewers.get(key, 0)))}
            for key, name in shown.items()]
    return sorted(rows, key=lambda r: (-r["viewers"], r["name"].casefold(), r["name"]))


def encode_cursor(sort: str, member_: str) -> str:
    """The opaque cursor that continues after ``member_``."""
    return base64.urlsafe_b64encode(f"{sort}|{member_}".encode()).decode().rstrip("=")


def decode_cursor(sort: str, cursor: str) -> str:
    """The member a cursor continues after; ValueError if it is not one of ours for ``sort``."""
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise ValueError(f"cursor must be 1-{MAX_CURSOR_LENGTH} characters")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("cursor is not one this API returned") from None
    given, _, member_ = raw.partition("|")
    if given not in SORTS or not _MEMBER_RE[given].match(member_):
        raise ValueError("cursor is not one this API returned")
    if given != sort:
        raise ValueError(f"cursor belongs to sort={given}, not sort={sort}")
    return member_


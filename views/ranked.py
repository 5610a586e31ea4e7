"""Per-owner lists ranked by time or by views, newest or most viewed first, paged by an opaque cursor.

The videos and clips views keep one pair of lexicographic sorted sets per
channel (every score 0, so ``ZRANGEBYLEX`` orders by member):

    {kind}:{channel}:time    "<inverted time>:<id>"
    {kind}:{channel}:views   "<inverted views>:<inverted time>:<id>"

Inverting (a large constant minus the value, zero-padded) makes the newest and
the most viewed sort first, ties broken by time and then id, so a page
continues strictly after its cursor's member even while counts change.  A
member is a pure function of (id, time, views): whoever rewrites an entry can
remove the old member without reading the set.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

TIME: Final = "time"
VIEWS: Final = "views"
Sort = Literal["time", "views"]
SORTS: tuple[Sort, ...] = (TIME, VIEWS)
MAX_CURSOR_LENGTH = 256
_TIME_MAX = 10**13 - 1  # epoch ms fit in 13 digits until the year 2286
_VIEWS_MAX = 10**12 - 1
_MEMBER = {TIME: re.compile(r"^\d{13}:[0-9a-f-]{36}$"), VIEWS: re.compile(r"^\d{12}:\d{13}:[0-9a-f-]{36}$")}


def time_member(at_ms: int, item_id: str) -> str:
    return f"{_TIME_MAX - max(0, min(at_ms, _TIME_MAX)):013d}:{item_id}"


def views_member(views: int, at_ms: int, item_id: str) -> str:
    return f"{_VIEWS_MAX - max(0, min(views, _VIEWS_MAX)):012d}:{time_member(at_ms, item_id)}"


def member(sort: Sort, views: int, at_ms: int, item_id: str) -> str:
    return time_member(at_ms, item_id) if sort == TIME else views_member(views, at_ms, item_id)


def item_of(member_: str) -> str:
    """The id at the end of a member."""
    return member_.rsplit(":", 1)[1]


def encode_cursor(kind: str, sort: Sort, member_: str) -> str:
    """The opaque cursor that continues a ``kind`` listing, sorted by ``sort``, after ``member_``."""
    return base64.urlsafe_b64encode(f"{kind}|{sort}|{member_}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, sort: Sort, cursor: str) -> str:
    """The member a cursor continues after; ValueError if it is not one of ours for this listing."""
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise ValueError(f"cursor must be 1-{MAX_CURSOR_LENGTH} characters")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("cursor is not one this API returned") from None
    given_kind, given_sort, member_ = (raw.split("|", 2) + ["", ""])[:3]
    if given_kind != kind or given_sort != sort or not _MEMBER[sort].match(member_):
        raise ValueError(f"cursor is not one this API returned for {kind} sorted by {sort}")
    return member_


@dataclass(frozen=True)
class Ranked:
    """Where one listed item sits: its id, the time it sorts by, and its views."""

    item_id: str
    at_ms: int
    views: int


def relist(tx: Pipeline, list_key: Callable[[Sort], str], old: Ranked | None, new: Ranked | None) -> None:
    """Queue on ``tx`` the moves that take an item from ``old`` to ``new`` in both lists (None: not listed)."""
    for sort in SORTS:
        before = None if old is None else member(sort, old.views, old.at_ms, old.item_id)
        after = None if new is None else member(sort, new.views, new.at_ms, new.item_id)
        if before == after:
            continue
        if before is not None:
            tx.zrem(list_key(sort), before)
        if after is not None:
            tx.zadd(list_key(sort), {after: 0})


async def page_ids(r: aioredis.Redis, key: str, after: str | None, limit: int) -> tuple[list[str], str | None]:
    """Up to ``limit`` ids from a ranked list, after the member ``after``, and the last member when more follow."""
    low = "-" if after is None else f"({after}"
    found = [m.decode() if isinstance(m, bytes) else str(m)
             for m in await r.zrangebylex(key, low, "+", start=0, num=limit + 1)]
    rows = found[:limit]
    return [item_of(m) for m in rows], (rows[-1] if len(found) > limit else None)

"""The follow graph as views: who follows which channel, since when, with or without go-live notifications.

Folded from ``social.follows`` (key ``follower_id:channel_id``), a compacted
topic: the latest event per pair is the whole truth about that pair, so a
``Followed`` that only changes ``notifications_enabled`` carries the time of
the follow itself as ``occurred_at`` (gateways/follows.py), and the fold keeps
the first follow time of a pair that is already following anyway.  Keys under
``{prefix}view:``:

    follow:{user id}          hash channel id -> pair state "seq:following:followed_at_ms:notifications"
    following:{user id}       lexicographic sorted set of "{MAX_MS - followed_at_ms:013}:{channel id}"
    followers:{channel id}    lexicographic sorted set of "{MAX_MS - followed_at_ms:013}:{user id}"

The pair state records the offset of the last event applied to the pair, so a
redelivered (or older) event changes nothing; an unfollowed pair keeps its
state (``following`` 0) for the same reason.  The sorted sets list newest
first and page by keyset, as the live directory does (views/directory.py): a
cursor is the last member a page showed.  The counts are their cardinalities,
so a repeated ``Followed`` or ``Unfollowed`` can never count twice.  Every
write of one event is one MULTI/EXEC, so a crash leaves the pair all before or
all after it.  The chat rooms fold the same events on their own
(views/chat_rooms.py); ``ViewStore.apply`` runs them first, so a pair whose
state here has reached an offset has reached it in the chat room too.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis

from schemas.record import Record
from schemas.records.social import Followed, Unfollowed
from views.fold import Applied, is_redelivery

FOLLOW_RECORDS: frozenset[type[Record]] = frozenset({Followed, Unfollowed})
MAX_MS = 10**13 - 1  # 13 digits of milliseconds, as the directory's members
MAX_CURSOR_LENGTH = 256
FOLLOWING, FOLLOWERS = "following", "followers"
_MEMBER_RE = re.compile(r"^\d{13}:[0-9a-f-]{36}$")
# A live=true page looks at this many follows per Valkey round trip and at most LIVE_SCAN_MAX per request,
# so one request costs the same however many channels a user follows (the page may come back short).
LIVE_SCAN_CHUNK = 200
LIVE_SCAN_MAX = 2000


@dataclass(frozen=True)
class FollowState:
    """What the view knows about one (follower, channel) pair."""

    seq: int  # offset of the last event applied to the pair
    following: bool
    followed_at_ms: int
    notifications: bool

    def encode(self) -> str:
        return f"{self.seq}:{int(self.following)}:{self.followed_at_ms}:{int(self.notifications)}"

    @classmethod
    def decode(cls, raw: bytes | str) -> FollowState:
        seq, following, at, notify = (raw.decode() if isinstance(raw, bytes) else raw).split(":")
        return cls(int(seq), following == "1", int(at), notify == "1")


@dataclass(frozen=True)
class Follow:
    """One row of a page: the other side of the pair (channel or follower) and when the follow began."""

    id: str
    followed_at_ms: int
    member: str


def fold_follow(event: Applied[Followed | Unfollowed], state: FollowState | None) -> FollowState | None:
    """The pair's state after ``event``; None when it is a redelivery (nothing to write)."""
    if state is not None and is_redelivery(event, state.seq):
        return None
    v = event.value
    if isinstance(v, Followed):
        # Following already (a notifications change, or a second follow): the follow keeps its first time.
        at = state.followed_at_ms if state is not None and state.following else v.occurred_at
        return FollowState(event.offset, True, at, v.notifications_enabled)
    at = state.followed_at_ms if state is not None else v.occurred_at
    return FollowState(event.offset, False, at, False)


def member(followed_at_ms: int, other_id: str) -> str:
    """The sorted-set member of a follow: ascending bytes are newest first."""
    return f"{MAX_MS - min(max(0, followed_at_ms), MAX_MS):013d}:{other_id}"


def row(member_: str) -> Follow:
    """The follow a member spells."""
    inverted, _, other = member_.partition(":")
    return Follow(other, MAX_MS - int(inverted), member_)


def encode_cursor(kind: str, member_: str) -> str:
    """The opaque cursor that continues a ``kind`` listing after ``member_``."""
    return base64.urlsafe_b64encode(f"{kind}|{member_}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> str:
    """The member a cursor continues after; ValueError if it is not one of ours for ``kind``."""
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise ValueError(f"cursor must be 1-{MAX_CURSOR_LENGTH} characters")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("cursor is not one this API returned") from None
    given, _, member_ = raw.partition("|")
    if given != kind or not _MEMBER_RE.match(member_):
        raise ValueError("cursor is not one this API returned for this list")
    return member_


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Follows:
    """Read and write the follow views in Valkey."""

    def __init__(self, client: aioredis.Redis, prefix: str, live_key: Callable[[str], str]) -> None:
        self.r = client
        self.views = f"{prefix}view:"
        self.live_key = live_key  # a channel's live-stream pointer (views/store.py)

    def k_state(self, user_id: str) -> str:
        return f"{self.views}follow:{user_id}"

    def k_following(self, user_id: str) -> str:
        return f"{self.views}following:{user_id}"

    def k_followers(self, channel_id: str) -> str:
        return f"{self.views}followers:{channel_id}"

    # -- writes (processor side) --------------------------------------------
    async def apply(self, event: Applied[Record]) -> bool:
        """Fold a Followed or Unfollowed into the pair, its lists and counts; True if anything changed."""
        v = event.value
        if not isinstance(v, (Followed, Unfollowed)):
            return False
        old = await self.state(v.follower_id, v.channel_id)
        new = fold_follow(cast("Applied[Followed | Unfollowed]", event), old)
        if new is None:
            return False
        async with self.r.pipeline(transaction=True) as tx:
            tx.hset(self.k_state(v.follower_id), v.channel_id, new.encode())
            if old is not None and old.following and (not new.following or old.followed_at_ms != new.followed_at_ms):
                tx.zrem(self.k_following(v.follower_id), member(old.followed_at_ms, v.channel_id))
                tx.zrem(self.k_followers(v.channel_id), member(old.followed_at_ms, v.follower_id))
            if new.following:
                tx.zadd(self.k_following(v.follower_id), {member(new.followed_at_ms, v.channel_id): 0})
                tx.zadd(self.k_followers(v.channel_id), {member(new.followed_at_ms, v.follower_id): 0})
            await tx.execute()
        return True

    # -- reads --------------------------------------------------------------
    async def state(self, user_id: str, channel_id: str) -> FollowState | None:
        raw = await self.r.hget(self.k_state(user_id), channel_id)
        return None if raw is None else FollowState.decode(raw)

    async def states(self, user_id: str, channel_ids: Sequence[str]) -> list[FollowState | None]:
        """The pair states of one user and several channels, in one round trip."""
        if not channel_ids:
            return []
        raw = await self.r.hmget(self.k_state(user_id), list(channel_ids))
        return [None if r is None else FollowState.decode(r) for r in raw]

    async def follower_count(self, channel_id: str) -> int:
        return int(await self.r.zcard(self.k_followers(channel_id)))

    async def following_count(self, user_id: str) -> int:
        return int(await self.r.zcard(self.k_following(user_id)))

    async def _range(self, key: str, after: str | None, count: int) -> list[str]:
        start = b"(" + after.encode() if after is not None else b"-"
        found = cast("list[bytes]", await self.r.zrange(key, start, b"+", bylex=True, offset=0, num=count))
        return [_text(m) for m in found]

    async def page(self, kind: str, owner_id: str, after: str | None, limit: int) -> tuple[list[Follow], str | None]:
        """Up to ``limit`` follows of a user (``following``) or a channel (``followers``), newest first,
        and the last member when more follow."""
        key = self.k_following(owner_id) if kind == FOLLOWING else self.k_followers(owner_id)
        found = await self._range(key, after, limit + 1)
        rows = [row(m) for m in found[:limit]]
        return rows, (rows[-1].member if len(found) > limit else None)

    async def live_page(self, user_id: str, after: str | None,
                        limit: int) -> tuple[list[tuple[Follow, str]], str | None]:
        """Up to ``limit`` followed channels that are live now, with their stream ids, and where to go on.

        Looks at no more than ``LIVE_SCAN_MAX`` follows: past that, the page
        comes back short with a cursor, so a client that follows thousands of
        channels pages through them at a bounded cost per request.
        """
        key = self.k_following(user_id)
        found: list[tuple[Follow, str]] = []
        scanned = 0
        while True:
            chunk = await self._range(key, after, LIVE_SCAN_CHUNK)
            if not chunk:
                return found, None
            rows = [row(m) for m in chunk]
            streams = cast("list[Any]", await self.r.mget([self.live_key(r.id) for r in rows]))
            for i, (r, stream) in enumerate(zip(rows, streams, strict=True)):
                after, scanned = r.member, scanned + 1
                if stream is not None:
                    found.append((r, _text(stream)))
                more = i + 1 < len(chunk) or len(chunk) == LIVE_SCAN_CHUNK
                if len(found) == limit or scanned >= LIVE_SCAN_MAX:
                    return found, (after if more else None)
            if len(chunk) < LIVE_SCAN_CHUNK:
                return found, None

"""The heartbeat route's per-process state: a stream -> channel cache, the session gate, event ids.

A popular channel means thousands of beats a second per gateway, so the
stream -> channel lookup is kept in memory for a few seconds instead of
costing a Valkey round trip per beat; concurrent misses for one stream share
a single lookup.  The gateway's lifespan makes one ``Intake`` per app
(gateways/services.py); the route is gateways/heartbeats.py.

The session gate (``SessionGate``) remembers, per session, the last beat it
accepted and the playback token that beat carried.  It keeps a session to one
beat per interval, and a beat with the same token as the session's last one
skips the HMAC check (a player keeps its token for minutes).  It is per
process on purpose: a session replayed to several gateways is still one
session in the HyperLogLog count, so sharing the gate through Valkey would
buy no accuracy for a round trip per beat; what it bounds per gateway is the
work and the log records a session can cause.  Its memory is two generations
of the sessions seen in the last ``2 * ROTATE_INTERVALS`` intervals, and only
sessions whose token checked out get in.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import OrderedDict

from views.store import ViewStore

STREAM_CACHE_TTL_S = 5.0  # a stream's channel never changes; expiry only bounds memory and view rebuilds
UNKNOWN_STREAM_TTL_S = 1.0  # a stream the view does not have yet may appear any moment
STREAM_CACHE_SIZE = 10_000
# RFC 9562 section 4: the version nibble (bits 48-51 from the left) and the variant bits (64-65).
UUID_VERSION_VARIANT_MASK = (0xF << 76) | (0x3 << 62)
UUID_V4_BITS = (0x4 << 76) | (0x2 << 62)
# A player's timer fires every interval, give or take a request's jitter: a beat is refused as too soon only
# when it comes within this fraction of the interval of the session's last accepted one.
INTERVAL_SLACK = 0.2
ROTATE_INTERVALS = 2  # a generation of the gate lasts this many intervals: a beating session stays in it
GATE_GENERATION_MAX = 250_000  # sessions per generation; more rotates early (bounded memory under a flood)


class StreamChannels:
    """A bounded, expiring map of stream id -> channel id (None: the stream is unknown), and whether it ended."""

    def __init__(self, maxsize: int = STREAM_CACHE_SIZE) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[str, tuple[float, str | None, bool]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[str | None]] = {}

    def get(self, stream_id: str, now_s: float) -> tuple[bool, str | None]:
        """(found, channel id) for a fresh entry; (False, None) when absent or expired."""
        entry = self._entries.get(stream_id)
        if entry is None or entry[0] <= now_s:
            return False, None
        return True, entry[1]

    def ended(self, stream_id: str) -> bool:
        """Whether the stream had ended when its entry was read (a beat for it is VOD playback)."""
        entry = self._entries.get(stream_id)
        return entry is not None and entry[2]

    def put(self, stream_id: str, channel_id: str | None, now_s: float, ended: bool = False) -> None:
        ttl = STREAM_CACHE_TTL_S if channel_id is not None else UNKNOWN_STREAM_TTL_S
        self._entries[stream_id] = (now_s + ttl, channel_id, ended)
        self._entries.move_to_end(stream_id)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)  # the oldest insertion goes first

    async def lookup(self, views: ViewStore, stream_id: str) -> str | None:
        """The stream's channel, from the cache or (once for concurrent callers) the stream view."""
        found, channel_id = self.get(stream_id, time.monotonic())
        if found:
            return channel_id
        pending = self._pending.get(stream_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = future
        try:
            stream = await views.get_stream(stream_id)
            channel_id = stream.channel_id if stream is not None else None
            self.put(stream_id, channel_id, time.monotonic(), stream is not None and stream.ended)
            future.set_result(channel_id)
            return channel_id
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so a future nobody else awaited is not logged
            raise
        finally:
            del self._pending[stream_id]


# A session's last accepted beat: when (monotonic s), the token it carried, the channel that token was
# checked for, and the token's expiry (wall clock s).  A plain tuple of atomic values on purpose: the gate
# keeps one per session for seconds, and the collector stops tracking such tuples at once, where
# objects of a class would pile up in its oldest generation and make full collections more frequent.
Admitted = tuple[float, str, str, int]


def vouches(beat: Admitted, token: str, channel_id: str, now_wall_s: float) -> bool:
    """Whether a beat's token was already checked for this channel and is still valid (no HMAC needed)."""
    return token == beat[1] and channel_id == beat[2] and now_wall_s < beat[3]


def too_soon_s(last_at_s: float, now_s: float, interval_s: float) -> float:
    """Seconds a beat at ``now_s`` comes too early after one accepted at ``last_at_s`` (0: in time)."""
    wait = last_at_s + interval_s * (1 - INTERVAL_SLACK) - now_s
    return wait if wait > 0 else 0.0


class SessionGate:
    """Per session, the last accepted beat: two generations of dicts, so old sessions fall out wholesale."""

    def __init__(self, generation_max: int = GATE_GENERATION_MAX) -> None:
        self.generation_max = generation_max
        self._current: dict[str, Admitted] = {}
        self._previous: dict[str, Admitted] = {}
        self._rotated_at_s = -math.inf  # the first beat starts a generation

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def last(self, session_id: str) -> Admitted | None:
        """The session's last accepted beat, if it was recent enough to be remembered."""
        found = self._current.get(session_id)
        return found if found is not None else self._previous.get(session_id)

    def admit(self, session_id: str, beat: Admitted, interval_s: float) -> None:
        """Remember an accepted beat (the route checked it was in time)."""
        at_s = beat[0]
        if at_s - self._rotated_at_s >= ROTATE_INTERVALS * interval_s or len(self._current) >= self.generation_max:
            self._previous, self._current = self._current, {}
            self._rotated_at_s = at_s
        self._current[session_id] = beat


def retry_after_s(wait_s: float) -> int:
    """A Retry-After header value for a wait (whole seconds, at least 1)."""
    return max(1, math.ceil(wait_s))


class Intake:
    """What the heartbeat route keeps per gateway app (``Services.heartbeats``): caches, the gate, event ids."""

    def __init__(self) -> None:
        self.streams = StreamChannels()
        self.sessions = SessionGate()
        # Event ids need uniqueness, not secrecy: a seeded PRNG spares a getrandom()
        # system call per beat, which also releases the GIL to the producer's threads.
        self._random = random.Random()

    def event_id(self) -> str:
        """A random (version 4, RFC 9562 5.4) UUID in its canonical text form."""
        bits = self._random.getrandbits(128) & ~UUID_VERSION_VARIANT_MASK | UUID_V4_BITS
        h = f"{bits:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

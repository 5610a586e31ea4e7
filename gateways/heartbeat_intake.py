"""The heartbeat route's per-process state: a stream -> channel cache and a cheap event-id source.

A popular channel means thousands of beats a second per gateway, so the
stream -> channel lookup is kept in memory for a few seconds instead of
costing a Valkey round trip per beat; concurrent misses for one stream share
a single lookup.  The gateway's lifespan makes one ``Intake`` per app
(gateways/services.py); the route is gateways/heartbeats.py.
"""

from __future__ import annotations

import asyncio
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


class StreamChannels:
    """A bounded, expiring map of stream id -> channel id (None: the stream is unknown)."""

    def __init__(self, maxsize: int = STREAM_CACHE_SIZE) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[str | None]] = {}

    def get(self, stream_id: str, now_s: float) -> tuple[bool, str | None]:
        """(found, channel id) for a fresh entry; (False, None) when absent or expired."""
        entry = self._entries.get(stream_id)
        if entry is None or entry[0] <= now_s:
            return False, None
        return True, entry[1]

    def put(self, stream_id: str, channel_id: str | None, now_s: float) -> None:
        ttl = STREAM_CACHE_TTL_S if channel_id is not None else UNKNOWN_STREAM_TTL_S
        self._entries[stream_id] = (now_s + ttl, channel_id)
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
            self.put(stream_id, channel_id, time.monotonic())
            future.set_result(channel_id)
            return channel_id
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so a future nobody else awaited is not logged
            raise
        finally:
            del self._pending[stream_id]


class Intake:
    """What the heartbeat route keeps per gateway app (``Services.heartbeats``): the stream cache, event ids."""

    def __init__(self) -> None:
        self.streams = StreamChannels()
        # Event ids need uniqueness, not secrecy: a seeded PRNG spares a getrandom()
        # system call per beat, which also releases the GIL to the producer's threads.
        self._random = random.Random()

    def event_id(self) -> str:
        """A random (version 4, RFC 9562 5.4) UUID in its canonical text form."""
        bits = self._random.getrandbits(128) & ~UUID_VERSION_VARIANT_MASK | UUID_V4_BITS
        h = f"{bits:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

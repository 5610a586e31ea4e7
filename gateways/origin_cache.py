"""Request collapsing and a memory cache in front of the origin store.

Every viewer of a live stream asks for the newest segment within about a
second of it being listed, so a popular stream turns one new object into a
burst of identical reads (the "thundering herd" a CDN's request collapsing
exists for).  ``OriginCache.get`` answers them with:

* single flight: concurrent requests for an object that is not in memory
  share one read of the store, keyed by blob key.  The read runs in its own
  task, so a client that goes away does not cancel it for the others.  An
  error (no such object) reaches every request waiting on that read and is
  not kept: the next request reads again.
* a bytes-bounded LRU: segments and init segments never change once listed
  (gateways/hls.py serves them ``immutable``), so a copy stays valid until it
  is evicted to make room.  An object larger than ``max_object_bytes`` is
  collapsed but not kept, so one huge object cannot flush the rest.

ETag and Last-Modified are computed as Starlette's ``FileResponse`` computes
them from ``os.stat`` (an MD5 of ``"{st_mtime}-{st_size}"``), so a response
from memory and one from the file carry the same validators.  Pure apart
from awaiting the loader it is handed: no store, no files, no clock.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from functools import partial

OBJECT_SHARE = 8  # an object over 1/8 of the budget is served but not kept


@dataclass(frozen=True)
class OriginObject:
    """An object's bytes and its HTTP validators (RFC 9110 8.8)."""

    body: bytes
    etag: str
    last_modified: str

    @classmethod
    def from_stat(cls, body: bytes, mtime_s: float) -> OriginObject:
        """The object as ``FileResponse`` would describe the file it came from."""
        digest = hashlib.md5(f"{mtime_s}-{len(body)}".encode(), usedforsecurity=False).hexdigest()
        return cls(body, f'"{digest}"', formatdate(mtime_s, usegmt=True))


class ByteLRU:
    """Least-recently-used objects by key, at most ``max_bytes`` of bodies in all."""

    def __init__(self, max_bytes: int, max_object_bytes: int | None = None) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be 0 or more, got {max_bytes}")
        self.max_bytes = max_bytes
        self.max_object_bytes = max_bytes // OBJECT_SHARE if max_object_bytes is None else max_object_bytes
        self.size_bytes = 0
        self.evictions = 0
        self._entries: OrderedDict[str, OriginObject] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> OriginObject | None:
        obj = self._entries.get(key)
        if obj is not None:
            self._entries.move_to_end(key)
        return obj

    def put(self, key: str, obj: OriginObject) -> bool:
        """Keep ``obj`` (evicting the least recently used); False when it is too large to keep."""
        size = len(obj.body)
        if size > self.max_object_bytes or size > self.max_bytes:
            return False
        old = self._entries.pop(key, None)
        if old is not None:
            self.size_bytes -= len(old.body)
        self._entries[key] = obj
        self.size_bytes += size
        while self.size_bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.size_bytes -= len(evicted.body)
            self.evictions += 1
        return True


class OriginCache:
    """Single-flight reads of origin objects, the immutable ones kept in a ``ByteLRU``."""

    def __init__(self, max_bytes: int, max_object_bytes: int | None = None) -> None:
        self.memory = ByteLRU(max_bytes, max_object_bytes)
        self.hits = 0  # answered from memory
        self.loads = 0  # reads of the store started
        self.collapsed = 0  # requests that joined a read already under way
        self._pending: dict[str, asyncio.Future[OriginObject]] = {}

    async def get(self, key: str, load: Callable[[], Awaitable[OriginObject]], keep: bool = True) -> OriginObject:
        """The object under ``key``: from memory, from a read already under way, or from ``load()``.

        ``keep=False`` is for objects that change (a thumbnail): the read is
        shared but its result is not remembered.
        """
        if keep:
            obj = self.memory.get(key)
            if obj is not None:
                self.hits += 1
                return obj
        pending = self._pending.get(key)
        if pending is None:
            self.loads += 1
            pending = self._pending[key] = asyncio.ensure_future(load())
            # Registered before any waiter's callback, so the object is kept before they resume.
            pending.add_done_callback(partial(self._settle, key, keep))
        else:
            self.collapsed += 1
        return await asyncio.shield(pending)

    def _settle(self, key: str, keep: bool, done: asyncio.Future[OriginObject]) -> None:
        if self._pending.get(key) is done:
            del self._pending[key]
        if done.cancelled():
            return
        # Retrieving the error here means a read whose waiters all left is not logged as lost.
        if done.exception() is None and keep:
            self.memory.put(key, done.result())

"""Which channels are live, in Valkey, so every ingest process agrees.

Two records per channel under ``settings.valkey.key_prefix``:

    ingest:live:{channel_id}    the publishing connection's id; expires after
                                ``silent_after_s`` unless media keeps refreshing it,
                                so a silent publisher loses the channel.
    ingest:parked:{channel_id}  a stream whose publisher dropped without unpublishing,
                                with what a reconnect needs to continue it (same
                                stream_id, next GOP seq, where the timeline ends).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

import redis.asyncio as aioredis

# Compare-and-refresh / compare-and-delete: only the holder may extend or release.
_REFRESH = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_UNPARK_IF = ("local v = redis.call('get', KEYS[1]) if v and cjson.decode(v)['stream_id'] == ARGV[1] "
              "then redis.call('del', KEYS[1]) return 1 end return 0")
# A parked record outlives its grace window a while so the reaper can still end it.
PARK_SLACK_MS = 60_000


@dataclass(frozen=True)
class LiveStream:
    """A broadcast as the ingest tracks it across reconnects."""

    stream_id: str
    channel_id: str
    started_at_ms: int
    next_seq: int = 0
    timeline_end_ms: int = 0  # where the stream timeline continues after a reconnect
    reconnects: int = 0
    parked_at_ms: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> LiveStream:
        return cls(**json.loads(raw))


class LiveRegistry:
    def __init__(self, client: aioredis.Redis, prefix: str, silent_after_s: float, grace_s: float) -> None:
        self.r = client
        self.prefix = prefix
        self.silent_ms = max(1, int(silent_after_s * 1000))
        self.grace_ms = int(grace_s * 1000)
        self._refresh = client.register_script(_REFRESH)
        self._release = client.register_script(_RELEASE)
        self._unpark_if = client.register_script(_UNPARK_IF)

    def _live(self, channel_id: str) -> str:
        return f"{self.prefix}ingest:live:{channel_id}"

    def _parked(self, channel_id: str) -> str:
        return f"{self.prefix}ingest:parked:{channel_id}"

    async def acquire(self, channel_id: str, owner: str) -> bool:
        """Claim the channel for a publishing connection; False while another is publishing."""
        return bool(await self.r.set(self._live(channel_id), owner, nx=True, px=self.silent_ms))

    async def refresh(self, channel_id: str, owner: str) -> bool:
        """Keep the claim alive (media arrived); False if it was lost to silence."""
        return bool(await self._refresh(keys=[self._live(channel_id)], args=[owner, self.silent_ms]))

    async def release(self, channel_id: str, owner: str) -> None:
        await self._release(keys=[self._live(channel_id)], args=[owner])

    async def park(self, stream: LiveStream, now_ms: int) -> None:
        """Remember a dropped stream for the grace window."""
        parked = replace(stream, parked_at_ms=now_ms)
        await self.r.set(self._parked(stream.channel_id), parked.to_json(), px=self.grace_ms + PARK_SLACK_MS)

    async def resume(self, channel_id: str, now_ms: int) -> LiveStream | None:
        """Take a parked stream back if its grace window is still open."""
        raw = await self.r.getdel(self._parked(channel_id))
        if raw is None:
            return None
        stream = LiveStream.from_json(raw)
        if now_ms - stream.parked_at_ms > self.grace_ms:
            # Too late: put it back for the reaper that ends it.
            await self.r.set(self._parked(channel_id), raw, px=PARK_SLACK_MS)
            return None
        return stream

    async def expired(self, now_ms: int) -> list[LiveStream]:
        """Parked streams whose grace window has closed (any ingest process may end them)."""
        found = []
        async for key in self.r.scan_iter(match=f"{self.prefix}ingest:parked:*", count=500):
            raw = await self.r.get(key)
            if raw is not None:
                stream = LiveStream.from_json(raw)
                if now_ms - stream.parked_at_ms > self.grace_ms:
                    found.append(stream)
        return found

    async def unpark(self, channel_id: str, stream_id: str) -> bool:
        """The grace window closed: remove the parked stream if nobody resumed it."""
        return bool(await self._unpark_if(keys=[self._parked(channel_id)], args=[stream_id]))

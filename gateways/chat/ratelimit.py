"""A per-user sliding-window rate limit in Valkey: at most N messages in any ``window`` milliseconds.

One Lua script per check, so concurrent sends on several gateways agree
(the window is a sorted set of send times; Valkey runs scripts atomically).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from views.scripts import Queued

# KEYS[1]: the user's window.  ARGV: now (ms), window (ms), limit, a unique member.
# Returns {1, 0} when the send is allowed (and recorded), {0, ms until a slot frees} when not.
_SLIDING_WINDOW = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('zremrangebyscore', KEYS[1], '-inf', now - window)
if redis.call('zcard', KEYS[1]) >= limit then
  local oldest = redis.call('zrange', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, math.max(1, tonumber(oldest[2]) + window - now)}
end
redis.call('zadd', KEYS[1], now, ARGV[4])
redis.call('pexpire', KEYS[1], window)
return {1, 0}
"""


class RateLimiter:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = f"{prefix}chat:rate:"
        self._script = client.register_script(_SLIDING_WINDOW)

    def call(self, channel_id: str, user_id: str, now_ms: int, window_ms: int, limit: int, member: str) -> Queued:
        """The check as a script call, to run with others in one round trip (views/scripts.py)."""
        return Queued(self._script, [f"{self.prefix}{channel_id}:{user_id}"], [now_ms, window_ms, limit, member])

    @staticmethod
    def answer(result: list[int]) -> tuple[bool, int]:
        """(allowed, ms to wait when not), from the script's answer."""
        ok, wait = result
        return bool(ok), int(wait)

    async def allow(self, channel_id: str, user_id: str, now_ms: int, window_ms: int, limit: int,
                    member: str) -> tuple[bool, int]:
        """(allowed, ms to wait when not)."""
        return self.answer(await self.call(channel_id, user_id, now_ms, window_ms, limit, member).run())

"""A per-user sliding-window rate limit in Valkey: at most N messages in any ``window`` milliseconds.

One Lua script per check, so concurrent sends on several gateways agree
(the window is a sorted set of send times; Valkey runs scripts atomically).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from views.scripts import Queued

# KEYS[1]: the user's window, [KEYS[2]: the room's roles].  ARGV: now (ms), window (ms), limit, a unique member,
# [the user, the limit of a moderator]: with the roles, a moderator of the room gets the second limit.
# Returns {1, 0} when the send is allowed (and recorded), {0, ms until a slot frees} when not.
_SLIDING_WINDOW = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if KEYS[2] and redis.call('hget', KEYS[2], ARGV[5]) == 'moderator' then limit = tonumber(ARGV[6]) end
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

    def key(self, channel_id: str, user_id: str) -> str:
        """The user's window in the room (a sorted set of send times, one member per counted send)."""
        return f"{self.prefix}{channel_id}:{user_id}"

    def call(self, channel_id: str, user_id: str, now_ms: int, window_ms: int, limit: int, member: str,
             moderator: tuple[str, int] | None = None) -> Queued:
        """The check as a script call, to run with others in one round trip (views/scripts.py).

        ``moderator``: (the room's roles hash, the limit of a moderator), for a limit that depends on a role
        the same round trip reads.
        """
        keys, args = [self.key(channel_id, user_id)], list[str | int]([now_ms, window_ms, limit, member])
        if moderator is not None:
            keys.append(moderator[0])
            args += [user_id, moderator[1]]
        return Queued(self._script, keys, args)

    @staticmethod
    def answer(result: list[int]) -> tuple[bool, int]:
        """(allowed, ms to wait when not), from the script's answer."""
        ok, wait = result
        return bool(ok), int(wait)

    async def allow(self, channel_id: str, user_id: str, now_ms: int, window_ms: int, limit: int,
                    member: str) -> tuple[bool, int]:
        """(allowed, ms to wait when not)."""
        return self.answer(await self.call(channel_id, user_id, now_ms, window_ms, limit, member).run())

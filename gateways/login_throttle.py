"""Login throttling per account and per client address, with exponential back-off, shared through Valkey.

Each account (its name, case-folded and hashed) and each client address has a
counter of login attempts.  The first ``free`` failures cost nothing; from
then on each one makes the next attempt wait ``base * 2**(over - 1)``
seconds, up to ``max`` (``backoff_ms``).  An attempt that must wait is
refused before any argon2 work with 429 and ``Retry-After`` (RFC 9110
section 10.2.3, RFC 6585 section 4).

An attempt is counted when it starts, not when its password turns out wrong:
otherwise 200 attempts sent at once would all pass the check before the first
failure was recorded.  A success then clears the account's counter and gives
the client's attempt back; an attempt the server could not check (the hash
queue was full) gives both back.

A refusal (429 here, or 503 from a full hash queue) is answered after
``GLASSCAST_AUTH_LOGIN_REFUSAL_DELAY_S`` (1 s, never past its Retry-After),
which costs the gateway a timer and a socket.  Answered at once, 200 clients
that ignore Retry-After in a closed loop send thousands of refused logins a
second, and parsing those alone fills the event loop that serves the media;
held, they send at most 200 a second.  A client that honours Retry-After
loses nothing: it was going to wait at least that long anyway.

State lives in Valkey so every gateway shares it.  One Lua script per step
makes check-and-count atomic.  Memory is bounded: every key expires
``login_window_s`` (or the back-off, if longer) after its last attempt, and a
client that is held back creates no account keys at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from dataclasses import dataclass

import redis.asyncio as aioredis

from gateways.errors import ApiError, TooManyRequests
from infra.settings import AuthSettings

MAX_HELD_REFUSALS = 10_000  # past this many refusals waiting to be answered, answer at once (bounded memory)

# KEYS: the account's and the client's counters (hashes: n = attempts counted, until = epoch ms).
# ARGV: now (ms), account free failures, client free failures, base (ms), max (ms), window (ms).
# Returns {1, 0} when the attempt may go ahead (and is counted), {0, ms to wait} when it must wait.
_ATTEMPT = """
local now, base, max, window = tonumber(ARGV[1]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local wait = 0
for i = 1, #KEYS do
  local until_ms = tonumber(redis.call('hget', KEYS[i], 'until') or '0')
  if until_ms > now then wait = math.max(wait, until_ms - now) end
end
if wait > 0 then return {0, math.max(1, math.ceil(wait))} end
for i = 1, #KEYS do
  local over = redis.call('hincrby', KEYS[i], 'n', 1) - tonumber(ARGV[1 + i])
  local hold = 0
  if over > 0 then
    hold = math.floor(math.min(max, base * 2 ^ math.min(over - 1, 40)))
    redis.call('hset', KEYS[i], 'until', string.format('%d', now + hold))
  end
  redis.call('pexpire', KEYS[i], math.max(window, hold))
end
return {1, 0}
"""

# KEYS: the account's and the client's counters.  ARGV: clear the account (1) or give its attempt back (0),
# account free failures, client free failures.  A counter given back below its free failures holds nothing.
_SETTLE = """
for i = 1, #KEYS do
  if i == 1 and ARGV[1] == '1' then
    redis.call('del', KEYS[i])
  elseif redis.call('exists', KEYS[i]) == 1 then
    if redis.call('hincrby', KEYS[i], 'n', -1) <= tonumber(ARGV[1 + i]) then
      redis.call('hdel', KEYS[i], 'until')
    end
  end
end
return 1
"""


def backoff_ms(attempts: int, free: int, base_ms: int, max_ms: int) -> int:
    """How long the attempt after ``attempts`` counted ones must wait (what the script computes)."""
    over = attempts - free
    return 0 if over <= 0 else min(max_ms, base_ms * 2 ** min(over - 1, 40))


def account_key(username: str) -> str:
    """The counter name of an account: its name case-folded and hashed (any string a client sends, bounded)."""
    return hashlib.sha256(username.casefold().encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Attempt:
    """A login attempt that was let through and counted; settle it with ``succeeded`` or ``release``."""

    keys: tuple[str, str]


class LoginThrottle:
    """Login attempts per account and per client, in Valkey."""

    def __init__(self, client: aioredis.Redis, key_prefix: str, auth: AuthSettings) -> None:
        self.prefix = f"{key_prefix}login:"
        self.free = (auth.login_account_free_failures, auth.login_client_free_failures)
        self.base_ms = int(auth.login_backoff_base_s * 1000)
        self.max_ms = int(auth.login_backoff_max_s * 1000)
        self.window_ms = int(auth.login_window_s * 1000)
        self.refusal_delay_s = auth.login_refusal_delay_s
        self.held = 0  # refusals being held before their answer
        self._attempt = client.register_script(_ATTEMPT)
        self._settle = client.register_script(_SETTLE)

    async def attempt(self, username: str, client_addr: str, now_ms: int) -> Attempt:
        """Count an attempt, or refuse it with ``TooManyRequests`` while the account or the client must wait."""
        keys = (f"{self.prefix}account:{account_key(username)}", f"{self.prefix}client:{client_addr[:64]}")
        allowed, wait_ms = await self._attempt(
            keys=list(keys), args=[now_ms, *self.free, self.base_ms, self.max_ms, self.window_ms])
        if not allowed:
            raise TooManyRequests("too many failed sign-ins; wait before trying again",
                                  retry_after_s=max(1, math.ceil(int(wait_ms) / 1000)), reason="login_throttled")
        return Attempt(keys)

    async def hold(self, refusal: ApiError) -> None:
        """Wait before ``refusal`` is answered: the refusal delay, at most its Retry-After."""
        retry_after = (refusal.headers or {}).get("Retry-After", "0")
        delay_s = min(self.refusal_delay_s, float(retry_after) if retry_after.isdigit() else 0.0)
        if delay_s <= 0 or self.held >= MAX_HELD_REFUSALS:
            return
        self.held += 1
        try:
            await asyncio.sleep(delay_s)
        finally:
            self.held -= 1

    async def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the account starts afresh, and the client's attempt is not held against it."""
        await self._settle(keys=list(attempt.keys), args=[1, *self.free])

    async def release(self, attempt: Attempt) -> None:
        """The password was never checked (the server was busy): give the attempt back."""
        await self._settle(keys=list(attempt.keys), args=[0, *self.free])

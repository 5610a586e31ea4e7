"""Who owns each live stream, in Valkey, so every ingest process agrees and a stream outlives its ingest.

One record per channel, ``{settings.valkey.key_prefix}ingest:stream:{channel_id}``: a JSON
``LiveStream``, which is what a continuation needs (stream_id, next GOP seq, where the
timeline ends, started_at, reconnects), plus who holds it.  Its state:

    owner set,   lease_until_ms >= now   live: session ``owner`` holds a LEASE and renews it
                                         (before every GOP, and at least every second)
    owner set,   lease_until_ms <  now   lapsed: its ingest process died or lost Valkey; the
                                         stream counts as parked since ``lease_until_ms``
    owner empty                          parked at ``parked_at_ms``: the publisher dropped

A publisher that comes back within the grace window (on this ingest process or any other)
takes a parked or lapsed stream over: same stream_id, next GOP seq.  After the window the
reaper of any ingest process ends it.  Why one record and not a claim plus a parked copy:
there is no moment where a stream lives in neither, so killing a process at any point
leaves a record that either resumes or ends; the stream is never a ghost.

- ``next_seq`` is written AHEAD: before GOP N is stored, the record says N + 1, so a takeover
  after a crash never announces N again (at worst N is skipped, which players see as a gap).
- ``announced`` is set before StreamStarted is produced; a stream that was never announced
  is dropped without a StreamEnded (a configured stream must not end before it started).
- ``ending`` (a StreamEndReason) is set before StreamEnded is produced and the record is
  deleted after: if the ender dies in between, its lease lapses and the reaper produces
  StreamEnded again.  At least once, never zero times.

Every change is a compare-and-set in Lua, so one stream has one owner at a time.  The
record has no TTL: a stream stays until it is ended, even if no ingest runs for a while.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Literal

import redis.asyncio as aioredis
from redis.exceptions import RedisError

#: What a Valkey call raises while Valkey is down, slow or restarting.  redis-py's errors
#: are not the builtin ConnectionError; a bounded wait (asyncio.wait_for) raises TimeoutError.
VALKEY_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError, TimeoutError)

# Where a record counts as parked since, or nil while its lease is held (Lua helper).
_SINCE = """
local function since(r, now)
  if (r['owner'] or '') == '' then return r['parked_at_ms'] or 0 end
  if (r['lease_until_ms'] or 0) < now then return r['lease_until_ms'] or 0 end
  return nil
end
local function decode(v)
  local ok, r = pcall(cjson.decode, v)
  if ok and type(r) == 'table' then return r end
  return nil
end
"""

# KEYS[1] record; ARGV owner, now, lease_ms, grace_ms, fresh stream JSON.
# -> {'new'|'resume', record} | {'busy'|'stale', record}
_ACQUIRE = _SINCE + """
local now = tonumber(ARGV[2])
local v = redis.call('get', KEYS[1])
if v then
  local r = decode(v)
  if r == nil then return {'busy', v} end
  local s = since(r, now)
  if s == nil then return {'busy', v} end
  if r['announced'] then
    if (r['ending'] or '') ~= '' or now - s > tonumber(ARGV[4]) then return {'stale', v} end
    r['owner'] = ARGV[1]
    r['lease_until_ms'] = now + tonumber(ARGV[3])
    r['parked_at_ms'] = s
    local out = cjson.encode(r)
    redis.call('set', KEYS[1], out)
    return {'resume', out}
  end
end
local f = cjson.decode(ARGV[5])
f['owner'] = ARGV[1]
f['lease_until_ms'] = now + tonumber(ARGV[3])
local out = cjson.encode(f)
redis.call('set', KEYS[1], out)
return {'new', out}
"""

# KEYS[1] record; ARGV owner, stream_id, now, lease_ms, stream JSON, mode ('renew'|'replace'|'park'|'end').
# The holder writes its stream (next_seq and the timeline only move forward) and renews its lease;
# 'replace' puts another stream in its place, 'park' lets it go, 'end' marks it ending (ARGV[7]).
_UPDATE = _SINCE + """
local v = redis.call('get', KEYS[1])
if not v then return 0 end
local r = decode(v)
if r == nil or r['owner'] ~= ARGV[1] or (r['ending'] or '') ~= '' then return 0 end
local mode = ARGV[6]
if mode ~= 'replace' and r['stream_id'] ~= ARGV[2] then return 0 end
local n = cjson.decode(ARGV[5])
if mode ~= 'replace' then
  if (r['next_seq'] or 0) > n['next_seq'] then n['next_seq'] = r['next_seq'] end
  if (r['timeline_end_ms'] or 0) > n['timeline_end_ms'] then n['timeline_end_ms'] = r['timeline_end_ms'] end
  n['announced'] = n['announced'] or r['announced']
end
local now = tonumber(ARGV[3])
n['ending'] = ''
if mode == 'park' then
  n['owner'] = ''
  n['parked_at_ms'] = now
  n['lease_until_ms'] = 0
else
  n['owner'] = ARGV[1]
  n['lease_until_ms'] = now + tonumber(ARGV[4])
  if mode == 'end' then n['ending'] = ARGV[7] end
end
redis.call('set', KEYS[1], cjson.encode(n))
return 1
"""

# KEYS[1] record; ARGV ender, stream_id, now, lease_ms, grace_ms, reason.
# Take a stream nobody resumed in time over to end it: {'end', record} or {'drop'} (never
# announced: deleted) or {} (not ours to end, or not yet).
_CLAIM_END = _SINCE + """
local now = tonumber(ARGV[3])
local v = redis.call('get', KEYS[1])
if not v then return {} end
local r = decode(v)
if r == nil or r['stream_id'] ~= ARGV[2] then return {} end
local s = since(r, now)
if s == nil then return {} end
if not r['announced'] then redis.call('del', KEYS[1]) return {'drop'} end
if (r['ending'] or '') == '' then
  if now - s <= tonumber(ARGV[5]) then return {} end
  r['ending'] = ARGV[6]
end
r['owner'] = ARGV[1]
r['parked_at_ms'] = s
r['lease_until_ms'] = now + tonumber(ARGV[4])
local out = cjson.encode(r)
redis.call('set', KEYS[1], out)
return {'end', out}
"""

# KEYS[1] record; ARGV owner, stream_id: the holder deletes it (after StreamEnded, or unannounced).
_RELEASE = _SINCE + """
local v = redis.call('get', KEYS[1])
if not v then return 0 end
local r = decode(v)
if r == nil or r['owner'] ~= ARGV[1] or r['stream_id'] ~= ARGV[2] then return 0 end
return redis.call('del', KEYS[1])
"""

_INTS = ("started_at_ms", "next_seq", "timeline_end_ms", "reconnects", "parked_at_ms", "lease_until_ms")


@dataclass(frozen=True)
class LiveStream:
    """A broadcast as the ingest tracks it across reconnects and ingest processes (the Valkey record)."""

    stream_id: str
    channel_id: str
    started_at_ms: int
    next_seq: int = 0
    timeline_end_ms: int = 0  # where the stream timeline continues after a reconnect
    reconnects: int = 0
    parked_at_ms: int = 0
    owner: str = ""  # the session holding the lease; empty once parked
    lease_until_ms: int = 0
    announced: bool = False  # StreamStarted may have been produced
    ending: str = ""  # a StreamEndReason once StreamEnded is being produced

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> LiveStream:
        data = json.loads(raw)
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in _INTS:  # Lua's cjson may write a whole number as a float
            if name in values:
                values[name] = int(values[name])
        return cls(**values)

    def parked_since(self, now_ms: int) -> int | None:
        """When this stream lost its publisher (dropped, or its lease lapsed); None while held."""
        if not self.owner:
            return self.parked_at_ms
        return self.lease_until_ms if self.lease_until_ms < now_ms else None


@dataclass(frozen=True)
class Claim:
    """What ``LiveRegistry.acquire`` found.

    new: the channel had no stream (or one never announced): ``stream`` is the fresh one, now held.
    resume: a parked or lapsed stream within its grace window, now held by the caller.
    busy: another session holds the lease (``stream`` is its record, if readable).
    stale: a stream whose grace window closed and that must be ended before the channel goes live again.
    """

    kind: Literal["new", "resume", "busy", "stale"]
    stream: LiveStream | None


class LiveRegistry:
    def __init__(self, client: aioredis.Redis, prefix: str, lease_s: float, grace_s: float) -> None:
        self.r = client
        self.prefix = prefix
        self.lease_ms = max(1, int(lease_s * 1000))
        self.grace_ms = int(grace_s * 1000)
        self._acquire = client.register_script(_ACQUIRE)
        self._update = client.register_script(_UPDATE)
        self._claim_end = client.register_script(_CLAIM_END)
        self._release = client.register_script(_RELEASE)

    def key(self, channel_id: str) -> str:
        return f"{self.prefix}ingest:stream:{channel_id}"

    async def get(self, channel_id: str) -> LiveStream | None:
        raw = await self.r.get(self.key(channel_id))
        return LiveStream.from_json(raw) if raw is not None else None

    async def acquire(self, channel_id: str, owner: str, fresh: LiveStream, now_ms: int) -> Claim:
        """Take the channel's lease: its parked stream back within the grace window, or ``fresh``."""
        kind, raw = await self._acquire(keys=[self.key(channel_id)],
                                        args=[owner, now_ms, self.lease_ms, self.grace_ms, fresh.to_json()])
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        try:
            stream = LiveStream.from_json(raw)
        except (ValueError, TypeError):
            stream = None
        return Claim(kind, stream)  # type: ignore[arg-type]

    async def _write(self, stream: LiveStream, owner: str, now_ms: int, mode: str, reason: str = "") -> bool:
        return bool(await self._update(keys=[self.key(stream.channel_id)],
                                       args=[owner, stream.stream_id, now_ms, self.lease_ms, stream.to_json(),
                                             mode, reason]))

    async def renew(self, stream: LiveStream, owner: str, now_ms: int) -> bool:
        """Write the stream as it stands and extend the lease; False: ``owner`` no longer holds it."""
        return await self._write(stream, owner, now_ms, "renew")

    async def replace(self, stream: LiveStream, owner: str, now_ms: int) -> bool:
        """Put a new stream in place of the held one (the held one already ended elsewhere)."""
        return await self._write(stream, owner, now_ms, "replace")

    async def park(self, stream: LiveStream, owner: str, now_ms: int) -> bool:
        """The publisher dropped: keep the stream for the grace window, held by nobody."""
        return await self._write(stream, owner, now_ms, "park")

    async def begin_end(self, stream: LiveStream, owner: str, now_ms: int, reason: str) -> bool:
        """Mark the held stream ending (before its StreamEnded is produced); ``release`` after."""
        return await self._write(stream, owner, now_ms, "end", reason)

    async def release(self, stream: LiveStream, owner: str) -> bool:
        """Delete the held record: its StreamEnded is in the log, or it was never announced."""
        return bool(await self._release(keys=[self.key(stream.channel_id)], args=[owner, stream.stream_id]))

    async def endable(self, now_ms: int) -> list[LiveStream]:
        """Records nobody holds whose grace window closed (or whose ender died): the reaper's work."""
        found = []
        async for key in self.r.scan_iter(match=f"{self.prefix}ingest:stream:*", count=500):
            raw = await self.r.get(key)
            if raw is None:
                continue
            try:
                stream = LiveStream.from_json(raw)
            except (ValueError, TypeError):
                continue
            since = stream.parked_since(now_ms)
            if since is not None and (stream.ending or not stream.announced or now_ms - since > self.grace_ms):
                found.append(stream)
        return found

    async def claim_end(self, stream: LiveStream, ender: str, now_ms: int, reason: str) -> LiveStream | None:
        """Take an expired stream over to end it; None if it is not (or no longer) endable or was dropped."""
        found = await self._claim_end(keys=[self.key(stream.channel_id)],
                                      args=[ender, stream.stream_id, now_ms, self.lease_ms, self.grace_ms, reason])
        if not found or found[0] in (b"drop", "drop"):
            return None
        return LiveStream.from_json(found[1])

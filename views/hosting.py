"""Host mode in Valkey: which live channel an offline channel's page plays, with a "hosting X" banner.

The gateway writes a host at once when its owner starts or ends it, and the
raid worker (processors/raids/) folds the ``raids`` topic's ``HostStarted``
and ``HostEnded`` again.  A host lasts until its owner ends it, the hosted
stream ends (``StreamEnded`` of the target drops every host of it), or the
hosting channel goes live itself (as on Twitch).

Key layout under the view prefix:

    host:{channel_id}            the host, JSON (``HostView``)
    hosted-by:{target_id}        set: the channels hosting the target
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import redis.asyncio as aioredis

from schemas.record import Record
from schemas.records.raid import HostEnded, HostStarted
from schemas.records.stream import StreamEnded, StreamStarted
from views.store import text


@dataclass(frozen=True)
class HostView:
    """An offline channel hosting a live one."""

    channel_id: str
    target_channel_id: str
    started_at_ms: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> HostView:
        return cls(**json.loads(raw))


# KEYS: host, hosted-by of the old target (or the new one), hosted-by of the new target.  ARGV: json, channel,
# target, started_at.  A host older than the one stored does not replace it (redelivery after a newer one).
_SET = """
local raw = redis.call('get', KEYS[1])
if raw then
  local old = cjson.decode(raw)
  if tonumber(old.started_at_ms) > tonumber(ARGV[4]) then return 0 end
  redis.call('srem', KEYS[2], ARGV[2])
end
redis.call('set', KEYS[1], ARGV[1])
redis.call('sadd', KEYS[3], ARGV[2])
return 1
"""

# KEYS: host, hosted-by of the target.  ARGV: channel, target ("" any).  Ends the host if it still hosts target.
_END = """
local raw = redis.call('get', KEYS[1])
if not raw then return 0 end
local old = cjson.decode(raw)
if ARGV[2] ~= '' and old.target_channel_id ~= ARGV[2] then return 0 end
redis.call('del', KEYS[1])
redis.call('srem', KEYS[2], ARGV[1])
return 1
"""


class Hosts:
    """Host mode's view."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.base = f"{prefix}view:"
        self._set = client.register_script(_SET)
        self._end = client.register_script(_END)

    def k_host(self, channel_id: str) -> str:
        return f"{self.base}host:{channel_id}"

    def k_hosted_by(self, target_id: str) -> str:
        return f"{self.base}hosted-by:{target_id}"

    async def get(self, channel_id: str) -> HostView | None:
        raw = await self.r.get(self.k_host(channel_id))
        return None if raw is None else HostView.from_json(raw)

    async def start(self, view: HostView) -> None:
        old = await self.get(view.channel_id)
        old_target = old.target_channel_id if old is not None else view.target_channel_id
        await self._set(keys=[self.k_host(view.channel_id), self.k_hosted_by(old_target),
                              self.k_hosted_by(view.target_channel_id)],
                        args=[view.to_json(), view.channel_id, view.target_channel_id, view.started_at_ms])

    async def end(self, channel_id: str, target_id: str) -> bool:
        """End the channel's host of ``target_id``; False if it was not hosting it."""
        return bool(await self._end(keys=[self.k_host(channel_id), self.k_hosted_by(target_id)],
                                    args=[channel_id, target_id]))

    async def hosting(self, target_id: str) -> list[str]:
        return sorted(text(m) for m in await self.r.smembers(self.k_hosted_by(target_id)))

    async def apply(self, record: Record) -> None:
        """Fold a ``raids`` or ``stream.lifecycle`` record into the hosts."""
        if isinstance(record, HostStarted):
            await self.start(HostView(record.channel_id, record.target_channel_id, record.occurred_at))
        elif isinstance(record, HostEnded):
            await self.end(record.channel_id, record.target_channel_id)
        elif isinstance(record, StreamEnded):  # the hosted stream ended: every host of it ends
            for channel_id in await self.hosting(record.channel_id):
                host = await self.get(channel_id)  # a host begun after this broadcast (a replay) stays
                if host is not None and host.started_at_ms <= record.occurred_at:
                    await self.end(channel_id, record.channel_id)
        elif isinstance(record, StreamStarted):  # the hosting channel went live: its own stream wins
            host = await self.get(record.channel_id)
            if host is not None and host.started_at_ms <= record.occurred_at:
                await self.end(record.channel_id, host.target_channel_id)

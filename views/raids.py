"""Raids in Valkey: each raid's state, the one active raid per channel, and the countdowns that are due.

A raid (dev.twitch.tv/docs/api/reference/raids) is requested by the raiding
channel's owner and goes ahead when its 90-second countdown ends, or at once
when the broadcaster chooses Raid Now; until then it can be cancelled.  The
gateway writes the state at once, and the raid worker (processors/raids/)
folds it again from the ``raids`` topic, so a gateway that dies after the
log took a ``RaidStarted`` leaves a raid that still goes ahead.

States only move forward: ``pending`` -> ``completing`` -> ``completed``, or
``pending`` -> ``cancelled``.  ``completing`` is a lease: the process that
moved the raid there (the gateway for Raid Now, any raid worker at the
deadline) produces ``RaidCompleted``, sends the chat frames and marks it
``completed``; if it dies, the lease lapses and another process takes the raid
up again.  The completion's event id is derived from the raid, so a second
attempt produces the same event, which consumers deduplicate.

Key layout under the view prefix:

    raid:{raid_id}               the raid, JSON (``RaidView``)
    raid-active:{channel_id}     the channel's raid that has not ended yet
    raids-due                    sorted set: pending raids by deadline (UTC ms)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import redis.asyncio as aioredis

from schemas.record import Record
from schemas.records.raid import RaidCancelled, RaidCompleted, RaidStarted
from views.store import text
from views.viewers import viewers_key

PENDING, COMPLETING, COMPLETED, CANCELLED = "pending", "completing", "completed", "cancelled"
LEASE_MS = 30_000  # how long a completing raid is left to the process that took it up
STALE_MS = 10 * 60 * 1000  # a raid whose deadline passed this long ago is not counted down from the log
RAID_NAMESPACE = uuid.UUID("0f3c2a4e-9b6d-4c1e-8a7f-5d2b3e4c6a81")
ROOM_CHANNEL = "chat:room:"  # gateways/chat/fanout.py: ChatHub.topic
CONTROL = "c"  # gateways/chat/fanout.py: a control frame, never sampled away

Emit = Callable[[Record, str], Awaitable[Any]]


def event_id(raid_id: str, what: str) -> str:
    """The id of a raid's ``what`` event: the same on every attempt."""
    return str(uuid.uuid5(RAID_NAMESPACE, f"{raid_id}:{what}"))


@dataclass(frozen=True)
class RaidView:
    """One raid and where it is."""

    raid_id: str
    from_channel_id: str
    to_channel_id: str
    requested_by: str
    created_at_ms: int
    deadline_at_ms: int
    status: str = PENDING
    lease_until_ms: int = 0
    viewers: int | None = None
    early: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> RaidView:
        return cls(**json.loads(raw))

    def public(self, now_ms: int) -> dict[str, Any]:
        return {"id": self.raid_id, "from_broadcaster_id": self.from_channel_id,
                "to_broadcaster_id": self.to_channel_id, "status": self.status,
                "created_at_ms": self.created_at_ms, "deadline_at_ms": self.deadline_at_ms,
                "seconds_left": max(0, -(-(self.deadline_at_ms - now_ms) // 1000)) if self.status == PENDING else 0,
                "viewers": self.viewers, "is_mature": False}


def started_view(event: RaidStarted) -> RaidView:
    return RaidView(event.raid_id, event.from_channel_id, event.to_channel_id, event.requested_by,
                    event.occurred_at, event.deadline_at)


# KEYS: raid, active, due.  ARGV: raid json, raid id, deadline.  -> "ok" | "exists" | "busy:<raid id>"
_START = """
if redis.call('exists', KEYS[1]) == 1 then return 'exists' end
local cur = redis.call('get', KEYS[2])
if cur and cur ~= ARGV[2] then return 'busy:' .. cur end
redis.call('set', KEYS[1], ARGV[1])
redis.call('set', KEYS[2], ARGV[2])
redis.call('zadd', KEYS[3], ARGV[3], ARGV[2])
return 'ok'
"""

# KEYS: raid.  ARGV: now, lease ms, early ("1": Raid Now, the deadline need not have come).  -> json | false
_CLAIM = """
local raw = redis.call('get', KEYS[1])
if not raw then return false end
local r = cjson.decode(raw)
local now = tonumber(ARGV[1])
if r.status == 'pending' or (r.status == 'completing' and tonumber(r.lease_until_ms) < now) then
  if ARGV[3] ~= '1' and tonumber(r.deadline_at_ms) > now then return false end
  if ARGV[3] == '1' and r.status == 'pending' then r.early = true end
  r.status = 'completing'
  r.lease_until_ms = now + tonumber(ARGV[2])
  raw = cjson.encode(r)
  redis.call('set', KEYS[1], raw)
  return raw
end
return false
"""

# KEYS: raid, active, due.  ARGV: final status, raid id, viewers ("" if none), json if the raid is unknown,
# only-if-pending ("1": a cancel, which must not overtake a completion), early ("1"/"0"; "" keeps it).
# -> json of the result | false.  An ended raid holds no lease, so the state it ends in is the log's alone.
_FINISH = """
local raw = redis.call('get', KEYS[1])
if not raw then raw = ARGV[4] end
local r = cjson.decode(raw)
if r.status == 'completed' or r.status == 'cancelled' then return false end
if ARGV[5] == '1' and r.status ~= 'pending' then return false end
r.status = ARGV[1]
r.lease_until_ms = 0
if ARGV[6] ~= '' then r.early = (ARGV[6] == '1') end
if ARGV[3] ~= '' then r.viewers = tonumber(ARGV[3]) end
raw = cjson.encode(r)
redis.call('set', KEYS[1], raw)
if redis.call('get', KEYS[2]) == ARGV[2] then redis.call('del', KEYS[2]) end
redis.call('zrem', KEYS[3], ARGV[2])
return raw
"""


# KEYS: raid.  ARGV: requested_by, created_at_ms, deadline_at_ms.  -> 1 if filled in.  A raid folded from its end
# before its start (another worker's fold, or a rebuild, got there first) has no requester yet: its start fills it.
_FILL = """
local raw = redis.call('get', KEYS[1])
if not raw then return 0 end
local r = cjson.decode(raw)
if r.requested_by ~= '' then return 0 end
r.requested_by = ARGV[1]
r.created_at_ms = tonumber(ARGV[2])
r.deadline_at_ms = tonumber(ARGV[3])
redis.call('set', KEYS[1], cjson.encode(r))
return 1
"""


class RaidStore:
    """The raid state of one Valkey, and the chat rooms' pub/sub channels the raid frames go to."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = prefix
        self.base = f"{prefix}view:"
        self.k_due = f"{self.base}raids-due"
        self._start = client.register_script(_START)
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._fill = client.register_script(_FILL)

    def k_raid(self, raid_id: str) -> str:
        return f"{self.base}raid:{raid_id}"

    def k_active(self, channel_id: str) -> str:
        return f"{self.base}raid-active:{channel_id}"

    async def get(self, raid_id: str) -> RaidView | None:
        raw = await self.r.get(self.k_raid(raid_id))
        return None if raw is None else RaidView.from_json(raw)

    async def active(self, channel_id: str) -> RaidView | None:
        """The channel's raid that has not ended, if any."""
        raid_id = await self.r.get(self.k_active(channel_id))
        return None if raid_id is None else await self.get(text(raid_id))

    async def start(self, view: RaidView) -> str:
        """Record a new raid: ``"ok"``, ``"exists"`` (already recorded) or ``"busy:<id>"`` (another is active)."""
        out = await self._start(keys=[self.k_raid(view.raid_id), self.k_active(view.from_channel_id), self.k_due],
                                args=[view.to_json(), view.raid_id, view.deadline_at_ms])
        return out.decode() if isinstance(out, bytes) else str(out)

    async def put_cancelled(self, view: RaidView) -> None:
        """Record a raid that lost the race to another of its channel's as cancelled (never pending)."""
        await self.r.set(self.k_raid(view.raid_id), replace(view, status=CANCELLED).to_json(), nx=True)

    async def claim(self, raid_id: str, now_ms: int, early: bool, lease_ms: int = LEASE_MS) -> RaidView | None:
        """Take the raid up for completion (due, or ``early``), or None if it is not this caller's to complete."""
        raw = await self._claim(keys=[self.k_raid(raid_id)], args=[now_ms, lease_ms, "1" if early else "0"])
        return RaidView.from_json(raw) if raw else None

    async def finish(self, view: RaidView, status: str, viewers: int | None = None,
                     only_pending: bool = False, early: bool | None = None) -> RaidView | None:
        """Move the raid to its final ``status``; None if it had already ended (or, ``only_pending``, started
        completing)."""
        raw = await self._finish(keys=[self.k_raid(view.raid_id), self.k_active(view.from_channel_id), self.k_due],
                                 args=[status, view.raid_id, "" if viewers is None else viewers, view.to_json(),
                                       "1" if only_pending else "0", "" if early is None else "1" if early else "0"])
        return RaidView.from_json(raw) if raw else None

    async def due(self, now_ms: int, limit: int = 100) -> list[str]:
        """Raids whose countdown has ended (or whose completion lapsed), oldest first."""
        found = await self.r.zrangebyscore(self.k_due, "-inf", now_ms, start=0, num=limit)
        return [text(r) for r in found if isinstance(r, bytes | str)]

    async def live(self, channel_id: str) -> bool:
        """Whether the channel is live (views/store.py's live pointer)."""
        return bool(await self.r.exists(f"{self.base}channel-live:{channel_id}"))

    async def viewers(self, channel_id: str) -> int:
        raw = await self.r.get(viewers_key(self.prefix, channel_id))
        return int(raw) if raw is not None else 0

    async def publish(self, channel_id: str, frame: dict[str, Any]) -> None:
        """A control frame to everyone in the channel's chat room, on every gateway."""
        payload = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
        await self.r.publish(f"{self.prefix}{ROOM_CHANNEL}{channel_id}", CONTROL + payload)

    async def apply(self, record: Record, now_ms: int) -> None:
        """Fold a ``raids`` record from the log (forward only; what the gateway wrote already is kept).

        Folding a raid's start and its end gives the same view in either order: an end folded first records
        the raid without its requester, and the start fills that in (a rebuild while the raid worker catches
        up, or two topics read together, can fold them so).
        A ``RaidStarted`` whose deadline passed ``STALE_MS`` before ``now_ms`` is history read again (a
        rebuild, a new consumer group): the raid is recorded but never counted down, so a raid the log does
        not end is not sent ahead long after its broadcast.  One that finds its channel's other raid still
        active lost the race for it, as the gateway decided when it was asked (gateways/raids.py): cancelled.
        """
        if isinstance(record, RaidStarted):
            view = started_view(record)
            if record.deadline_at < now_ms - STALE_MS:
                recorded = await self.r.set(self.k_raid(view.raid_id), view.to_json(), nx=True)
            else:
                outcome = await self.start(view)
                if outcome.startswith("busy:"):
                    await self.put_cancelled(view)
                recorded = outcome != "exists"
            if not recorded:  # its end may have been folded first: the start fills in what only it knows
                await self._fill(keys=[self.k_raid(view.raid_id)],
                                 args=[view.requested_by, view.created_at_ms, view.deadline_at_ms])
        elif isinstance(record, RaidCancelled | RaidCompleted):
            view = await self.get(record.raid_id) or RaidView(
                record.raid_id, record.from_channel_id, record.to_channel_id, "", record.occurred_at,
                record.occurred_at)
            if isinstance(record, RaidCompleted):
                await self.finish(view, COMPLETED, record.viewers, early=record.early)
            else:
                await self.finish(view, CANCELLED)


Names = Callable[[str], Awaitable[str]]


def raid_frame(view: RaidView, kind: str, channel_id: str, viewers: int, names: dict[str, str],
               now_ms: int) -> dict[str, Any]:
    """A RAID chat frame: ``countdown``, ``cancelled``, ``outgoing`` (viewers move on) or ``incoming`` (announced
    in the target's room)."""
    return {"type": "RAID", "id": view.raid_id, "kind": kind, "channel_id": channel_id,
            "raider": {"id": view.from_channel_id, "name": names.get(view.from_channel_id)},
            "target": {"id": view.to_channel_id, "name": names.get(view.to_channel_id)},
            "viewers": viewers, "deadline_at_ms": view.deadline_at_ms, "sent_at_ms": now_ms}


async def complete_raid(store: RaidStore, raid_id: str, now_ms: int, early: bool, emit: Emit,
                        names: Names) -> RaidView | None:
    """Send the raid's viewers on, once: claim it, record ``RaidCompleted``, tell both chat rooms, mark it done.

    None if it was not this caller's to complete (cancelled, done, not yet due, or another process holds it).
    A target that went offline during the countdown cancels the raid instead (``TARGET_OFFLINE``).
    """
    view = await store.claim(raid_id, now_ms, early)
    if view is None:
        return None
    if not await store.live(view.to_channel_id):
        await emit(RaidCancelled(event_id=event_id(raid_id, "cancelled"), occurred_at=now_ms, raid_id=raid_id,
                                 from_channel_id=view.from_channel_id, to_channel_id=view.to_channel_id,
                                 reason="TARGET_OFFLINE"), view.from_channel_id)
        shown = {c: await names(c) for c in (view.from_channel_id, view.to_channel_id)}
        await store.publish(view.from_channel_id, raid_frame(view, "cancelled", view.from_channel_id, 0, shown,
                                                             now_ms))
        done = await store.finish(view, CANCELLED)
        return done or replace(view, status=CANCELLED)
    viewers = await store.viewers(view.from_channel_id)
    await emit(RaidCompleted(event_id=event_id(raid_id, "completed"), occurred_at=now_ms, raid_id=raid_id,
                             from_channel_id=view.from_channel_id, to_channel_id=view.to_channel_id,
                             viewers=viewers, early=view.early), view.from_channel_id)
    shown = {c: await names(c) for c in (view.from_channel_id, view.to_channel_id)}
    await store.publish(view.from_channel_id, raid_frame(view, "outgoing", view.from_channel_id, viewers, shown,
                                                         now_ms))
    await store.publish(view.to_channel_id, raid_frame(view, "incoming", view.to_channel_id, viewers, shown, now_ms))
    done = await store.finish(view, COMPLETED, viewers)
    return done or replace(view, status=COMPLETED, viewers=viewers)

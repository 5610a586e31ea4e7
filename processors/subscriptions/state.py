"""The subscription processor's own keys in Valkey: subscriptions, decided payments, due expiries, an outbox.

Under ``settings.valkey.key_prefix``, outside ``view:`` (``rebuild-views``
leaves them: they are the command side, as the claims of names are):

    subs:state:{user}:{channel}   JSON SubState (processors/subscriptions/grants.py)
    subs:done:{dedupe key}        a payment already decided: JSON list of its outbox entry ids
    subs:order:{order id}         JSON list of the "user:channel" subscriptions the order paid for (refunds)
    subs:due                      sorted set "user:channel" -> when the expiry timer ends it (ms)
    subs:outbox                   hash entry id -> JSON: an event to produce or a chat frame to publish
    lease:subscription-expiry     which processors worker runs the expiry timer now

A decision is one WATCH/MULTI transaction: the subscriptions it changes, the
payment marked done, the due times, and what it must produce, written to the
outbox at once.  Only then is it produced, and the outbox entry removed once
the log has acknowledged it.  So a worker killed at any moment either decided
nothing (the payment is read again and decided the same way) or left an
outbox entry that the expiry timer produces again (``stale``): the same event
id, which every fold already deduplicates.  Payments for one subscription may
sit in different partitions (``billing.payments`` is keyed by order); the
WATCH makes two workers deciding for the same subscription at once take turns.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from processors.subscriptions.grants import SubState
from schemas.record import Record
from schemas.records import RECORD_TYPES
from views.transactions import multi, unwatch

WATCH_RETRIES = 50


@dataclass(frozen=True)
class Outgoing:
    """One thing a decision sends: an event for the log (``record`` with its ``key``) or a chat ``frame``."""

    id: str
    record: Record | None = None
    key: str = ""
    channel_id: str = ""
    frame: str = ""  # an encoded chat frame for the channel's room

    def to_json(self, at_ms: int) -> str:
        body: dict[str, Any] = {"at_ms": at_ms, "key": self.key, "channel_id": self.channel_id, "frame": self.frame}
        if self.record is not None:
            body["record"] = self.record.RECORD
            body["value"] = self.record.to_avro()
        return json.dumps(body, sort_keys=True)

    @classmethod
    def from_json(cls, entry_id: str, raw: bytes | str) -> tuple[Outgoing, int]:
        data = json.loads(raw)
        record = None
        if "record" in data:
            record = RECORD_TYPES[data["record"]].from_avro(dict(data["value"]))
        return cls(id=entry_id, record=record, key=data["key"], channel_id=data["channel_id"],
                   frame=data["frame"]), int(data["at_ms"])


def event_entry(record: Record, key: str) -> Outgoing:
    return Outgoing(id=str(uuid.uuid4()), record=record, key=key)


def frame_entry(channel_id: str, frame: str) -> Outgoing:
    return Outgoing(id=str(uuid.uuid4()), channel_id=channel_id, frame=frame)


#: A decision: the subscriptions it read (None: never seen) -> what changed and what to send; None: nothing.
Plan = Callable[[dict[str, SubState | None]], tuple[dict[str, SubState], list[Outgoing]] | None]


class ConcurrentChange(RuntimeError):
    """Another worker kept changing the same subscription: the decision is tried again later."""


class SubscriptionState:
    """Read and write the processor's keys."""

    def __init__(self, client: aioredis.Redis, prefix: str, renewal_grace_ms: int) -> None:
        self.r = client
        self.prefix = prefix
        self.grace_ms = renewal_grace_ms
        self.k_due = f"{prefix}subs:due"
        self.k_outbox = f"{prefix}subs:outbox"
        self.k_lease = f"{prefix}lease:subscription-expiry"

    def k_state(self, pair: str) -> str:
        return f"{self.prefix}subs:state:{pair}"

    def k_done(self, dedupe_key: str) -> str:
        return f"{self.prefix}subs:done:{dedupe_key}"

    def k_order(self, order_id: str) -> str:
        return f"{self.prefix}subs:order:{order_id}"

    async def paid_by(self, order_id: str) -> list[str]:
        """The subscriptions ("user:channel") an order paid for."""
        raw = await self.r.get(self.k_order(order_id))
        return [] if raw is None else [str(p) for p in json.loads(raw)]

    async def get(self, pair: str) -> SubState | None:
        raw = await self.r.get(self.k_state(pair))
        return None if raw is None else SubState.from_json(json.loads(raw))

    async def decide(self, pairs: list[str], plan: Plan, now_ms: int, done_key: str | None = None,
                     order_id: str | None = None) -> list[Outgoing]:
        """Run ``plan`` on the current subscriptions of ``pairs`` ("user:channel") and write its result at once.

        With ``done_key``, a decision already written under that key is not made again: the answer is what
        of it the outbox still holds, to be sent before anything decided after it (a retried batch keeps each
        subscription's events in order).  With ``order_id``, the order is recorded as having paid for ``pairs``.
        """
        keys = [self.k_state(p) for p in pairs]
        for _ in range(WATCH_RETRIES):
            async with self.r.pipeline(transaction=True) as pipe:
                try:
                    watched = keys + ([self.k_done(done_key)] if done_key else [])
                    await pipe.watch(*watched)
                    if done_key and (done := await pipe.get(self.k_done(done_key))) is not None:
                        await unwatch(pipe)
                        return await self._pending(json.loads(done))
                    raw = await pipe.mget(keys) if keys else []
                    states = {p: None if v is None else SubState.from_json(json.loads(v))
                              for p, v in zip(pairs, raw, strict=True)}
                    result = plan(states)
                    if result is None:
                        return []
                    changed, outgoing = result
                    multi(pipe)
                    for pair, state in changed.items():
                        pipe.set(self.k_state(pair), json.dumps(state.to_json(), sort_keys=True))
                        if state.ended:
                            pipe.zrem(self.k_due, pair)
                        else:
                            pipe.zadd(self.k_due, {pair: state.due_ms(self.grace_ms)})
                    if outgoing:
                        pipe.hset(self.k_outbox, mapping={o.id: o.to_json(now_ms) for o in outgoing})
                    if done_key:
                        pipe.set(self.k_done(done_key), json.dumps([o.id for o in outgoing]))
                    if order_id:
                        pipe.set(self.k_order(order_id), json.dumps(pairs))
                    await pipe.execute()
                    return outgoing
                except WatchError:
                    continue
        raise ConcurrentChange(f"subscriptions {', '.join(pairs)} kept changing under the decision")

    async def _pending(self, entry_ids: list[str]) -> list[Outgoing]:
        """The outbox entries of ``entry_ids`` not yet sent, in their order."""
        if not entry_ids:
            return []
        raw = await self.r.hmget(self.k_outbox, entry_ids)
        return [Outgoing.from_json(i, v)[0] for i, v in zip(entry_ids, raw, strict=True) if v is not None]

    async def sent(self, entries: list[Outgoing]) -> None:
        """Drop outbox entries the log (or the room) has taken."""
        if entries:
            await self.r.hdel(self.k_outbox, *[e.id for e in entries])

    async def stale(self, older_than_ms: int) -> list[Outgoing]:
        """Outbox entries written before ``older_than_ms``: their writer died before sending them."""
        out = []
        for entry_id, raw in cast("dict[bytes, bytes]", await self.r.hgetall(self.k_outbox)).items():
            entry, at_ms = Outgoing.from_json(entry_id.decode(), raw)
            if at_ms < older_than_ms:
                out.append((at_ms, entry))
        return [entry for _, entry in sorted(out, key=lambda e: e[0])]  # older decisions first

    async def due(self, now_ms: int, limit: int) -> list[str]:
        """Subscriptions ("user:channel") whose expiry is due by ``now_ms``."""
        raw = cast("list[bytes]", await self.r.zrangebyscore(self.k_due, "-inf", now_ms, start=0, num=limit))
        return [m.decode() for m in raw]

    async def take_lease(self, owner: str, ttl_ms: int) -> bool:
        """Hold (or keep holding) the expiry timer's lease for ``ttl_ms``."""
        script = ("local cur = redis.call('get', KEYS[1]) "
                  "if cur == false or cur == ARGV[1] then redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
                  "return 1 end return 0")
        return bool(await self.r.eval(script, 1, self.k_lease, owner, ttl_ms))

"""The bits ledger in Valkey: folded accounts, cheer holds, leaderboards and order states.

Key layout under the key prefix:

    ledger:acct:{user}               hash: bought, spent, reversed, donated_minor (views/ledger.py ``Account``)
    ledger:seen:{user}               set: the ledger event ids already folded into the account
    ledger:holds:{user}              hash: cheer id -> "bits|expires_ms" (0: logged, kept until folded)
    ledger:board:{channel}:{bucket}  sorted set: bits cheered per user (all, d:YYYYMMDD, w:YYYYWW, m:YYYYMM)
    ledger:day:{channel}:{YYYYMMDD}  bits cheered in the channel that UTC day (the revenue page's bars)
    ledger:order:{order}             JSON: the order's ``OrderState``
    ledger:donated:{channel}         sorted set: the channel's last donations (JSON) by when they were made

All but the holds and the orders are folded from ``billing.ledger`` by the
ledger worker (processors/ledger/), in the one Lua step that remembers the
event's id, so each event counts once in each of them.  A bucket expires at a
time its name fixes (its start plus ``BOARD_TTL_S``, a day's bars
``DAY_KEPT_S`` after the day began), and donations are ordered by when they
were made, so the fold gives the same keys whatever order events from several
users arrive in and however late they are read again: ``glasscast
rebuild-views`` drops them (``READ_SIDE``) and replays ``billing.ledger``
(processors/rebuild.py).  The holds (the gateway's cheers in flight) and the
orders (the worker's record of which ledger events each payment caused, so
that none is produced twice) are the command side and are left whole.

Both scripts mirror the pure rules of views/ledger.py: ``_HOLD`` is
``admit_cheer`` (the balance minus live holds must cover the cheer; Valkey
runs a script alone, so concurrent cheers from one user on any number of
gateways never overdraw), and ``_APPLY`` is ``apply_ledger`` (an event id
is added to the seen set and its amount to the account in one step, and a
cheer's hold goes in that same step, so nothing is ever counted twice or
not at all).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import cast

import redis.asyncio as aioredis

from schemas.records.billing import (
    BitsChargedBack,
    BitsCheered,
    BitsPurchased,
    BitsRefunded,
    DonationMade,
    PaymentReversed,
)
from views.ledger import Account, Admission, LedgerEvent, OrderState, cheer_event_id
from views.scripts import Queued, evalsha, round_trip

PERIODS = ("day", "week", "month", "all")
BOARD_TTL_S = {"day": 3 * 86_400, "week": 15 * 86_400, "month": 63 * 86_400}  # from the bucket's start
DAY_KEPT_S = 32 * 86_400  # a channel's bits of one day, kept from the day's start (the page shows 30 days)
DONATIONS_KEPT = 100
#: The folded keys (patterns after the prefix) that ``rebuild-views`` drops and replays.
READ_SIDE = ("ledger:acct:*", "ledger:seen:*", "ledger:board:*", "ledger:day:*", "ledger:donated:*")

# KEYS: acct, seen, holds.  ARGV: cheer id, its event id, bits, now (ms), expires (ms; 0 = until folded).
# Returns {1, available after} held; {0, available} short; {2, available} duplicate (folded, or logged and held);
# {3, available} pending: held by an attempt not yet logged (in flight, or its gateway died: it expires).
_HOLD = """
local a = redis.call('hmget', KEYS[1], 'bought', 'spent', 'reversed')
local net = (tonumber(a[1]) or 0) - (tonumber(a[2]) or 0) - (tonumber(a[3]) or 0)
local now, held = tonumber(ARGV[4]), 0
local all = redis.call('hgetall', KEYS[3])
for i = 1, #all, 2 do
  local bits, exp = string.match(all[i + 1], '^(%d+)|(%d+)$')
  exp = tonumber(exp)
  if exp ~= 0 and exp <= now then
    redis.call('hdel', KEYS[3], all[i])
  else
    held = held + tonumber(bits)
  end
end
if redis.call('sismember', KEYS[2], ARGV[2]) == 1 then return {2, net - held} end
local mine = redis.call('hget', KEYS[3], ARGV[1])
if mine then
  if string.match(mine, '|0$') then return {2, net - held} end
  return {3, net - held}
end
local want = tonumber(ARGV[3])
if net - held < want then return {0, net - held} end
redis.call('hset', KEYS[3], ARGV[1], ARGV[3] .. '|' .. ARGV[5])
return {1, net - held - want}
"""

# KEYS: acct, seen, holds, then a cheer's leaderboard buckets and its channel's day, or a donation's channel list.
# ARGV: event id, field, amount, cheer id or '', user id, what follows ('c': a cheer, each further key's expiry
# in UTC ms, 0 kept; 'd': a donation, its entry and when it was made; '': nothing).  Returns 1 when applied,
# 0 when seen before.  An expiry already past deletes the key at once: a bucket long over stays away on a replay.
_APPLY = """
if redis.call('sadd', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('hincrby', KEYS[1], ARGV[2], ARGV[3])
if ARGV[4] ~= '' then redis.call('hdel', KEYS[3], ARGV[4]) end
if ARGV[6] == 'c' then
  for i = 4, #KEYS do
    if i == #KEYS then
      redis.call('incrby', KEYS[i], ARGV[3])
    else
      redis.call('zincrby', KEYS[i], ARGV[3], ARGV[5])
    end
    local at = tonumber(ARGV[7 + i - 4])
    if at > 0 then redis.call('pexpireat', KEYS[i], at) end
  end
elseif ARGV[6] == 'd' then
  redis.call('zadd', KEYS[4], ARGV[8], ARGV[7])
  redis.call('zremrangebyrank', KEYS[4], 0, -(tonumber(ARGV[9]) + 1))
end
return 1
"""

# KEYS: holds.  ARGV: cheer id, bits.  Marks a hold as logged (kept until its fold removes it).
_LOGGED = """
if redis.call('hexists', KEYS[1], ARGV[1]) == 1 then redis.call('hset', KEYS[1], ARGV[1], ARGV[2] .. '|0') end
return 1
"""


# ARGV: key patterns.  Deletes every key matching one, in one step; returns how many.
_DROP = """
local n = 0
for _, pattern in ipairs(ARGV) do
  local cursor = '0'
  repeat
    local page = redis.call('scan', cursor, 'match', pattern, 'count', 1000)
    cursor = page[1]
    for _, key in ipairs(page[2]) do n = n + redis.call('del', key) end
  until cursor == '0'
end
return n
"""


def buckets(occurred_at_ms: int) -> dict[str, str]:
    """The leaderboard bucket of each period an instant falls in (UTC; weeks are ISO weeks)."""
    t = dt.datetime.fromtimestamp(occurred_at_ms / 1000, dt.UTC)
    year, week, _ = t.isocalendar()
    return {"day": t.strftime("d:%Y%m%d"), "week": f"w:{year}{week:02d}", "month": t.strftime("m:%Y%m"),
            "all": "all"}


def bucket_expiry_ms(period: str, occurred_at_ms: int) -> int:
    """When the ``period`` bucket an instant falls in expires (UTC ms; 0: never): its start plus its TTL."""
    if period not in BOARD_TTL_S:
        return 0
    t = dt.datetime.fromtimestamp(occurred_at_ms / 1000, dt.UTC)
    start = dt.datetime(t.year, t.month, t.day if period != "month" else 1, tzinfo=dt.UTC)
    if period == "week":
        start -= dt.timedelta(days=t.weekday())  # ISO weeks start on Monday
    return int(start.timestamp() * 1000) + BOARD_TTL_S[period] * 1000


def day_of(ms: int) -> str:
    """The UTC day an instant falls in, ``YYYYMMDD``."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y%m%d")


def day_expiry_ms(occurred_at_ms: int) -> int:
    """When a channel's day of bits expires: ``DAY_KEPT_S`` after the day began."""
    return occurred_at_ms - occurred_at_ms % 86_400_000 + DAY_KEPT_S * 1000


@dataclass(frozen=True)
class Balance:
    """A user's account as the API shows it."""

    balance: int
    owed: int
    held: int
    bought: int
    spent: int
    reversed: int


class LedgerStore:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = prefix
        self._hold = client.register_script(_HOLD)
        self._apply = client.register_script(_APPLY)
        self._logged = client.register_script(_LOGGED)

    def k_acct(self, user_id: str) -> str:
        return f"{self.prefix}ledger:acct:{user_id}"

    def k_seen(self, user_id: str) -> str:
        return f"{self.prefix}ledger:seen:{user_id}"

    def k_holds(self, user_id: str) -> str:
        return f"{self.prefix}ledger:holds:{user_id}"

    def k_board(self, channel_id: str, bucket: str) -> str:
        return f"{self.prefix}ledger:board:{channel_id}:{bucket}"

    def k_order(self, order_id: str) -> str:
        return f"{self.prefix}ledger:order:{order_id}"

    def k_day(self, channel_id: str, day: str) -> str:
        return f"{self.prefix}ledger:day:{channel_id}:{day}"

    def k_donations(self, channel_id: str) -> str:
        return f"{self.prefix}ledger:donated:{channel_id}"

    def _keys(self, user_id: str) -> list[str]:
        return [self.k_acct(user_id), self.k_seen(user_id), self.k_holds(user_id)]

    def hold_call(self, user_id: str, cheer: str, bits: int, now_ms: int, expires_ms: int) -> Queued:
        """Hold ``bits`` of the user's balance for a cheer, atomically against every other hold: a script call,
        to run with others in one round trip (views/scripts.py; ``admission`` reads its answer)."""
        return Queued(self._hold, self._keys(user_id), [cheer, cheer_event_id(cheer), bits, now_ms, expires_ms])

    @staticmethod
    def admission(result: list[int]) -> Admission:
        """What the hold script answered."""
        code, available = result
        outcome = {1: "held", 0: "short", 2: "duplicate", 3: "pending"}[int(code)]
        return Admission(outcome, int(available) if outcome != "short" else max(0, int(available)))

    def logged_call(self, user_id: str, cheer: str, bits: int) -> Queued:
        """The cheer is on the log: keep its hold until the ledger fold takes it over (a script call)."""
        return Queued(self._logged, [self.k_holds(user_id)], [cheer, bits])


    async def release(self, user_id: str, cheer: str) -> None:
        """Drop a hold whose cheer was not logged."""
        await self.r.hdel(self.k_holds(user_id), cheer)

    async def apply(self, event: LedgerEvent) -> bool:
        """Fold one ledger event into its account (and leaderboards, bits by day, donations) in one step; False
        when it was applied before."""
        return bool(await self.apply_call(event).run())

    async def apply_all(self, events: Sequence[LedgerEvent]) -> list[bool]:
        """``apply`` each event, in order, in one round trip (each its own step); which were new."""
        calls = [self.apply_call(e) for e in events]
        answers = await round_trip(self.r, [evalsha(c) for c in calls], dict(enumerate(calls)))
        return [bool(a) for a in answers]

    def apply_call(self, event: LedgerEvent) -> Queued:
        """``apply`` as a script call (views/scripts.py); it answers 1 when the event was new."""
        cheer, more, extra = "", list[str](), list[str | int]()  # the keys and arguments past the account's
        if isinstance(event, BitsPurchased):
            field_name, amount = "bought", event.bits
        elif isinstance(event, BitsCheered):
            field_name, amount, cheer = "spent", event.bits, event.cheer_id
            for period, bucket in buckets(event.occurred_at).items():
                more.append(self.k_board(event.channel_id, bucket))
                extra.append(bucket_expiry_ms(period, event.occurred_at))
            more.append(self.k_day(event.channel_id, day_of(event.occurred_at)))  # the last key: the day
            extra.append(day_expiry_ms(event.occurred_at))
        elif isinstance(event, BitsRefunded | BitsChargedBack):
            field_name, amount = "reversed", event.bits
        else:
            field_name, amount = "donated_minor", event.amount_minor
            more.append(self.k_donations(event.channel_id))
            extra += [json.dumps({"order_id": event.order_id, "user_id": event.user_id,
                                  "amount_minor": event.amount_minor, "currency": event.currency,
                                  "message": event.message, "at_ms": event.occurred_at}, sort_keys=True),
                      event.occurred_at, DONATIONS_KEPT]
        mode = "c" if isinstance(event, BitsCheered) else "d" if isinstance(event, DonationMade) else ""
        return Queued(self._apply, [*self._keys(event.user_id), *more],
                      [event.event_id, field_name, amount, cheer, event.user_id, mode, *extra])

    async def balance(self, user_id: str, now_ms: int) -> Balance:
        """The user's folded account and the live holds against it."""
        async with self.r.pipeline(transaction=False) as p:
            p.hmget(self.k_acct(user_id), ["bought", "spent", "reversed"])
            p.hgetall(self.k_holds(user_id))
            (bought, spent, rev), holds = await p.execute()
        acct = Account(bought=int(bought or 0), spent=int(spent or 0), reversed=int(rev or 0))
        held = 0
        for value in holds.values():
            bits, _, exp = (value.decode() if isinstance(value, bytes) else value).partition("|")
            if int(exp) == 0 or int(exp) > now_ms:
                held += int(bits)
        return Balance(balance=max(0, acct.net - held), owed=acct.owed, held=held, bought=acct.bought,
                       spent=acct.spent, reversed=acct.reversed)

    async def leaderboard(self, channel_id: str, period: str, now_ms: int, limit: int) -> list[tuple[str, int]]:
        """The channel's top cheerers of the period now running, most bits first."""
        rows = await self.r.zrevrange(self.k_board(channel_id, buckets(now_ms)[period]), 0, limit - 1,
                                      withscores=True)
        board: list[tuple[str, int]] = []
        for member, score in cast(list[tuple[bytes | str, float]], rows):
            board.append((member.decode() if isinstance(member, bytes) else member, int(score)))
        return board

    async def donations(self, channel_id: str, limit: int) -> list[dict[str, object]]:
        """The channel's last donations, newest first."""
        raw = cast("list[bytes]", await self.r.zrevrange(self.k_donations(channel_id), 0, limit - 1))
        return [json.loads(x) for x in raw]

    async def bits_by_day(self, channel_id: str, now_ms: int, days: int) -> list[tuple[str, int]]:
        """Bits cheered in the channel on each of the last ``days`` UTC days, oldest first (today last)."""
        names = [day_of(now_ms - back * 86_400_000) for back in range(days - 1, -1, -1)]
        raw = await self.r.mget([self.k_day(channel_id, d) for d in names]) if names else []
        return [(d, int(v or 0)) for d, v in zip(names, raw, strict=True)]

    async def drop_read_side(self) -> int:
        """Delete every folded ledger key (``READ_SIDE``), leaving holds and orders; returns how many.

        One script, so no fold runs half-way through it: an event folded before it is gone from every key
        (and is folded again by the replay), one folded after it is in every key (and the replay skips it).
        """
        return int(await self.r.eval(_DROP, 0, *[f"{self.prefix}{p}" for p in READ_SIDE]))

    async def load_order(self, order_id: str) -> OrderState | None:
        raw = await self.r.get(self.k_order(order_id))
        if raw is None:
            return None
        data = json.loads(raw)
        rev = data.pop("reversal")
        return OrderState(**data, reversal=PaymentReversed.from_avro(rev) if rev else None)

    async def store_order(self, state: OrderState) -> None:
        data = asdict(state)
        data["reversal"] = state.reversal.to_avro() if state.reversal else None
        await self.r.set(self.k_order(state.order_id), json.dumps(data))

"""Chat room state as views: modes, bans, timeouts, roles, follows and subscriptions per channel.

The chat send path reads these on every message (gateways/chat/), so they sit
in a few small Valkey hashes and sets per channel:

    view:chat:mode:{channel}      hash: slow_mode_s, subscribers_only, followers_only_min, emote_only
    view:chat:bans:{channel}      set of banned user ids
    view:chat:timeouts:{channel}  hash user id -> timed out until (ms)
    view:chat:roles:{channel}     hash user id -> moderator | vip
    view:chat:words:{channel}     JSON list: the channel's banned words
    view:chat:modlog:{channel}    sorted set of moderation actions by time (JSON, event id inside)
    view:follows:{channel}        hash user id -> followed at (ms)
    view:subs:{channel}           hash user id -> "tier:expires at (ms):months"

Every write is idempotent (set membership, hash fields, a sorted-set member
that carries its event id), so replaying the log after a restart, or the
gateway applying a moderation event at once and the processors applying it
again from the log, leaves the same state.  ``changes`` is the pure part: an
event in, the Valkey operations out, through a table keyed by record class.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis

from schemas.record import Record
from schemas.records.billing import SubscriptionEnded, SubscriptionRenewed, SubscriptionStarted
from schemas.records.chat import ChatModeChanged, ChatRoleChanged, UserBanned, UserTimedOut, UserUnbanned
from schemas.records.social import Followed, Unfollowed
from views.scripts import Queued

MODLOG_KEEP = 1000  # moderation actions kept per channel
ROLES = {"MODERATOR": "moderator", "VIP": "vip"}

#: One Valkey command: its client method name and arguments ("hset_map": HSET with a mapping).
Op = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True)
class RoomMode:
    slow_mode_s: int = 0
    subscribers_only: bool = False
    followers_only_min: int | None = None  # None: off; 0: any follower
    emote_only: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_hash(cls, raw: Mapping[bytes, bytes]) -> RoomMode:
        h = {k.decode(): v.decode() for k, v in raw.items()}
        fo = int(h.get("followers_only_min", "-1"))
        return cls(slow_mode_s=int(h.get("slow_mode_s", "0")), subscribers_only=h.get("subscribers_only") == "1",
                   followers_only_min=None if fo < 0 else fo, emote_only=h.get("emote_only") == "1")


@dataclass(frozen=True)
class Chatter:
    """What the send path knows about one user in one room."""

    role: str | None = None  # moderator | vip
    banned: bool = False
    timed_out_until_ms: int = 0
    followed_at_ms: int | None = None
    sub_tier: str | None = None  # TIER_1..3 while the subscription has not expired
    sub_expires_ms: int = 0
    sub_months: int = 0  # cumulative months subscribed (the badge's months, Twitch's badge-info)

    def subscribed(self, now_ms: int) -> bool:
        return self.sub_tier is not None and self.sub_expires_ms > now_ms


@dataclass(frozen=True)
class RoomKeys:
    """The Valkey keys of one channel's room state."""

    prefix: str
    channel: str

    def chat(self, what: str) -> str:
        return f"{self.prefix}view:chat:{what}:{self.channel}"

    @property
    def follows(self) -> str:
        return f"{self.prefix}view:follows:{self.channel}"

    @property
    def subs(self) -> str:
        return f"{self.prefix}view:subs:{self.channel}"


def _logged(event: UserTimedOut | UserBanned | UserUnbanned | ChatModeChanged | ChatRoleChanged, k: RoomKeys,
            **details: Any) -> list[Op]:
    """Add a moderation action to the channel's log (its event id makes a replayed entry the same member)."""
    entry = {"event_id": event.event_id, "at_ms": event.occurred_at, "action": event.type, **details}
    return [("zadd", (k.chat("modlog"), {json.dumps(entry, sort_keys=True): event.occurred_at})),
            ("zremrangebyrank", (k.chat("modlog"), 0, -MODLOG_KEEP - 1))]


def _timed_out(e: UserTimedOut, prefix: str) -> list[Op]:
    k = RoomKeys(prefix, e.channel_id)
    return [*_logged(e, k, user_id=e.user_id, moderator_user_id=e.moderator_user_id, duration_s=e.duration_s,
                     reason=e.reason),
            ("hset", (k.chat("timeouts"), e.user_id, e.occurred_at + e.duration_s * 1000))]


def _banned(e: UserBanned, prefix: str) -> list[Op]:
    k = RoomKeys(prefix, e.channel_id)
    return [*_logged(e, k, user_id=e.user_id, moderator_user_id=e.moderator_user_id, reason=e.reason),
            ("sadd", (k.chat("bans"), e.user_id))]


def _unbanned(e: UserUnbanned, prefix: str) -> list[Op]:
    k = RoomKeys(prefix, e.channel_id)
    return [*_logged(e, k, user_id=e.user_id, moderator_user_id=e.moderator_user_id),
            ("srem", (k.chat("bans"), e.user_id)), ("hdel", (k.chat("timeouts"), e.user_id))]


def _mode_changed(e: ChatModeChanged, prefix: str) -> list[Op]:
    k = RoomKeys(prefix, e.channel_id)
    ops = [*_logged(e, k, changed_by_user_id=e.changed_by_user_id, slow_mode_s=e.slow_mode_s,
                    subscribers_only=e.subscribers_only, followers_only_min=e.followers_only_min,
                    emote_only=e.emote_only),
           ("hset_map", (k.chat("mode"), {
               "slow_mode_s": e.slow_mode_s, "subscribers_only": int(e.subscribers_only),
               "followers_only_min": -1 if e.followers_only_min is None else e.followers_only_min,
               "emote_only": int(e.emote_only)}))]
    if e.banned_words is not None:  # null leaves the list as it was
        ops.append(("set", (k.chat("words"), json.dumps(sorted(set(e.banned_words))))))
    return ops


def _role_changed(e: ChatRoleChanged, prefix: str) -> list[Op]:
    k = RoomKeys(prefix, e.channel_id)
    ops = _logged(e, k, user_id=e.user_id, changed_by_user_id=e.changed_by_user_id, role=e.role, granted=e.granted)
    role = ROLES.get(e.role)
    if role is not None and e.granted:
        ops.append(("hset", (k.chat("roles"), e.user_id, role)))
    elif role is not None:  # revoke only the role named: a later grant of the other one stays
        ops.append(("eval", ("if redis.call('hget', KEYS[1], ARGV[1]) == ARGV[2] then "
                             "redis.call('hdel', KEYS[1], ARGV[1]) end return 0", 1, k.chat("roles"),
                             e.user_id, role)))
    return ops


def _followed(e: Followed, prefix: str) -> list[Op]:
    k = RoomKeys(prefix, e.channel_id)
    return [("hset", (k.follows, e.follower_id, e.occurred_at))]


def _unfollowed(e: Unfollowed, prefix: str) -> list[Op]:
    k = RoomKeys(prefix, e.channel_id)
    return [("hdel", (k.follows, e.follower_id))]


# A subscription's months only grow: a period granted again later in the log (a decision produced twice) is
# not written over a later one, and the expiry of a period since renewed leaves the renewal.  An entry written
# before months were kept ("tier:expires") counts as month 0.
_GRANT = ("local cur = redis.call('hget', KEYS[1], ARGV[1]) local months = 0 "
          "if cur then months = tonumber(string.match(cur, '^[^:]*:[^:]*:(%d+)$') or '0') end "
          "if tonumber(ARGV[3]) > months then redis.call('hset', KEYS[1], ARGV[1], ARGV[2]) end return 0")
_EXPIRE = ("local cur = redis.call('hget', KEYS[1], ARGV[1]) "
           "if cur and tonumber(string.match(cur, '^[^:]*:(%d+)') or '0') <= tonumber(ARGV[2]) then "
           "redis.call('hdel', KEYS[1], ARGV[1]) end return 0")


def _subscribed(e: SubscriptionStarted | SubscriptionRenewed, prefix: str) -> list[Op]:
    k = RoomKeys(prefix, e.channel_id)
    return [("eval", (_GRANT, 1, k.subs, e.user_id, f"{e.tier}:{e.expires_at}:{e.months_total}", e.months_total))]


def _subscription_ended(e: SubscriptionEnded, prefix: str) -> list[Op]:
    k = RoomKeys(prefix, e.channel_id)
    if e.reason == "EXPIRED":  # occurred_at is the end of the period that expired
        return [("eval", (_EXPIRE, 1, k.subs, e.user_id, e.occurred_at))]
    return [("hdel", (k.subs, e.user_id))]


#: What each record does to the room state; the key guarantees the record type its function takes.
CHANGES: dict[type[Record], Callable[[Any, str], list[Op]]] = {
    UserTimedOut: _timed_out,
    UserBanned: _banned,
    UserUnbanned: _unbanned,
    ChatModeChanged: _mode_changed,
    ChatRoleChanged: _role_changed,
    Followed: _followed,
    Unfollowed: _unfollowed,
    SubscriptionStarted: _subscribed,
    SubscriptionRenewed: _subscribed,
    SubscriptionEnded: _subscription_ended,
}
CHAT_ROOM_RECORDS: frozenset[type[Record]] = frozenset(CHANGES)


def changes(event: Record, prefix: str) -> list[Op]:
    """The Valkey commands one event asks for (none for a record the rooms do not keep); idempotent by construction."""
    change = CHANGES.get(type(event))
    return [] if change is None else change(event, prefix)


# The send path's reads as one script call: one command to pack and one answer to parse, where a pipeline of
# the same nine reads costs redis-py nine of each.  KEYS: roles, bans, timeouts, follows, subs, mode, words,
# then any extra keys (GET); ARGV[1]: the user.  A missing value is false (nil in the answer).
_SEND_STATE = """
local u = ARGV[1]
local out = {redis.call('HGET', KEYS[1], u), redis.call('SISMEMBER', KEYS[2], u), redis.call('HGET', KEYS[3], u),
             redis.call('HGET', KEYS[4], u), redis.call('HGET', KEYS[5], u), redis.call('HGETALL', KEYS[6]),
             redis.call('GET', KEYS[7])}
for i = 8, #KEYS do
  out[#out + 1] = redis.call('GET', KEYS[i])
end
return out
"""

# A logged message shown to the room, as one script call (atomic, as the MULTI it stands for): kept in the
# room's recent messages, the sender's last send noted, the nonce's claim kept, the frame published.
# KEYS: recent, last, [nonce]; ARGV: frame, newest index kept, now, last send's TTL (ms), nonce TTL (s),
# the pub/sub channel, the published payload, and the nonce's value ('': the claim's value stays).
_SHOWN = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]))
redis.call('SET', KEYS[2], ARGV[3], 'PX', tonumber(ARGV[4]))
if KEYS[3] then
  if ARGV[8] ~= '' then
    redis.call('SET', KEYS[3], ARGV[8], 'EX', tonumber(ARGV[5]))
  else
    redis.call('EXPIRE', KEYS[3], tonumber(ARGV[5]))
  end
end
return redis.call('PUBLISH', ARGV[6], ARGV[7])
"""


class ChatRooms:
    """Read and write the chat room views in Valkey."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = prefix
        self.chat = f"{prefix}view:chat:"
        self._send_state = client.register_script(_SEND_STATE)
        self._shown = client.register_script(_SHOWN)

    async def apply(self, event: Record) -> bool:
        """Apply one event's changes to the room state; False if the rooms do not keep this record."""
        ops = changes(event, self.prefix)
        if not ops:
            return False
        async with self.r.pipeline(transaction=True) as tx:
            for name, args in ops:
                if name == "hset_map":
                    tx.hset(args[0], mapping=args[1])
                else:
                    getattr(tx, name)(*args)
            await tx.execute()
        return True

    async def mode(self, channel_id: str) -> RoomMode:
        raw = cast("Mapping[bytes, bytes]", await self.r.hgetall(f"{self.chat}mode:{channel_id}"))
        return RoomMode.from_hash(raw)

    async def banned_words(self, channel_id: str) -> list[str]:
        raw = await self.r.get(f"{self.chat}words:{channel_id}")
        return json.loads(raw) if raw else []

    def _queue_chatter(self, p: Any, channel_id: str, user_id: str) -> None:
        p.hget(f"{self.chat}roles:{channel_id}", user_id)
        p.sismember(f"{self.chat}bans:{channel_id}", user_id)
        p.hget(f"{self.chat}timeouts:{channel_id}", user_id)
        p.hget(f"{self.prefix}view:follows:{channel_id}", user_id)
        p.hget(f"{self.prefix}view:subs:{channel_id}", user_id)

    @staticmethod
    def _chatter(role: Any, banned: Any, until: Any, followed: Any, sub: Any) -> Chatter:
        tier, _, rest = (sub.decode() if sub else "").partition(":")
        expires, _, months = rest.partition(":")  # values written before months were kept have none
        return Chatter(role=role.decode() if role else None, banned=bool(banned),
                       timed_out_until_ms=int(until or 0), followed_at_ms=int(followed) if followed else None,
                       sub_tier=tier or None, sub_expires_ms=int(expires or 0),
                       sub_months=int(months or (1 if tier else 0)))

    async def chatter(self, channel_id: str, user_id: str) -> Chatter:
        """Everything the send path checks about a user, in one round trip."""
        async with self.r.pipeline(transaction=False) as p:
            self._queue_chatter(p, channel_id, user_id)
            return self._chatter(*await p.execute())

    def k_roles(self, channel_id: str) -> str:
        """The room's roles: a hash user id -> 'moderator' or 'vip'."""
        return f"{self.chat}roles:{channel_id}"

    def send_state_call(self, channel_id: str, user_id: str, extra_keys: list[str]) -> Queued:
        """The user, the room's mode and banned words, and ``extra_keys``' values, as one script call
        (``send_state`` reads its answer)."""
        keys = [self.k_roles(channel_id), f"{self.chat}bans:{channel_id}", f"{self.chat}timeouts:{channel_id}",
                f"{self.prefix}view:follows:{channel_id}", f"{self.prefix}view:subs:{channel_id}",
                f"{self.chat}mode:{channel_id}", f"{self.chat}words:{channel_id}", *extra_keys]
        return Queued(self._send_state, keys, [user_id])

    def send_state(self, out: list[Any]) -> tuple[Chatter, RoomMode, list[str], list[Any]]:
        """What ``send_state_call`` answered: the chatter, the mode, the banned words and the extra values."""
        mode = out[5]
        return (self._chatter(*out[:5]), RoomMode.from_hash(dict(zip(mode[::2], mode[1::2], strict=True))),
                json.loads(out[6]) if out[6] else [], list(out[7:]))

    def shown_call(self, recent_key: str, keep: int, frame: str, last_key: str, now_ms: int, last_ttl_ms: int,
                   nonce_key: str | None, nonce_ttl_s: int, channel: str, published: str,
                   nonce_value: str = "") -> Queued:
        """Note a logged message as shown and publish it to the room, as one script call (``_SHOWN``)."""
        keys = [recent_key, last_key, *([nonce_key] if nonce_key else [])]
        return Queued(self._shown, keys, [frame, max(0, keep - 1), now_ms, last_ttl_ms, nonce_ttl_s, channel,
                                          published, nonce_value])

    async def moderation_log(self, channel_id: str, limit: int) -> list[dict[str, Any]]:
        """The newest moderation actions first."""
        raw = cast("list[bytes]", await self.r.zrevrange(f"{self.chat}modlog:{channel_id}", 0, limit - 1))
        return [json.loads(x) for x in raw]

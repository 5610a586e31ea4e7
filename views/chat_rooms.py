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
    view:subs:{channel}           hash user id -> "tier:expires at (ms)"

Every write is idempotent (set membership, hash fields, a sorted-set member
that carries its event id), so replaying the log after a restart, or the
gateway applying a moderation event at once and the processors applying it
again from the log, leaves the same state.  ``changes`` is the pure part: an
event in, the Valkey operations out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

import redis.asyncio as aioredis

from views.fold import to_ms, to_str

MODLOG_KEEP = 1000  # moderation actions kept per channel
MODERATION_RECORDS = {"glasscast.chat.UserTimedOut", "glasscast.chat.UserBanned", "glasscast.chat.UserUnbanned",
                      "glasscast.chat.ChatModeChanged", "glasscast.chat.ChatRoleChanged"}
SOCIAL_RECORDS = {"glasscast.social.Followed", "glasscast.social.Unfollowed", "glasscast.billing.SubscriptionStarted",
                  "glasscast.billing.SubscriptionRenewed", "glasscast.billing.SubscriptionEnded"}
CHAT_ROOM_RECORDS = MODERATION_RECORDS | SOCIAL_RECORDS
ROLES = {"MODERATOR": "moderator", "VIP": "vip"}


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

    def subscribed(self, now_ms: int) -> bool:
        return self.sub_tier is not None and self.sub_expires_ms > now_ms


def changes(record: str, value: Mapping[str, Any], prefix: str) -> list[tuple[str, tuple[Any, ...]]]:
    """The Valkey commands (name, args) one event asks for; idempotent by construction."""
    v = value
    channel = to_str(v["channel_id"])
    chat = f"{prefix}view:chat:"
    at = to_ms(v["occurred_at"])
    ops: list[tuple[str, tuple[Any, ...]]] = []
    if record in MODERATION_RECORDS:
        entry = {"event_id": to_str(v["event_id"]), "at_ms": at, "action": record.rsplit(".", 1)[1]}
        for name in ("user_id", "moderator_user_id", "changed_by_user_id", "duration_s", "reason", "slow_mode_s",
                     "subscribers_only", "followers_only_min", "emote_only", "role", "granted"):
            if name in v:
                entry[name] = to_str(v[name]) if name.endswith("user_id") else v[name]
        ops.append(("zadd", (f"{chat}modlog:{channel}", {json.dumps(entry, sort_keys=True): at})))
        ops.append(("zremrangebyrank", (f"{chat}modlog:{channel}", 0, -MODLOG_KEEP - 1)))
    if record == "glasscast.chat.UserBanned":
        ops.append(("sadd", (f"{chat}bans:{channel}", to_str(v["user_id"]))))
    elif record == "glasscast.chat.UserUnbanned":
        ops.append(("srem", (f"{chat}bans:{channel}", to_str(v["user_id"]))))
        ops.append(("hdel", (f"{chat}timeouts:{channel}", to_str(v["user_id"]))))
    elif record == "glasscast.chat.UserTimedOut":
        ops.append(("hset", (f"{chat}timeouts:{channel}", to_str(v["user_id"]), at + int(v["duration_s"]) * 1000)))
    elif record == "glasscast.chat.ChatModeChanged":
        fo = v.get("followers_only_min")
        ops.append(("hset_map", (f"{chat}mode:{channel}", {
            "slow_mode_s": int(v["slow_mode_s"]), "subscribers_only": int(bool(v["subscribers_only"])),
            "followers_only_min": -1 if fo is None else int(fo), "emote_only": int(bool(v["emote_only"]))})))
        if v.get("banned_words") is not None:
            ops.append(("set", (f"{chat}words:{channel}", json.dumps(sorted(set(v["banned_words"]))))))
    elif record == "glasscast.chat.ChatRoleChanged":
        role = ROLES.get(str(v["role"]))
        key = f"{chat}roles:{channel}"
        if role is not None and v["granted"]:
            ops.append(("hset", (key, to_str(v["user_id"]), role)))
        elif role is not None:
            ops.append(("eval", ("if redis.call('hget', KEYS[1], ARGV[1]) == ARGV[2] then "
                                 "redis.call('hdel', KEYS[1], ARGV[1]) end return 0", 1, key,
                                 to_str(v["user_id"]), role)))
    elif record == "glasscast.social.Followed":
        ops.append(("hset", (f"{prefix}view:follows:{channel}", to_str(v["follower_id"]), at)))
    elif record == "glasscast.social.Unfollowed":
        ops.append(("hdel", (f"{prefix}view:follows:{channel}", to_str(v["follower_id"]))))
    elif record in ("glasscast.billing.SubscriptionStarted", "glasscast.billing.SubscriptionRenewed"):
        ops.append(("hset", (f"{prefix}view:subs:{channel}", to_str(v["user_id"]),
                             f"{v['tier']}:{to_ms(v['expires_at'])}")))
    elif record == "glasscast.billing.SubscriptionEnded":
        ops.append(("hdel", (f"{prefix}view:subs:{channel}", to_str(v["user_id"]))))
    return ops


class ChatRooms:
    """Read and write the chat room views in Valkey."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = prefix
        self.chat = f"{prefix}view:chat:"

    async def apply(self, record: str, value: Mapping[str, Any]) -> bool:
        ops = changes(record, value, self.prefix)
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
        return RoomMode.from_hash(await self.r.hgetall(f"{self.chat}mode:{channel_id}"))

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
        tier, _, expires = (sub.decode() if sub else "").partition(":")
        return Chatter(role=role.decode() if role else None, banned=bool(banned),
                       timed_out_until_ms=int(until or 0), followed_at_ms=int(followed) if followed else None,
                       sub_tier=tier or None, sub_expires_ms=int(expires or 0))

    async def chatter(self, channel_id: str, user_id: str) -> Chatter:
        """Everything the send path checks about a user, in one round trip."""
        async with self.r.pipeline(transaction=False) as p:
            self._queue_chatter(p, channel_id, user_id)
            return self._chatter(*await p.execute())

    async def send_state(self, channel_id: str, user_id: str, extra_keys: list[str]) -> tuple[
            Chatter, RoomMode, list[str], list[Any]]:
        """The user, the room's mode and banned words, and ``extra_keys``' values: one round trip."""
        async with self.r.pipeline(transaction=False) as p:
            self._queue_chatter(p, channel_id, user_id)
            p.hgetall(f"{self.chat}mode:{channel_id}")
            p.get(f"{self.chat}words:{channel_id}")
            for key in extra_keys:
                p.get(key)
            out = await p.execute()
        return self._chatter(*out[:5]), RoomMode.from_hash(out[5]), json.loads(out[6]) if out[6] else [], out[7:]

    async def moderation_log(self, channel_id: str, limit: int) -> list[dict[str, Any]]:
        """The newest moderation actions first."""
        raw = await self.r.zrevrange(f"{self.chat}modlog:{channel_id}", 0, limit - 1)
        return [json.loads(x) for x in raw]

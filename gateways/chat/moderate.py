"""Moderation: ``POST /v1/chat/{room}/moderate`` and ``GET /v1/chat/{room}/moderation-log``.

Actions (JSON ``{"action": ..., ...}``):

    timeout         user, duration_s (1 s to 14 days), reason?   UserTimedOut   -> CLEARCHAT
    ban             user, reason?                                UserBanned     -> CLEARCHAT
    unban           user                                         UserUnbanned
    delete_message  message_id                                   ChatMessageDeleted -> CLEARMSG
    set_mode        slow_mode_s?, subscribers_only?, followers_only_min?, emote_only?, banned_words?
                                                                 ChatModeChanged -> ROOMSTATE
    mod, unmod, vip, unvip   user (broadcaster only)             ChatRoleChanged

``user`` is a user id or a username.  The broadcaster and the channel's
moderators may moderate; nobody can act on the broadcaster, and moderators
cannot act on other moderators.  Each action is an event (``chat.moderation``,
deletions on ``chat.messages`` so history and replay see them); once the log
has it, the room views change at once (the processors apply the same fold
from the log) and connected clients get the control frame immediately.  A ban
or timeout also deletes the user's messages still in the room's recent
buffer, so they vanish from replay as they do from the screen.

``ACTIONS`` maps each action to its handler: the room-wide ones are
functions, and the actions on a user are ``OnUser`` specs (the record they
build, whether only the broadcaster may take them, whether they clear the
user's messages) run by one shared path of checks.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateways import validation as v
from gateways.channels import find_channel
from gateways.chat import frames
from gateways.chat.fanout import CONTROL
from gateways.errors import Forbidden, NotFound, ValidationFailed
from gateways.services import Services, json_body, services
from schemas.records.chat import (
    ChatMessageDeleted,
    ChatModeChanged,
    ChatRole,
    ChatRoleChanged,
    UserBanned,
    UserTimedOut,
    UserUnbanned,
)
from views.channels import ChannelView
from views.chat_rooms import RoomMode

MAX_TIMEOUT_S = 14 * 24 * 3600
MAX_SLOW_MODE_S = 120
MAX_FOLLOW_MIN = 3 * 30 * 24 * 60  # three months, as Twitch
MAX_WORD_LENGTH = 64
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FIELDS = {"action", "user", "duration_s", "reason", "message_id", "slow_mode_s", "subscribers_only",
          "followers_only_min", "emote_only", "banned_words"}

# KEYS[1]: the room's recent list.  ARGV[1]: a message id or '', ARGV[2]: a user id or ''.
# Removes matching messages; returns the JSON of what it removed.
_REMOVE_RECENT = """
local removed = {}
for _, item in ipairs(redis.call('lrange', KEYS[1], 0, -1)) do
  local m = cjson.decode(item)
  if (ARGV[1] ~= '' and m['id'] == ARGV[1]) or (ARGV[2] ~= '' and m['user']['id'] == ARGV[2]) then
    redis.call('lrem', KEYS[1], 0, item)
    table.insert(removed, item)
  end
end
return removed
"""

UserEvent = UserTimedOut | UserBanned | UserUnbanned | ChatRoleChanged
RoomEvent = UserEvent | ChatModeChanged


@dataclass(frozen=True)
class Moderation:
    """One moderation request, its actor checked: the room, who acts, what they asked for."""

    svc: Services
    action: str
    channel: ChannelView
    actor: str
    is_broadcaster: bool
    data: dict[str, Any]
    reason: str | None

    def result(self, **fields: Any) -> dict[str, Any]:
        """The answer's body: the action and the room, then ``fields``."""
        return {"action": self.action, "channel_id": self.channel.id, **fields}


Handler = Callable[[Moderation], Awaitable[dict[str, Any]]]


async def _actor(svc: Services, request: Request) -> tuple[str, ChannelView, bool]:
    """(user id, channel, is broadcaster) for a broadcaster or moderator; Forbidden otherwise."""
    principal = await svc.user_principal(request)
    channel = await find_channel(svc, request.path_params["room"])
    if principal.user_id == channel.owner_user_id:
        return principal.user_id, channel, True
    if (await svc.chat.rooms.chatter(channel.id, principal.user_id)).role == "moderator":
        return principal.user_id, channel, False
    raise Forbidden("only the broadcaster and the channel's moderators may moderate this chat")


async def _target(svc: Services, data: dict[str, Any]) -> str:
    ref = v.string(data, "user", max_length=64)
    assert ref is not None
    if UUID_RE.match(ref):
        if await svc.views.get_user(ref) is None:
            raise NotFound(f"user {ref} does not exist")
        return ref
    user = await svc.views.get_user_by_name(ref)
    if user is None:
        raise NotFound(f"user '{ref}' does not exist")
    return user.id


def _int(data: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationFailed(f"'{name}' must be an integer from {low} to {high}", field=name)
    return value


def _required_int(data: dict[str, Any], name: str, low: int, high: int) -> int:
    value = _int(data, name, low, high)
    if value is None:
        raise ValidationFailed(f"'{name}' is required", field=name)
    return value


def _bool(data: dict[str, Any], name: str) -> bool | None:
    value = data.get(name)
    if value is not None and not isinstance(value, bool):
        raise ValidationFailed(f"'{name}' must be true or false", field=name)
    return value


def _words(data: dict[str, Any], limit: int) -> list[str] | None:
    words = data.get("banned_words")
    if words is None:
        return None
    if not isinstance(words, list) or len(words) > limit or not all(
            isinstance(w, str) and 0 < len(w.strip()) <= MAX_WORD_LENGTH for w in words):
        raise ValidationFailed(f"'banned_words' must be a list of at most {limit} words of 1 to "
                               f"{MAX_WORD_LENGTH} characters", field="banned_words")
    return sorted({w.strip().casefold() for w in words})


async def _apply(svc: Services, event: RoomEvent) -> None:
    """Produce the event, then apply it to the room views at once (the processors apply it again)."""
    await svc.emit(event, event.channel_id)
    await svc.chat.rooms.apply(event)


async def _delete(m: Moderation, message_id: str = "", user_id: str = "") -> list[str]:
    """Remove messages from the recent buffer and record their deletion; the ids removed."""
    svc, channel_id = m.svc, m.channel.id
    removed = await svc.redis.eval(_REMOVE_RECENT, 1, svc.chat.k_recent(channel_id), message_id, user_id)
    gone = [json.loads(item) for item in removed]
    ids = [g["id"] for g in gone] or ([message_id] if message_id else [])
    authors = {g["id"]: g["user"]["id"] for g in gone}
    # A ban can delete a whole buffer of messages: produce them together, not one acknowledgement at a time.
    await asyncio.gather(*(svc.emit(ChatMessageDeleted(
        occurred_at=svc.now_ms(), message_id=mid, channel_id=channel_id, deleted_by_user_id=m.actor,
        user_id=authors.get(mid) or user_id or None, reason=m.reason), channel_id) for mid in ids))
    return ids


async def _delete_message(m: Moderation) -> dict[str, Any]:
    message_id = v.string(m.data, "message_id", max_length=36)
    if not message_id or not UUID_RE.match(message_id):
        raise ValidationFailed("'message_id' must be a message id (UUID)", field="message_id")
    await _delete(m, message_id=message_id)
    await m.svc.chat.hub.publish(m.channel.id, CONTROL, frames.encode({"type": "CLEARMSG",
                                                                       "message_id": message_id}))
    return m.result(message_id=message_id)


async def _set_mode(m: Moderation) -> dict[str, Any]:
    svc, data, rooms = m.svc, m.data, m.svc.chat.rooms
    current = await rooms.mode(m.channel.id)
    followers = current.followers_only_min
    if "followers_only_min" in data:  # null turns followers-only mode off
        followers = _int(data, "followers_only_min", 0, MAX_FOLLOW_MIN)
    slow = _int(data, "slow_mode_s", 0, MAX_SLOW_MODE_S)
    subs, emote = _bool(data, "subscribers_only"), _bool(data, "emote_only")
    words = _words(data, svc.settings.chat.banned_words_max)
    mode = RoomMode(slow_mode_s=current.slow_mode_s if slow is None else slow,
                    subscribers_only=current.subscribers_only if subs is None else subs,
                    followers_only_min=followers,
                    emote_only=current.emote_only if emote is None else emote)
    await _apply(svc, ChatModeChanged(
        occurred_at=svc.now_ms(), channel_id=m.channel.id, changed_by_user_id=m.actor,
        slow_mode_s=mode.slow_mode_s, subscribers_only=mode.subscribers_only,
        followers_only_min=mode.followers_only_min, emote_only=mode.emote_only,
        banned_words=None if words is None else tuple(words)))
    await svc.chat.hub.publish(m.channel.id, CONTROL, frames.encode({"type": "ROOMSTATE",
                                                                     "settings": mode.to_json()}))
    return m.result(settings=mode.to_json(),
                    banned_words=words if words is not None else await rooms.banned_words(m.channel.id))


@dataclass(frozen=True)
class OnUser:
    """An action on one user: the record it builds, who may take it, whether it clears the user's messages."""

    build: Callable[[Moderation, str], UserEvent]
    broadcaster_only: bool = False  # chat roles: only the broadcaster hands them out
    clears: bool = False  # ban and timeout: the user's recent messages are deleted, clients get CLEARCHAT

    async def __call__(self, m: Moderation) -> dict[str, Any]:
        svc = m.svc
        target = await _target(svc, m.data)
        result = m.result(user_id=target)
        if target == m.channel.owner_user_id:
            raise Forbidden("the broadcaster cannot be moderated in their own channel")
        if self.broadcaster_only and not m.is_broadcaster:
            raise Forbidden("only the broadcaster may change chat roles")
        if not m.is_broadcaster and (await svc.chat.rooms.chatter(m.channel.id, target)).role == "moderator":
            raise Forbidden("moderators cannot moderate other moderators")
        event = self.build(m, target)
        await _apply(svc, event)
        if not self.clears:
            return result
        duration = event.duration_s if isinstance(event, UserTimedOut) else None
        if duration is not None:
            result["duration_s"] = duration
        result["deleted"] = await _delete(m, user_id=target)
        await svc.chat.hub.publish(m.channel.id, CONTROL, frames.encode({
            "type": "CLEARCHAT", "user_id": target, "duration_s": duration, "reason": m.reason}))
        return result


def _timeout(m: Moderation, target: str) -> UserTimedOut:
    return UserTimedOut(occurred_at=m.svc.now_ms(), channel_id=m.channel.id, user_id=target,
                        moderator_user_id=m.actor, duration_s=_required_int(m.data, "duration_s", 1, MAX_TIMEOUT_S),
                        reason=m.reason)


def _ban(m: Moderation, target: str) -> UserBanned:
    return UserBanned(occurred_at=m.svc.now_ms(), channel_id=m.channel.id, user_id=target,
                      moderator_user_id=m.actor, reason=m.reason)


def _unban(m: Moderation, target: str) -> UserUnbanned:
    return UserUnbanned(occurred_at=m.svc.now_ms(), channel_id=m.channel.id, user_id=target,
                        moderator_user_id=m.actor)


def _role(role: ChatRole, granted: bool) -> Callable[[Moderation, str], ChatRoleChanged]:
    def build(m: Moderation, target: str) -> ChatRoleChanged:
        return ChatRoleChanged(occurred_at=m.svc.now_ms(), channel_id=m.channel.id, user_id=target,
                               changed_by_user_id=m.actor, role=role, granted=granted)
    return build


ACTIONS: dict[str, Handler] = {
    "timeout": OnUser(_timeout, clears=True),
    "ban": OnUser(_ban, clears=True),
    "unban": OnUser(_unban),
    "delete_message": _delete_message,
    "set_mode": _set_mode,
    "mod": OnUser(_role("MODERATOR", granted=True), broadcaster_only=True),
    "unmod": OnUser(_role("MODERATOR", granted=False), broadcaster_only=True),
    "vip": OnUser(_role("VIP", granted=True), broadcaster_only=True),
    "unvip": OnUser(_role("VIP", granted=False), broadcaster_only=True),
}


async def moderate(request: Request) -> JSONResponse:
    svc = services(request)
    actor, channel, is_broadcaster = await _actor(svc, request)
    data = await json_body(request)
    v.only(data, FIELDS)
    action = data.get("action")
    handler = ACTIONS.get(action) if isinstance(action, str) else None
    if handler is None:
        raise ValidationFailed(f"'action' must be one of {', '.join(ACTIONS)}", field="action")
    reason = v.text(data, "reason", required=False, max_length=500)
    return JSONResponse(await handler(Moderation(svc, str(action), channel, actor, is_broadcaster, data, reason)))


async def moderation_log(request: Request) -> JSONResponse:
    svc = services(request)
    _, channel, _ = await _actor(svc, request)
    limit = v.query_int(request.query_params.get("limit"), "limit", 1, 1000, 100, error=ValidationFailed)
    return JSONResponse({"channel_id": channel.id,
                         "actions": await svc.chat.rooms.moderation_log(channel.id, limit)},
                        headers={"Cache-Control": "no-store"})


routes = [
    Route("/v1/chat/{room}/moderate", moderate, methods=["POST"]),
    Route("/v1/chat/{room}/moderation-log", moderation_log, methods=["GET"]),
]

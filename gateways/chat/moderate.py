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
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateways import validation as v
from gateways.channels import find_channel
from gateways.chat import frames
from gateways.chat.fanout import CONTROL
from gateways.chat.send import ChatContext
from gateways.errors import Forbidden, NotFound, ValidationFailed
from gateways.services import Services, json_body, services
from views.channels import ChannelView

MAX_TIMEOUT_S = 14 * 24 * 3600
MAX_SLOW_MODE_S = 120
MAX_FOLLOW_MIN = 3 * 30 * 24 * 60  # three months, as Twitch
MAX_WORD_LENGTH = 64
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ACTIONS = ("timeout", "ban", "unban", "delete_message", "set_mode", "mod", "unmod", "vip", "unvip")
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


async def _actor(svc: Services, request: Request) -> tuple[str, ChannelView, bool]:
    """(user id, channel, is broadcaster) for a broadcaster or moderator; Forbidden otherwise."""
    principal = svc.principal(request)
    channel = await find_channel(svc, request.path_params["room"])
    chat: ChatContext = svc.extra["chat"]
    if principal.user_id == channel.owner_user_id:
        return principal.user_id, channel, True
    if (await chat.rooms.chatter(channel.id, principal.user_id)).role == "moderator":
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


def _int(data: dict[str, Any], name: str, low: int, high: int, required: bool = False) -> int | None:
    value = data.get(name)
    if value is None:
        if required:
            raise ValidationFailed(f"'{name}' is required", field=name)
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationFailed(f"'{name}' must be an integer from {low} to {high}", field=name)
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


async def _emit(svc: Services, chat: ChatContext, record: str, channel_id: str, value: dict[str, Any]) -> None:
    """Produce the event, then apply it to the room views at once (the processors apply it again)."""
    event = {"event_id": str(uuid.uuid4()), "occurred_at": svc.now_ms(), "channel_id": channel_id, **value}
    await svc.emit(record, channel_id, event)
    await chat.rooms.apply(record, event)


async def _delete(svc: Services, chat: ChatContext, channel_id: str, actor: str, reason: str | None,
                  message_id: str = "", user_id: str = "") -> list[str]:
    """Remove messages from the recent buffer and record their deletion; the ids removed."""
    removed = await svc.redis.eval(_REMOVE_RECENT, 1, chat.k_recent(channel_id), message_id, user_id)
    gone = [json.loads(item) for item in removed]
    ids = [m["id"] for m in gone] or ([message_id] if message_id else [])
    authors = {m["id"]: m["user"]["id"] for m in gone}
    # A ban can delete a whole buffer of messages: produce them together, not one acknowledgement at a time.
    await asyncio.gather(*(svc.emit("glasscast.chat.ChatMessageDeleted", channel_id, {
        "event_id": str(uuid.uuid4()), "occurred_at": svc.now_ms(), "message_id": mid,
        "channel_id": channel_id, "deleted_by_user_id": actor, "user_id": authors.get(mid) or user_id or None,
        "reason": reason}) for mid in ids))
    return ids


async def moderate(request: Request) -> JSONResponse:
    svc = services(request)
    chat: ChatContext = svc.extra["chat"]
    actor, channel, is_broadcaster = await _actor(svc, request)
    data = await json_body(request)
    v.only(data, FIELDS)
    action = data.get("action")
    if action not in ACTIONS:
        raise ValidationFailed(f"'action' must be one of {', '.join(ACTIONS)}", field="action")
    reason = v.string(data, "reason", required=False, max_length=500)
    result: dict[str, Any] = {"action": action, "channel_id": channel.id}

    if action == "delete_message":
        message_id = v.string(data, "message_id", max_length=36)
        if not message_id or not UUID_RE.match(message_id):
            raise ValidationFailed("'message_id' must be a message id (UUID)", field="message_id")
        await _delete(svc, chat, channel.id, actor, reason, message_id=message_id)
        await chat.hub.publish(channel.id, CONTROL, frames.encode({"type": "CLEARMSG", "message_id": message_id}))
        return JSONResponse({**result, "message_id": message_id})

    if action == "set_mode":
        current = await chat.rooms.mode(channel.id)
        followers = current.followers_only_min
        if "followers_only_min" in data:  # null turns followers-only mode off
            followers = _int(data, "followers_only_min", 0, MAX_FOLLOW_MIN)
        slow = _int(data, "slow_mode_s", 0, MAX_SLOW_MODE_S)
        subs, emote = _bool(data, "subscribers_only"), _bool(data, "emote_only")
        words = _words(data, svc.settings.chat.banned_words_max)
        mode = {"slow_mode_s": current.slow_mode_s if slow is None else slow,
                "subscribers_only": current.subscribers_only if subs is None else subs,
                "followers_only_min": followers,
                "emote_only": current.emote_only if emote is None else emote}
        await _emit(svc, chat, "glasscast.chat.ChatModeChanged", channel.id,
                    {"changed_by_user_id": actor, **mode, "banned_words": words})
        await chat.hub.publish(channel.id, CONTROL, frames.encode({"type": "ROOMSTATE", "settings": mode}))
        return JSONResponse({**result, "settings": mode,
                             "banned_words": words if words is not None else await chat.rooms.banned_words(channel.id)})

    target = await _target(svc, data)
    result["user_id"] = target
    if target == channel.owner_user_id:
        raise Forbidden("the broadcaster cannot be moderated in their own channel")
    if action in ("mod", "unmod", "vip", "unvip"):
        if not is_broadcaster:
            raise Forbidden("only the broadcaster may change chat roles")
        await _emit(svc, chat, "glasscast.chat.ChatRoleChanged", channel.id, {
            "user_id": target, "changed_by_user_id": actor, "role": "VIP" if "vip" in action else "MODERATOR",
            "granted": not action.startswith("un")})
        return JSONResponse(result)
    if not is_broadcaster and (await chat.rooms.chatter(channel.id, target)).role == "moderator":
        raise Forbidden("moderators cannot moderate other moderators")
    if action == "unban":
        await _emit(svc, chat, "glasscast.chat.UserUnbanned", channel.id,
                    {"user_id": target, "moderator_user_id": actor})
        return JSONResponse(result)
    if action == "timeout":
        duration = _int(data, "duration_s", 1, MAX_TIMEOUT_S, required=True)
        await _emit(svc, chat, "glasscast.chat.UserTimedOut", channel.id, {
            "user_id": target, "moderator_user_id": actor, "duration_s": duration, "reason": reason})
        result["duration_s"] = duration
    else:
        await _emit(svc, chat, "glasscast.chat.UserBanned", channel.id,
                    {"user_id": target, "moderator_user_id": actor, "reason": reason})
    result["deleted"] = await _delete(svc, chat, channel.id, actor, reason, user_id=target)
    await chat.hub.publish(channel.id, CONTROL, frames.encode({
        "type": "CLEARCHAT", "user_id": target, "duration_s": result.get("duration_s"), "reason": reason}))
    return JSONResponse(result)


async def moderation_log(request: Request) -> JSONResponse:
    svc = services(request)
    chat: ChatContext = svc.extra["chat"]
    _, channel, _ = await _actor(svc, request)
    limit = request.query_params.get("limit", "100")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise ValidationFailed("'limit' must be an integer from 1 to 1000", field="limit")
    return JSONResponse({"channel_id": channel.id, "actions": await chat.rooms.moderation_log(channel.id, int(limit))},
                        headers={"Cache-Control": "no-store"})


routes = [
    Route("/v1/chat/{room}/moderate", moderate, methods=["POST"]),
    Route("/v1/chat/{room}/moderation-log", moderation_log, methods=["GET"]),
]

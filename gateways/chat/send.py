"""The send path: validate -> rate limit -> filter -> Valkey pub/sub (real time) -> ChatMessageSent (durable).

The rules run on state read in one Valkey pipeline (room mode and banned
words, the user's ban, timeout, role, follow, subscription, last send, the
nonce).  A refused message gets a NOTICE with the reason, to its sender
only; an accepted one is published to the room (every gateway's fan-out)
and produced to ``chat.messages``, and its sender gets an ACK once the log
has it.  A resent nonce gets an ACK for the first message and nothing is
sent twice.
"""

from __future__ import annotations

import uuid

from gateways.chat import checks, frames
from gateways.chat.emotes import only_emotes, parse_emotes
from gateways.chat.fanout import MESSAGE
from gateways.services import Services
from schemas.records.chat import ChatMessageSent, Emote
from topics.errors import DeliveryError

NONCE_TTL_S = 600
LAST_SENT_TTL_MS = 3_600_000


def notice(code: str, reason: str, nonce: str | None) -> str:
    return frames.encode({"type": "NOTICE", "code": code, "reason": reason, "nonce": nonce})


async def send_message(svc: Services, channel_id: str, user_id: str, username: str, is_broadcaster: bool,
                       frame: frames.ClientFrame) -> str:
    """Take one message from a user; the answer (ACK or NOTICE) goes back to them only."""
    cfg, chat = svc.settings.chat, svc.chat
    now = svc.now_ms()
    text = checks.normalise(frame.text)
    nonce = frame.nonce
    r = svc.redis
    keys = [chat.k_last(channel_id, user_id)] + ([chat.k_nonce(channel_id, user_id, nonce)] if nonce else [])
    chatter, mode, words, (last_raw, *seen_list) = await chat.rooms.send_state(channel_id, user_id, keys)
    seen = seen_list[0] if seen_list else None
    if seen:
        return frames.encode({"type": "ACK", "nonce": nonce, "id": seen.decode(), "duplicate": True})
    user_badges = checks.badges(chatter, is_broadcaster, now)
    emotes = parse_emotes(text)
    refused = checks.refusal(text, chatter, mode, user_badges, now, int(last_raw) if last_raw else None,
                             cfg.max_message_length, only_emotes(text, emotes))
    if refused is not None:
        return notice(refused.code, refused.reason, nonce)
    if checks.banned_word(text, words) is not None:
        return notice("banned_word", "Your message contains a word this channel does not allow.", nonce)
    message_id = str(uuid.uuid4())
    limit = cfg.moderator_messages_per_window if checks.privileged(user_badges) else cfg.user_messages_per_window
    allowed, wait_ms = await chat.limiter.allow(channel_id, user_id, now, int(cfg.rate_window_s * 1000), limit,
                                                message_id)
    if not allowed:
        return notice("rate_limited", f"You are sending messages too quickly; wait {wait_ms} ms.", nonce)
    if chat.classifier is not None and not checks.privileged(user_badges):
        if await chat.classifier.score(text) >= cfg.ml_threshold:
            return notice("filtered", "Your message was held by the chat filter for offensive language.", nonce)
    if nonce and not await r.set(chat.k_nonce(channel_id, user_id, nonce), message_id, nx=True, ex=NONCE_TTL_S):
        first = await r.get(chat.k_nonce(channel_id, user_id, nonce))
        first_id = first.decode() if isinstance(first, bytes) else first
        return frames.encode({"type": "ACK", "nonce": nonce, "id": first_id, "duplicate": True})
    message = {"type": "MESSAGE", "id": message_id, "channel_id": channel_id,
               "user": {"id": user_id, "username": username, "badges": user_badges},
               "text": text, "emotes": emotes, "nonce": nonce, "sent_at_ms": now}
    payload = frames.encode(message)
    async with r.pipeline(transaction=True) as tx:
        tx.lpush(chat.k_recent(channel_id), payload)
        tx.ltrim(chat.k_recent(channel_id), 0, max(0, cfg.recent_messages - 1))
        tx.set(chat.k_last(channel_id, user_id), now, px=LAST_SENT_TTL_MS)
        tx.publish(chat.hub.topic(channel_id), MESSAGE + payload)
        await tx.execute()
    try:
        await svc.producer.send(ChatMessageSent(
            occurred_at=now, message_id=message_id, channel_id=channel_id, user_id=user_id, username=username,
            text=text, nonce=nonce, emotes=tuple(Emote(emote_id=e["id"], start=e["start"], end=e["end"])
                                                 for e in emotes),
            badges=tuple(user_badges)), channel_id)
    except DeliveryError as exc:
        return notice("unavailable", f"Your message was shown but may be missing from replays: {exc}", nonce)
    return frames.encode({"type": "ACK", "nonce": nonce, "id": message_id, "duplicate": False})

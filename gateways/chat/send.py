"""The send path: validate -> rate limit -> filter -> ChatMessageSent (durable) -> Valkey pub/sub (real time).

The rules run on state read in one Valkey script call (room mode and banned
words, the user's ban, timeout, role, follow, subscription, last send, the
nonce: ``ChatRooms.send_state``).  A refused message gets a NOTICE with the reason, to its sender
only.  An accepted one is produced to ``chat.messages`` first and shown to
the room (published to every gateway's fan-out) only once the log has
acknowledged it, and then its sender gets an ACK: a message is never shown
that a replay would not have.  If the log does not acknowledge it within
``ChatContext.log_timeout_s`` (the chat producer gives up on it by then too,
gateways/services.py), the sender gets a NOTICE ``unavailable`` and nobody
sees it.  A Valkey that does not answer refuses the send the same way
(gateways/chat/ws.py).  The cost is the log's round trip before the room
sees a message (a few ms on the embedded broker; bench/chat.py).

A resent nonce gets an ACK for the first message and nothing is sent twice.
The nonce is claimed before the message goes to the log, for no longer than
the log may take, and kept for ``NONCE_TTL_S`` once it is logged; a refused
message releases it, so the sender may resend with the same nonce.
"""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from dataclasses import dataclass

from gateways.chat import checks, cheers, frames
from gateways.chat.emotes import only_emotes, parse_emotes
from gateways.chat.fanout import MESSAGE
from gateways.services import Services
from schemas.records.chat import ChatMessageSent, Emote
from topics.errors import DeliveryError
from views import scripts
from views.errors import VALKEY_UNAVAILABLE
from views.ledger import cheer_id

log = logging.getLogger("glasscast.chat")

NONCE_TTL_S = 600
LAST_SENT_TTL_MS = 3_600_000
LOG_GRACE_S = 1.0  # beyond the producer's own timeout, in case its delivery report never comes


def notice(code: str, reason: str, nonce: str | None) -> str:
    return frames.encode({"type": "NOTICE", "code": code, "reason": reason, "nonce": nonce})


@dataclass(frozen=True)
class Taken:
    """What the send's round trip took ahead of the rules: a slot of the rate limit, a cheer's hold, a nonce's
    claim (None: not taken)."""

    rate_member: str | None
    hold: str | None
    nonce_key: str | None


async def _let_go(svc: Services, channel_id: str, user_id: str, taken: Taken) -> None:
    """Give back, in one round trip, what a refused message took: it counts against nothing."""
    async with svc.redis.pipeline(transaction=False) as p:
        if taken.rate_member is not None:
            p.zrem(svc.chat.limiter.key(channel_id, user_id), taken.rate_member)
        if taken.hold is not None:
            p.hdel(svc.ledger.k_holds(user_id), taken.hold)
        if taken.nonce_key is not None:
            p.delete(taken.nonce_key)
        if len(p):
            await p.execute()


async def send_message(svc: Services, channel_id: str, user_id: str, username: str, is_broadcaster: bool,
                       frame: frames.ClientFrame) -> str:
    """Take one message from a user; the answer (ACK or NOTICE) goes back to them only."""
    cfg, chat = svc.settings.chat, svc.chat
    now = svc.now_ms()
    text = checks.normalise(frame.text)
    nonce = frame.nonce
    r = svc.redis
    bits = cheers.cheered_bits(text)
    if bits and not 1 <= bits <= svc.settings.payments.max_cheer_bits:
        return cheers.invalid(svc, nonce)
    message_id = str(uuid.uuid4())
    k_nonce = chat.k_nonce(channel_id, user_id, nonce) if nonce else ""
    extra = [chat.k_last(channel_id, user_id)] + ([k_nonce] if nonce else [])
    state = chat.rooms.send_state_call(channel_id, user_id, extra)
    window_ms, limit = int(cfg.rate_window_s * 1000), cfg.user_messages_per_window
    if is_broadcaster:
        rate = chat.limiter.call(channel_id, user_id, now, window_ms, cfg.moderator_messages_per_window, message_id)
    else:
        rate = chat.limiter.call(channel_id, user_id, now, window_ms, limit, message_id,
                                 moderator=(chat.rooms.k_roles(channel_id), cfg.moderator_messages_per_window))
    # One round trip: the state the rules read, the rate limit, and the cheer's hold or the nonce's claim.
    # The last two are taken ahead of the rules; a message the rules refuse lets them go again (_let_go).
    cheer = (cheer_id(user_id, channel_id, nonce) if nonce else message_id) if bits else ""
    claim_s = math.ceil(chat.log_timeout_s + LOG_GRACE_S + 1)
    commands, calls = [scripts.evalsha(state), scripts.evalsha(rate)], {0: state, 1: rate}
    if bits:
        hold = svc.ledger.hold_call(user_id, cheer, bits, now, now + svc.settings.payments.hold_ttl_s * 1000)
        commands.append(scripts.evalsha(hold))
        calls[2] = hold
    elif nonce:
        commands.append(("SET", k_nonce, message_id, "NX", "EX", claim_s, "GET"))
    state_answer, rate_answer, *third = await chat.trips.round_trip(commands, calls)
    chatter, mode, words, (last_raw, *seen_list) = chat.rooms.send_state(state_answer)
    allowed, wait_ms = chat.limiter.answer(rate_answer)
    admission = svc.ledger.admission(third[0]) if bits else None
    first = third[0] if third and not bits else None  # the nonce's earlier message, when the claim found one
    taken = Taken(rate_member=message_id if allowed else None,
                  hold=cheer if admission is not None and admission.outcome == "held" else None,
                  nonce_key=k_nonce if nonce and not bits and first is None else None)
    # Not our own claim: a script Valkey had forgotten runs again after the rest of the round trip (scripts.settle).
    seen = seen_list[0] if seen_list and seen_list[0] != message_id.encode() else None
    if seen:
        await _let_go(svc, channel_id, user_id, taken)
        return frames.encode({"type": "ACK", "nonce": nonce, "id": seen.decode(), "duplicate": True})
    user_badges = checks.badges(chatter, is_broadcaster, now)
    emotes = parse_emotes(text)
    refused = checks.refusal(text, chatter, mode, user_badges, now, int(last_raw) if last_raw else None,
                             cfg.max_message_length, only_emotes(text, emotes))
    if refused is None and checks.banned_word(text, words) is not None:
        refused = checks.Refusal("banned_word", "Your message contains a word this channel does not allow.")
    if refused is not None:
        await _let_go(svc, channel_id, user_id, taken)
        return notice(refused.code, refused.reason, nonce)
    if not allowed:
        await _let_go(svc, channel_id, user_id, taken)
        return notice("rate_limited", f"You are sending messages too quickly; wait {wait_ms} ms.", nonce)
    if admission is not None:  # the charge and the message are one logged fact (gateways/chat/cheers.py)
        return await cheers.send_cheer(svc, channel_id, user_id, username, text, nonce, user_badges, emotes, now, bits,
                                       cheer, admission, not checks.privileged(user_badges))
    if first is not None:
        first_id = first.decode() if isinstance(first, bytes) else first
        return frames.encode({"type": "ACK", "nonce": nonce, "id": first_id, "duplicate": True})
    if chat.classifier is not None and not checks.privileged(user_badges):
        if await chat.classifier.score(text) >= cfg.ml_threshold:
            if nonce:
                await r.delete(k_nonce)
            return notice("filtered", "Your message was held by the chat filter for offensive language.", nonce)
    event = ChatMessageSent(
        occurred_at=now, message_id=message_id, channel_id=channel_id, user_id=user_id, username=username,
        text=text, nonce=nonce, emotes=tuple(Emote(emote_id=e["id"], start=e["start"], end=e["end"]) for e in emotes),
        badges=tuple(user_badges))
    try:
        await chat.log.send(event, channel_id, timeout_s=chat.log_timeout_s + LOG_GRACE_S)
    except (DeliveryError, TimeoutError) as exc:
        if nonce:  # let a resend with this nonce go through; if Valkey is gone too, the claim expires soon
            with contextlib.suppress(*VALKEY_UNAVAILABLE):
                await r.delete(chat.k_nonce(channel_id, user_id, nonce))
        reason = str(exc) or f"no acknowledgement within {chat.log_timeout_s:g} s"
        log.warning("chat: message refused, the log did not take it: %s", reason)
        return notice("unavailable", "Chat cannot record messages right now, so yours was not sent; "
                                     f"try again in a moment. ({reason})", nonce)
    user: dict[str, object] = {"id": user_id, "username": username, "badges": user_badges}
    if info := checks.badge_info(chatter, now):  # only where a badge counts something (subscriber months)
        user["badge_info"] = info
    message = {"type": "MESSAGE", "id": message_id, "channel_id": channel_id, "user": user,
               "text": text, "emotes": emotes, "nonce": nonce, "sent_at_ms": now}
    payload = frames.encode(message)
    try:
        shown = chat.rooms.shown_call(chat.k_recent(channel_id), cfg.recent_messages, payload,
                                      chat.k_last(channel_id, user_id), now, LAST_SENT_TTL_MS, k_nonce or None,
                                      NONCE_TTL_S, chat.hub.topic(channel_id), MESSAGE + payload)
        await chat.trips.round_trip([scripts.evalsha(shown)], {0: shown})
    except VALKEY_UNAVAILABLE as exc:
        # Logged, so it is in every replay: the sender gets the ACK, and only the live room missed it.
        log.warning("chat: message %s logged but not shown, Valkey did not answer: %s", message_id, exc)
    return frames.encode({"type": "ACK", "nonce": nonce, "id": message_id, "duplicate": False})

"""Cheers: a chat message that spends bits (``cheer100 GG``), charged exactly once.

A message cheers the sum of its ``cheer<N>`` tokens (whole words, any case,
as Twitch's cheermotes).  It passes every rule an ordinary message does
(gateways/chat/send.py), and then:

1. **Hold.** One Lua step (sent with the state the chat rules read and the
   sender's rate limit check, in one round trip) holds the bits against the
   user's folded balance minus every other hold (views/ledger_store.py), so
   concurrent cheers from one user on any number of gateways never overdraw.
   Short: a NOTICE ``insufficient_bits`` with the balance, and nothing is
   charged.  A cheer the rules or the rate limit refuse lets its hold go in
   the next round trip; until then the hold counts against that user's
   other cheers.
2. **Log.** The charge and the message are one fact: a ``BitsCheered`` on
   ``billing.ledger`` (keyed by user) that carries the text.  The cheer's id
   is derived from the user, channel and client nonce, and its event id from
   the cheer, so a retried message is the same cheer: the hold step answers
   it as a duplicate (held or already folded) and it is ACKed, never charged
   again.  Once acknowledged, the hold is kept until the ledger worker folds
   the event (processors/ledger/), which removes it in the same step that
   counts the spend.  The ledger worker also writes the message into
   ``chat.messages`` for history and replays.
3. **Show.** The room gets the MESSAGE with ``bits``, and the sender an ACK.

A gateway that dies after the hold and before the log leaves a hold that
expires after ``GLASSCAST_PAYMENTS_HOLD_TTL_S`` (nothing was charged; until
then a retry is told ``cheer_pending``); the TTL outlasts the producer's own
timeout, so a record cannot land after its hold expired.  One that dies after
the log and before the room saw it has charged once, and the client's retry
with the same nonce is ACKed as a duplicate.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

from gateways.chat import frames
from gateways.chat.fanout import MESSAGE
from gateways.services import Services
from schemas.records.billing import BitsCheered
from topics.errors import DeliveryError
from views import scripts
from views.errors import VALKEY_UNAVAILABLE
from views.ledger import Admission, cheer_event_id

log = logging.getLogger("glasscast.chat")

CHEER_RE = re.compile(r"(?<!\S)cheer(\d{1,7})(?!\S)", re.IGNORECASE)
NONCE_TTL_S = 600
LAST_SENT_TTL_MS = 3_600_000
LOG_GRACE_S = 1.0


def cheered_bits(text: str) -> int:
    """The bits a message cheers: the sum of its ``cheer<N>`` words (0: not a cheer)."""
    return sum(int(n) for n in CHEER_RE.findall(text))


def notice(code: str, reason: str, nonce: str | None) -> str:
    return frames.encode({"type": "NOTICE", "code": code, "reason": reason, "nonce": nonce})


def invalid(svc: Services, nonce: str | None) -> str:
    """The NOTICE for a cheer of more bits than one message may cheer."""
    return notice("cheer_invalid", f"A message may cheer 1 to {svc.settings.payments.max_cheer_bits} bits.", nonce)


async def send_cheer(svc: Services, channel_id: str, user_id: str, username: str, text: str, nonce: str | None,
                     badges: list[str], emotes: list[dict[str, Any]], now_ms: int, bits: int, cheer: str,
                     admission: Admission, classify: bool) -> str:
    """Log and show one cheer the rules let through, whose hold step answered ``admission``; the answer (ACK or
    NOTICE) goes to the sender only.

    The hold was taken in the send's one round trip (gateways/chat/send.py); a hold that the chat filter
    (``classify``) then refuses is let go again.
    """
    cfg, chat = svc.settings.payments, svc.chat
    if admission.outcome == "duplicate":
        return frames.encode({"type": "ACK", "nonce": nonce, "id": cheer, "duplicate": True, "bits": bits})
    if admission.outcome == "pending":
        return notice("cheer_pending", "This cheer is still being recorded. If it does not show, send it again in "
                                       f"{cfg.hold_ttl_s} s; it is never charged twice.", nonce)
    if admission.outcome == "short":
        return notice("insufficient_bits", f"You do not have enough bits to cheer {bits}: your balance is "
                                           f"{admission.available}. Nothing was charged.", nonce)
    if classify and chat.classifier is not None:
        if await chat.classifier.score(text) >= svc.settings.chat.ml_threshold:
            await svc.ledger.release(user_id, cheer)
            return notice("filtered", "Your message was held by the chat filter for offensive language.", nonce)
    event = BitsCheered(event_id=cheer_event_id(cheer), occurred_at=now_ms, cheer_id=cheer, user_id=user_id,
                        username=username, channel_id=channel_id, bits=bits, text=text, nonce=nonce,
                        badges=tuple(badges))
    try:
        await chat.log.send(event, user_id, timeout_s=chat.log_timeout_s + LOG_GRACE_S)
    except (DeliveryError, TimeoutError) as exc:
        if isinstance(exc, DeliveryError):  # refused for good: the bits are free again
            with contextlib.suppress(*VALKEY_UNAVAILABLE):
                await svc.ledger.release(user_id, cheer)
        # A timeout keeps the hold: the record may still land, and the hold outlives the producer's own timeout.
        reason = str(exc) or f"no acknowledgement within {chat.log_timeout_s:g} s"
        log.warning("chat: cheer refused, the ledger did not take it: %s", reason)
        return notice("unavailable", "Chat cannot record cheers right now, so yours was not sent and nothing "
                                     f"was charged; try again in a moment. ({reason})", nonce)
    message = {"type": "MESSAGE", "id": cheer, "channel_id": channel_id,
               "user": {"id": user_id, "username": username, "badges": badges},
               "text": text, "emotes": emotes, "nonce": nonce, "sent_at_ms": now_ms, "bits": bits}
    payload = frames.encode(message)
    try:
        logged = svc.ledger.logged_call(user_id, cheer, bits)
        shown = chat.rooms.shown_call(chat.k_recent(channel_id), svc.settings.chat.recent_messages, payload,
                                      chat.k_last(channel_id, user_id), now_ms, LAST_SENT_TTL_MS,
                                      chat.k_nonce(channel_id, user_id, nonce) if nonce else None, NONCE_TTL_S,
                                      chat.hub.topic(channel_id), MESSAGE + payload, nonce_value=cheer)
        await chat.trips.round_trip([("MULTI",), scripts.evalsha(logged), scripts.evalsha(shown), ("EXEC",)],
                                    {0: logged, 1: shown})
    except VALKEY_UNAVAILABLE as exc:
        log.warning("chat: cheer %s logged but not shown, Valkey did not answer: %s", cheer, exc)
    return frames.encode({"type": "ACK", "nonce": nonce, "id": cheer, "duplicate": False, "bits": bits})

"""Who may say what in a room: the send path's rules, as pure functions.

``refusal`` returns None when a message may go out, else a ``Refusal`` whose
reason is shown to its sender only.  Order matters: the cheapest and most
definite checks (auth, bans) come first; the rate limit and the classifier,
which cost a round trip or CPU, run after these (gateways/chat/send.py).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from views.chat_rooms import Chatter, RoomMode

PRIVILEGED = ("broadcaster", "moderator")


@dataclass(frozen=True)
class Refusal:
    code: str
    reason: str


def badges(chatter: Chatter, is_broadcaster: bool, now_ms: int) -> list[str]:
    """Badges shown beside a user's messages, most important first."""
    out = []
    if is_broadcaster:
        out.append("broadcaster")
    if chatter.role == "moderator":
        out.append("moderator")
    if chatter.role == "vip":
        out.append("vip")
    if chatter.subscribed(now_ms) and chatter.sub_tier:
        out.append(f"subscriber/{chatter.sub_tier.rsplit('_', 1)[-1]}")
    return out


def badge_info(chatter: Chatter, now_ms: int) -> dict[str, int]:
    """What the badges count, as Twitch's badge-info: the subscriber badge's cumulative months."""
    return {"subscriber": chatter.sub_months} if chatter.subscribed(now_ms) and chatter.sub_months else {}


def privileged(user_badges: list[str]) -> bool:
    """Broadcaster and moderators: exempt from room modes, see every message."""
    return any(b in PRIVILEGED for b in user_badges)


def normalise(text: str) -> str:
    """The text as sent on: NFC, without control or format characters, trimmed."""
    text = unicodedata.normalize("NFC", text)
    return "".join(ch for ch in text if unicodedata.category(ch)[0] != "C").strip()


def refusal(text: str, chatter: Chatter, mode: RoomMode, user_badges: list[str], now_ms: int,
            last_sent_ms: int | None, max_length: int, emote_only_ok: bool) -> Refusal | None:
    """Why this message may not be sent now, or None."""
    if chatter.banned:
        return Refusal("banned", "You are banned from this chat.")
    if chatter.timed_out_until_ms > now_ms:
        left = (chatter.timed_out_until_ms - now_ms + 999) // 1000
        return Refusal("timed_out", f"You are timed out for {left} more seconds.")
    if not text:
        return Refusal("empty", "Message is empty.")
    if len(text) > max_length:
        return Refusal("too_long", f"Message is longer than {max_length} characters.")
    if privileged(user_badges):
        return None
    if mode.subscribers_only and not chatter.subscribed(now_ms):
        return Refusal("subscribers_only", "This room is in subscribers-only mode.")
    if mode.followers_only_min is not None:
        if chatter.followed_at_ms is None:
            return Refusal("followers_only", "This room is in followers-only mode: follow the channel to chat.")
        need_ms = mode.followers_only_min * 60_000
        if now_ms - chatter.followed_at_ms < need_ms:
            return Refusal("followers_only", f"This room is in followers-only mode: you must follow for "
                                             f"{mode.followers_only_min} minutes before chatting.")
    if mode.emote_only and not emote_only_ok:
        return Refusal("emote_only", "This room is in emote-only mode.")
    if mode.slow_mode_s > 0 and last_sent_ms is not None and "vip" not in user_badges:
        wait_ms = last_sent_ms + mode.slow_mode_s * 1000 - now_ms
        if wait_ms > 0:
            return Refusal("slow_mode", f"This room is in slow mode: wait {(wait_ms + 999) // 1000} more seconds.")
    return None


def banned_word(text: str, words: list[str]) -> str | None:
    """The first banned word ``text`` contains as a whole word (case-insensitive), if any."""
    if not words:
        return None
    folded = text.casefold()
    for word in words:
        if re.search(rf"(?<!\w){re.escape(word.casefold())}(?!\w)", folded):
            return word
    return None

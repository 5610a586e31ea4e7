"""The chat history interface: what an archived message is and what every backend does.

A backend keeps each channel's messages in time order, ``(sent_at_ms,
message_id)``, the id breaking ties between messages of the same millisecond.
Every write is idempotent and they all commute, because the processors replay
the log after a restart, a deletion may be read before the message it deletes,
and moderation comes on another topic than the messages:

* ``append`` of a message already archived changes nothing;
* ``delete`` hides a message for good, whether it comes before or after the
  message (and however often), so a deleted message is never returned;
* ``clear_user`` hides every message a user sent in a channel up to a moment
  (a ban or timeout there, Twitch's CLEARCHAT), those archived already and
  those appended later; what the user says after that moment shows again.

Reads are by key, ``(sent_at_ms, message_id)``: ``window`` gives the messages
on either side of a key, which is how replay pages by cursor
(``views/chat_history/cursor.py``).  No message id is empty, so the key
``(T + 1, "")`` sits between the messages sent at or before ``T`` and those
sent after it (``pivot``).

Messages are identified by ``(channel_id, message_id)``: a deletion names the
channel it was made in, and channels never see each other's messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

HOUR_MS = 3_600_000

Key = tuple[int, str]
"""A place in a channel's history: ``(sent_at_ms, message_id)``."""


@dataclass(frozen=True)
class Emote:
    """An emote in a message: ``text[start:end]``, counted in code points (ChatMessageSent.avsc)."""

    emote_id: str
    start: int
    end: int


@dataclass(frozen=True)
class ArchivedMessage:
    """One chat message as replay shows it."""

    channel_id: str
    message_id: str
    user_id: str
    username: str
    text: str
    sent_at_ms: int
    emotes: tuple[Emote, ...] = ()
    badges: tuple[str, ...] = ()

    def sort_key(self) -> tuple[int, str]:
        """The message's place in its channel's history."""
        return (self.sent_at_ms, self.message_id)


@dataclass(frozen=True)
class Window:
    """The messages nearest a key on each side, each side oldest first."""

    older: tuple[ArchivedMessage, ...]
    newer: tuple[ArchivedMessage, ...]


class HistoryStore(Protocol):
    """Where archived chat lives; every method may raise ``HistoryError``."""

    async def append(self, messages: Sequence[ArchivedMessage]) -> None:
        """Archive messages; one already archived, or already deleted, is left as it is."""

    async def delete(self, channel_id: str, message_id: str) -> None:
        """Hide a message from replay, now and if it is appended later."""

    async def clear_user(self, channel_id: str, user_id: str, through_ms: int) -> None:
        """Hide the user's messages in the channel sent at or before ``through_ms``, now and if appended later."""

    async def window(self, channel_id: str, key: Key, before: int, after: int) -> Window:
        """Up to ``before`` messages whose key sorts before ``key`` and ``after`` whose key sorts after it."""

    async def around(self, channel_id: str, ts_ms: int, before: int, after: int) -> list[ArchivedMessage]:
        """Up to ``before`` messages sent at or before ``ts_ms`` and ``after`` sent after it, oldest first."""

    async def close(self) -> None:
        """Release the connection; the store is not used again."""


def hour_bucket(ts_ms: int) -> int:
    """The hour (since the epoch) a time falls in: the Cassandra partition of a message."""
    return ts_ms // HOUR_MS


def pivot(ts_ms: int) -> Key:
    """The key between the messages sent at or before ``ts_ms`` and those sent after it."""
    return (ts_ms + 1, "")


def check_window(before: int, after: int) -> None:
    """Refuse a negative window (a programming error: the gateway validates what clients send)."""
    if before < 0 or after < 0:
        raise ValueError(f"window must not be negative (before={before}, after={after})")

"""From ``chat.messages`` and ``chat.moderation`` records to what the history store takes: pure, no clock, no I/O.

A message is archived at the time its ChatMessageSent event says it was sent
(``occurred_at``), never at the time it is read, so replaying the log rebuilds
the same history.  A ban or a timeout (UserBanned, UserTimedOut: the CLEARCHAT
that live clients get) clears what the user said in that channel up to the
moment it happened, also messages older than the gateway's recent buffer, so
they vanish from replay as from the screen; what the user says after an unban
or once a timeout ends shows.  Appends, deletions and clears commute
(``store.py``), so a batch is applied as all its appends, then all its
deletions and clears, whatever their order in the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from schemas.record import Record
from schemas.records.chat import ChatMessageDeleted, ChatMessageSent, UserBanned, UserTimedOut
from views.chat_history.store import ArchivedMessage, Emote


@dataclass(frozen=True)
class Deletion:
    """A ChatMessageDeleted event, as the store takes it."""

    channel_id: str
    message_id: str


@dataclass(frozen=True)
class Clear:
    """A ban or timeout, as the store takes it: the user's messages there up to ``through_ms`` are hidden."""

    channel_id: str
    user_id: str
    through_ms: int


@dataclass(frozen=True)
class HistoryBatch:
    """What one batch of records does to the history."""

    messages: tuple[ArchivedMessage, ...] = ()
    deletions: tuple[Deletion, ...] = ()
    clears: tuple[Clear, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.messages or self.deletions or self.clears)


def archived_message(sent: ChatMessageSent) -> ArchivedMessage:
    """A ChatMessageSent as an archived message."""
    return ArchivedMessage(
        channel_id=sent.channel_id, message_id=sent.message_id, user_id=sent.user_id, username=sent.username,
        text=sent.text, sent_at_ms=sent.occurred_at,
        emotes=tuple(Emote(e.emote_id, e.start, e.end) for e in sent.emotes), badges=tuple(sent.badges))


def deletion(deleted: ChatMessageDeleted) -> Deletion:
    """A ChatMessageDeleted as the deletion it asks for."""
    return Deletion(deleted.channel_id, deleted.message_id)


def clear(event: UserBanned | UserTimedOut) -> Clear:
    """A ban or timeout as the clear it makes: the user's messages up to the moment it happened."""
    return Clear(event.channel_id, event.user_id, event.occurred_at)


def plan_batch(records: Iterable[Record]) -> HistoryBatch:
    """The appends, deletions and clears of a batch of records; other records are ignored.

    A message, deletion or clear that appears twice (a redelivery inside one batch) is kept once, and of
    several clears of one user in one channel only the latest is kept (it hides all the others hide).
    """
    messages: dict[tuple[str, str], ArchivedMessage] = {}
    deletions: dict[Deletion, None] = {}
    clears: dict[tuple[str, str], Clear] = {}
    for record in records:
        if isinstance(record, ChatMessageSent):
            m = archived_message(record)
            messages.setdefault((m.channel_id, m.message_id), m)
        elif isinstance(record, ChatMessageDeleted):
            deletions.setdefault(deletion(record))
        elif isinstance(record, UserBanned | UserTimedOut):
            c = clear(record)
            known = clears.get((c.channel_id, c.user_id))
            if known is None or known.through_ms < c.through_ms:
                clears[(c.channel_id, c.user_id)] = c
    return HistoryBatch(tuple(messages.values()), tuple(deletions), tuple(clears.values()))

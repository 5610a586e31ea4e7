"""From ``chat.messages`` records to what the history store takes: pure, no clock, no I/O.

A message is archived at the time its ChatMessageSent event says it was sent
(``occurred_at``), never at the time it is read, so replaying the log rebuilds
the same history.  Appends and deletions commute (``store.py``), so a batch is
applied as all its appends, then all its deletions, whatever their order in
the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from schemas.record import Record
from schemas.records.chat import ChatMessageDeleted, ChatMessageSent
from views.chat_history.store import ArchivedMessage, Emote


@dataclass(frozen=True)
class Deletion:
    """A ChatMessageDeleted event, as the store takes it."""

    channel_id: str
    message_id: str


@dataclass(frozen=True)
class HistoryBatch:
    """What one batch of records does to the history."""

    messages: tuple[ArchivedMessage, ...] = ()
    deletions: tuple[Deletion, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.messages or self.deletions)


def archived_message(sent: ChatMessageSent) -> ArchivedMessage:
    """A ChatMessageSent as an archived message."""
    return ArchivedMessage(
        channel_id=sent.channel_id, message_id=sent.message_id, user_id=sent.user_id, username=sent.username,
        text=sent.text, sent_at_ms=sent.occurred_at,
        emotes=tuple(Emote(e.emote_id, e.start, e.end) for e in sent.emotes), badges=tuple(sent.badges))


def deletion(deleted: ChatMessageDeleted) -> Deletion:
    """A ChatMessageDeleted as the deletion it asks for."""
    return Deletion(deleted.channel_id, deleted.message_id)


def plan_batch(records: Iterable[Record]) -> HistoryBatch:
    """The appends and deletions of a batch of records; other records are ignored.

    A message or deletion that appears twice (a redelivery inside one batch) is kept once.
    """
    messages: dict[tuple[str, str], ArchivedMessage] = {}
    deletions: dict[Deletion, None] = {}
    for record in records:
        if isinstance(record, ChatMessageSent):
            m = archived_message(record)
            messages.setdefault((m.channel_id, m.message_id), m)
        elif isinstance(record, ChatMessageDeleted):
            deletions.setdefault(deletion(record))
    return HistoryBatch(tuple(messages.values()), tuple(deletions))

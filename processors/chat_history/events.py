"""From ``chat.messages`` records to what the history store takes: pure, no clock, no I/O.

A message is archived at the time its ChatMessageSent event says it was sent
(``occurred_at``), never at the time it is read, so replaying the log rebuilds
the same history.  Appends and deletions commute (``store.py``), so a batch is
applied as all its appends, then all its deletions, whatever their order in
the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from views.chat_history.store import ArchivedMessage, Emote
from views.fold import to_ms, to_str

CHAT_MESSAGE_SENT = "glasscast.chat.ChatMessageSent"
CHAT_MESSAGE_DELETED = "glasscast.chat.ChatMessageDeleted"


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


def archived_message(value: Mapping[str, Any]) -> ArchivedMessage:
    """A decoded ChatMessageSent as an archived message."""
    return ArchivedMessage(
        channel_id=to_str(value["channel_id"]), message_id=to_str(value["message_id"]),
        user_id=to_str(value["user_id"]), username=value["username"], text=value["text"],
        sent_at_ms=to_ms(value["occurred_at"]),
        emotes=tuple(Emote(e["emote_id"], int(e["start"]), int(e["end"])) for e in value.get("emotes") or ()),
        badges=tuple(value.get("badges") or ()))


def deletion(value: Mapping[str, Any]) -> Deletion:
    """A decoded ChatMessageDeleted as the deletion it asks for."""
    return Deletion(to_str(value["channel_id"]), to_str(value["message_id"]))


def plan_batch(records: Iterable[tuple[str, Mapping[str, Any]]]) -> HistoryBatch:
    """The appends and deletions of ``(record name, value)`` pairs; other records are ignored.

    A message or deletion that appears twice (a redelivery inside one batch) is kept once.
    """
    messages: dict[tuple[str, str], ArchivedMessage] = {}
    deletions: dict[Deletion, None] = {}
    for record, value in records:
        if record == CHAT_MESSAGE_SENT:
            m = archived_message(value)
            messages.setdefault((m.channel_id, m.message_id), m)
        elif record == CHAT_MESSAGE_DELETED:
            deletions.setdefault(deletion(value))
    return HistoryBatch(tuple(messages.values()), tuple(deletions))

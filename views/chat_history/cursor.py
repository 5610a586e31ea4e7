"""Replay paging: opaque cursors over a channel's chat history, and the page a window makes.

A cursor names a key in one channel's history (``store.Key``) and a direction:
an ``older`` cursor pages to the messages sorting before the key, a ``newer``
one to those after it.  Keys are unique and totally ordered, so paging is a
keyset scan: messages archived meanwhile never shift a page, and a message is
never shown twice or skipped.  On the wire a cursor is URL-safe base64 (no
padding) of ``1|o|<channel id>|<sent_at_ms>|<message id>`` (``n`` for newer);
clients treat it as opaque, and a cursor that does not decode, or that names
another channel, is refused with a ``CursorError`` that says why.

A page asks the store for one message more than it shows on each side
(``fetch_sizes``): that extra message says whether the side goes on, so a
cursor is given only when there is something to page to.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Literal

from views.chat_history.store import ArchivedMessage, Key, Window

Direction = Literal["older", "newer"]

VERSION = "1"
MAX_CURSOR_CHARS = 256  # a real cursor is about 120 characters
MAX_ID_CHARS = 64  # channel and message ids are UUIDs (36 characters)
MAX_MS_DIGITS = 16
DIRECTIONS: dict[str, Direction] = {"o": "older", "n": "newer"}
CODES: dict[Direction, str] = {"older": "o", "newer": "n"}
BASE64URL_RE = re.compile(r"[A-Za-z0-9_-]+")  # b64decode skips other characters unless told not to


class CursorError(ValueError):
    """A cursor that cannot be used: malformed, or for another channel."""


@dataclass(frozen=True)
class Cursor:
    """A place to page from, in one channel's history."""

    channel_id: str
    direction: Direction
    key: Key


@dataclass(frozen=True)
class Page:
    """Messages oldest first, and the cursors to the pages either side (``None``: nothing there)."""

    messages: tuple[ArchivedMessage, ...]
    prev_cursor: Cursor | None
    next_cursor: Cursor | None


def encode_cursor(cursor: Cursor) -> str:
    """The cursor as clients see it."""
    sent_at_ms, message_id = cursor.key
    raw = "|".join((VERSION, CODES[cursor.direction], cursor.channel_id, str(sent_at_ms), message_id))
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode("ascii")


def _plain_id(value: str) -> bool:
    return len(value) <= MAX_ID_CHARS and value.isascii() and value.isprintable() and "|" not in value


def decode_cursor(text: str, channel_id: str) -> Cursor:
    """The cursor ``text`` names, which must be one of ``channel_id``'s; else a ``CursorError``."""
    if len(text) > MAX_CURSOR_CHARS or not BASE64URL_RE.fullmatch(text):
        raise CursorError("'cursor' is not a cursor this API gave out (wrong length or characters)")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        raise CursorError("'cursor' is not a cursor this API gave out (not base64url)") from None
    parts = raw.split("|")
    if len(parts) != 5 or parts[0] != VERSION:
        raise CursorError("'cursor' is not a cursor this API gave out (unknown layout)")
    _, code, cursor_channel, ms, message_id = parts
    direction = DIRECTIONS.get(code)
    if (direction is None or not _plain_id(cursor_channel) or not _plain_id(message_id)
            or not (ms.isdigit() and len(ms) <= MAX_MS_DIGITS)):
        raise CursorError("'cursor' is not a cursor this API gave out (bad field)")
    if cursor_channel != channel_id:
        raise CursorError("'cursor' belongs to another channel's chat")
    return Cursor(channel_id, direction, (int(ms), message_id))


def fetch_sizes(before: int, after: int) -> tuple[int, int]:
    """How many messages to ask the store for on each side, to show ``before`` and ``after``."""
    return before + 1, after + 1


def page_of(channel_id: str, key: Key, window: Window, before: int, after: int) -> Page:
    """The page showing ``before`` messages of ``window.older`` and ``after`` of ``window.newer``.

    ``window`` was read around ``key`` with ``fetch_sizes(before, after)``.
    """
    older = window.older[max(0, len(window.older) - before):] if before else ()
    newer = window.newer[:after]
    prev_cursor = next_cursor = None
    if len(window.older) > len(older):
        prev_cursor = Cursor(channel_id, "older", older[0].sort_key() if older else key)
    if len(window.newer) > len(newer):
        next_cursor = Cursor(channel_id, "newer", newer[-1].sort_key() if newer else key)
    return Page((*older, *newer), prev_cursor, next_cursor)


def cursor_sides(direction: Direction, limit: int) -> tuple[int, int]:
    """A cursor page's ``(before, after)``: ``limit`` messages in its direction, none the other way."""
    return (limit, 0) if direction == "older" else (0, limit)

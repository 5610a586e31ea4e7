"""Emotes: the global emote set and server-side parsing into positions.

As on Twitch, an emote is a whole whitespace-separated word equal to an
emote's code (case-sensitive); positions are code-point indexes into the
text, ``end`` inclusive, so any client can cut the text without re-parsing.
"""

from __future__ import annotations

from typing import Any

# code -> id; the web app draws them from /static/emotes/{id}.svg
GLOBAL_EMOTES: dict[str, str] = {
    "Kappa": "kappa", "PogChamp": "pogchamp", "LUL": "lul", "HeyGuys": "heyguys", "BibleThump": "biblethump",
    "Kreygasm": "kreygasm", "SeemsGood": "seemsgood", "NotLikeThis": "notlikethis", "GG": "gg",
    "<3": "heart",
}


def emote_set() -> list[dict[str, str]]:
    """The emote set a client gets on connect."""
    return [{"code": code, "id": eid, "url": f"/static/emotes/{eid}.svg"} for code, eid in GLOBAL_EMOTES.items()]


def parse_emotes(text: str) -> list[dict[str, Any]]:
    """Emote occurrences in ``text``: id, code, start and end (inclusive) code-point positions."""
    found = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        j = i
        while j < n and not text[j].isspace():
            j += 1
        word = text[i:j]
        eid = GLOBAL_EMOTES.get(word)
        if eid is not None:
            found.append({"id": eid, "code": word, "start": i, "end": j - 1})
        i = j
    return found


def only_emotes(text: str, emotes: list[dict[str, Any]]) -> bool:
    """True if every word of ``text`` is an emote."""
    return len(emotes) == len(text.split()) > 0

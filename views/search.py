"""Search over channels and live streams: tokens, the documents an inverted index holds, ranking.

The pure half of search; ``views/discovery.py`` keeps the index in
Valkey.  There is one document per channel: its name, title, tags and
category, plus the title, tags and category of its live stream while it has
one.  Results show the live stream's metadata when there is one, the
channel's otherwise.

Tokens.  Text is NFKD-decomposed, accents on Latin letters are dropped (so
"Pokémon" finds "pokemon"; marks on other scripts are letters' own and stay),
recomposed with NFKC (full-width and compatibility forms fold to the plain
ones) and case-folded ("Straße" -> "strasse"); a token is a run of letters
and digits (underscores and punctuation split, so "speedy_runner" is
"speedy" and "runner").  Unicode normalisation forms: https://unicode.org/reports/tr15/.

Scoring.  Every query token must match (AND), either a whole document token
(its field weight) or, from ``MIN_PREFIX_LENGTH`` characters on, the start of
one (half of it); a document's text score is the sum of each query token's
best match.  A live document adds ``LIVE_BOOST`` plus log10(1 + viewers), so
live channels rank above offline ones with similar text and bigger audiences
above smaller ones.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from views.channels import ChannelView
from views.streams import StreamView

NAME_WEIGHT, TITLE_WEIGHT, TAG_WEIGHT, CATEGORY_WEIGHT = 8, 4, 3, 2
EXACT_FACTOR, PREFIX_FACTOR = 1.0, 0.5
LIVE_BOOST = 6.0
MIN_PREFIX_LENGTH = 2  # one letter would expand to an arbitrary slice of the vocabulary
MAX_PREFIX_EXPANSIONS = 64  # index tokens a query prefix may stand for
MAX_TOKEN_LENGTH = 40  # longer runs are cut here, in documents and queries alike
MAX_QUERY_LENGTH = 100
MAX_QUERY_TOKENS = 8
_WORD_RE = re.compile(r"[^\W_]+")


def normalize(text: str) -> str:
    """Text as tokens are cut from it: Latin accents dropped, NFKC, case-folded."""
    kept: list[str] = []
    for ch in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(ch) and kept and kept[-1].isascii():
            continue  # an accent on a Latin letter
        kept.append(ch)
    return unicodedata.normalize("NFKC", "".join(kept)).casefold()


def tokenize(text: str | None) -> list[str]:
    """The distinct tokens of ``text``, in order of appearance."""
    if not text:
        return []
    return list(dict.fromkeys(t[:MAX_TOKEN_LENGTH] for t in _WORD_RE.findall(normalize(text))))


def query_tokens(q: str) -> list[str]:
    """The tokens of a search query; ValueError says what is wrong with an unusable one."""
    if not q.strip():
        raise ValueError("must not be empty")
    if len(q) > MAX_QUERY_LENGTH:
        raise ValueError(f"is longer than {MAX_QUERY_LENGTH} characters")
    tokens = tokenize(q)
    if not tokens:
        raise ValueError("has no letters or digits to search for")
    if len(tokens) > MAX_QUERY_TOKENS:
        raise ValueError(f"has more than {MAX_QUERY_TOKENS} words")
    return tokens


def prefix_range(token: str) -> tuple[bytes, bytes]:
    """The ZRANGE BYLEX bounds of every index token starting with ``token`` (UTF-8 never has 0xFF)."""
    raw = token.encode()
    return b"[" + raw, b"[" + raw + b"\xff"


@dataclass(frozen=True)
class SearchDoc:
    """One channel as the index holds it: what a result shows, and its tokens with weights."""

    channel_id: str
    channel_name: str
    title: str
    category: str | None
    tags: tuple[str, ...]
    stream_id: str | None  # the live stream, while there is one
    tokens: dict[str, int]

    @property
    def live(self) -> bool:
        return self.stream_id is not None

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["tags"] = list(self.tags)
        data["tokens"] = dict(sorted(self.tokens.items()))
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchDoc:
        return cls(**{**data, "tags": tuple(data["tags"]), "tokens": dict(data["tokens"])})


def build_doc(channel: ChannelView | None, stream: StreamView | None) -> SearchDoc | None:
    """A channel's document, with its live stream if ``stream`` is one; None without the channel."""
    if channel is None:
        return None
    live = stream if stream is not None and stream.live and stream.channel_id == channel.id else None
    weights: dict[str, int] = {}

    def add(text: str | None, weight: int) -> None:
        for token in tokenize(text):
            weights[token] = max(weights.get(token, 0), weight)

    for source in (channel, live):
        if source is not None:
            add(source.title, TITLE_WEIGHT)
            add(source.category, CATEGORY_WEIGHT)
            for tag in source.tags:
                add(tag, TAG_WEIGHT)
    add(channel.name, NAME_WEIGHT)
    shown = live if live is not None else channel
    return SearchDoc(channel_id=channel.id, channel_name=channel.name, title=shown.title,
                     category=shown.category or None, tags=tuple(shown.tags),
                     stream_id=live.id if live is not None else None, tokens=weights)


def match_factor(query_token: str, token: str) -> float:
    """How well an index token answers a query token: whole, as a prefix, or not at all (0)."""
    if token == query_token:
        return EXACT_FACTOR
    if len(query_token) >= MIN_PREFIX_LENGTH and token.startswith(query_token):
        return PREFIX_FACTOR
    return 0.0


def text_scores(query: Sequence[str], postings: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Each channel matching every query token, with its text score.

    ``postings`` maps index tokens (the query tokens and their prefix
    expansions) to {channel id: weight of the token in that channel}.
    """
    scores: dict[str, float] | None = None
    for q in query:
        best: dict[str, float] = {}
        for token, channels in postings.items():
            factor = match_factor(q, token)
            if factor:
                for channel_id, weight in channels.items():
                    best[channel_id] = max(best.get(channel_id, 0.0), weight * factor)
        scores = best if scores is None else {c: s + best[c] for c, s in scores.items() if c in best}
    return scores or {}


def live_bonus(viewers: int) -> float:
    """What being live with ``viewers`` adds to a score."""
    return LIVE_BOOST + math.log10(1 + max(0, viewers))


def rank(docs: Iterable[SearchDoc], scores: Mapping[str, float], viewers: Mapping[str, int],
         live_only: bool, limit: int) -> list[dict[str, Any]]:
    """``GET /v1/search`` results: best score first, then by channel name.

    ``viewers`` is keyed by stream id; a live stream missing from it has 0.
    """
    ranked: list[tuple[float, str, str, dict[str, Any]]] = []
    for doc in docs:
        if doc.channel_id not in scores or (live_only and not doc.live):
            continue
        audience = viewers.get(doc.stream_id, 0) if doc.stream_id is not None else 0
        score = round(scores[doc.channel_id] + (live_bonus(audience) if doc.live else 0.0), 3)
        ranked.append((-score, doc.channel_name.casefold(), doc.channel_id, {
            "channel_id": doc.channel_id, "channel_name": doc.channel_name, "title": doc.title,
            "category": doc.category, "tags": list(doc.tags), "live": doc.live, "stream_id": doc.stream_id,
            "viewers": audience, "score": score}))
    ranked.sort(key=lambda r: r[:3])
    return [r[3] for r in ranked[:limit]]

"""Recommendations for a signed-in viewer: which live streams to show, in which order (pure).

The inputs are read elsewhere: the live streams from the directory
(views/discovery.py), the channel-to-channel co-watching table and the
viewer's watch history from the analytics store (views/analytics/cowatch.py),
their follows, the viewers per category, and the channels to leave out.
``seed_weights`` and ``cowatch_scores`` turn follows and history into a
co-watching score per channel; ``rank`` orders the live streams:

1. Channels with a co-watching score, highest first: the audiences of the
   channels the viewer follows and watched also watch these.
2. Then everything else live, by a cold-start score: the popularity of the
   stream's category (its live viewers) and of the stream itself, both on a
   log scale so one huge stream does not drown its category's smaller ones.
   A viewer with no history and no follows gets only this list.

Never listed: a channel the viewer follows (it is on the followed rail), one
whose chat banned them, their own channel, and any channel twice.  Ties break
on viewers, then stream id, so the same inputs always give the same list.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from views.analytics.cowatch import DEFAULT_TUNING, CowatchTuning
from views.directory import DirectoryEntry, category_key

COWATCH: Final = "cowatch"
POPULAR: Final = "popular"
Reason = Literal["cowatch", "popular"]


@dataclass(frozen=True)
class Recommendation:
    """One live stream recommended, with its score and why (``cowatch`` or ``popular``)."""

    entry: DirectoryEntry
    score: float
    reason: Reason

    def public(self) -> dict[str, Any]:
        """The item as ``GET /v1/recommendations`` lists it: the directory's fields plus score and reason."""
        return {**self.entry.public(), "score": round(self.score, 6), "reason": self.reason}


def seed_weights(history: Mapping[str, int], follows: Iterable[str],
                 tuning: CowatchTuning = DEFAULT_TUNING) -> dict[str, float]:
    """The viewer's co-watching seeds: watched channels by how long (in heartbeats), followed ones in full."""
    seeds = {channel: tuning.history_weight_of(beats) for channel, beats in history.items()}
    for channel in follows:
        seeds[channel] = max(seeds.get(channel, 0.0), tuning.follow_weight)
    return seeds


def cowatch_scores(seeds: Mapping[str, float], neighbours: Mapping[str, Mapping[str, float]],
                   candidates: Collection[str]) -> dict[str, float]:
    """Each candidate's score: the sum over seeds of seed weight x cosine (views/analytics/cowatch.py)."""
    scores: dict[str, float] = {}
    for seed, weight in seeds.items():
        for item, likeness in neighbours.get(seed, {}).items():
            if item != seed and item in candidates:
                scores[item] = scores.get(item, 0.0) + weight * likeness
    return {item: score for item, score in scores.items() if score > 0}


def popularity(entry: DirectoryEntry, category_viewers: Mapping[str, int]) -> float:
    """The cold-start score of a live stream: log-scaled viewers of its category plus its own."""
    key = category_key(entry.category)
    in_category = category_viewers.get(key, 0) if key is not None else 0
    return math.log1p(max(0, in_category)) + math.log1p(max(0, entry.viewers))


def one_per_channel(live: Iterable[DirectoryEntry]) -> list[DirectoryEntry]:
    """The live entries with at most one per channel (the most watched, then the newest)."""
    best: dict[str, DirectoryEntry] = {}
    for entry in live:
        seen = best.get(entry.channel_id)
        if seen is None or (entry.viewers, entry.started_at_ms, entry.stream_id) > (
                seen.viewers, seen.started_at_ms, seen.stream_id):
            best[entry.channel_id] = entry
    return list(best.values())


def rank(live: Iterable[DirectoryEntry], cowatch: Mapping[str, float], category_viewers: Mapping[str, int],
         excluded: Collection[str], limit: int) -> list[Recommendation]:
    """Up to ``limit`` live streams for one viewer: co-watched channels first, then the popular ones.

    ``cowatch`` maps channel id to the viewer's co-watching score,
    ``category_viewers`` a category key to its live viewers, and ``excluded``
    holds the channel ids never to list (followed, banned from, owned).
    """
    if limit <= 0:
        return []
    picks: list[Recommendation] = []
    for entry in one_per_channel(live):
        if entry.channel_id in excluded:
            continue
        score = cowatch.get(entry.channel_id, 0.0)
        if math.isfinite(score) and score > 0:
            picks.append(Recommendation(entry, score, COWATCH))
        else:
            picks.append(Recommendation(entry, popularity(entry, category_viewers), POPULAR))
    picks.sort(key=lambda r: (r.reason != COWATCH, -r.score, -r.entry.viewers, r.entry.stream_id))
    return picks[:limit]

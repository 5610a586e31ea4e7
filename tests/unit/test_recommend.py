"""The recommendation ranking (views/recommend.py): co-watched first, cold start by popularity, exclusions."""

from __future__ import annotations

import math

from views.analytics.cowatch import CowatchTuning
from views.directory import DirectoryEntry
from views.recommend import COWATCH, POPULAR, cowatch_scores, one_per_channel, popularity, rank, seed_weights


def entry(channel: str, viewers: int = 0, category: str | None = None, stream: str | None = None,
          started: int = 1) -> DirectoryEntry:
    return DirectoryEntry(stream_id=stream or f"s-{channel}", channel_id=channel, channel_name=channel,
                          title=f"{channel} live", category=category, tags=(), viewers=viewers,
                          started_at_ms=started)


def ids(picks: list) -> list[str]:  # type: ignore[type-arg]
    return [p.entry.channel_id for p in picks]


def test_cowatched_channels_come_first_by_score_then_popular_ones() -> None:
    live = [entry("big", 5000, "Games"), entry("a", 3), entry("b", 10), entry("mid", 100, "Music")]
    picks = rank(live, {"a": 0.9, "b": 0.4}, {"games": 5000, "music": 100}, set(), 10)
    assert ids(picks) == ["a", "b", "big", "mid"]
    assert [p.reason for p in picks] == [COWATCH, COWATCH, POPULAR, POPULAR]
    assert picks[0].score == 0.9


def test_cold_start_weighs_category_popularity_and_stream_viewers() -> None:
    # A small stream in a big category can beat a bigger stream in a small one, on a log scale.
    live = [entry("lonely", 50, "Niche"), entry("small-in-big", 20, "Just Chatting"), entry("none", 0)]
    category_viewers = {"niche": 50, "just chatting": 40_000}
    picks = rank(live, {}, category_viewers, set(), 10)
    assert ids(picks) == ["small-in-big", "lonely", "none"]
    assert picks[0].score == math.log1p(40_000) + math.log1p(20)
    assert popularity(entry("x", 0, None), category_viewers) == 0.0


def test_excluded_channels_are_never_listed_even_when_cowatched() -> None:
    live = [entry("followed", 10), entry("banned", 10), entry("mine", 10), entry("ok", 1)]
    picks = rank(live, {"followed": 1.0, "banned": 1.0, "mine": 1.0}, {}, {"followed", "banned", "mine"}, 10)
    assert ids(picks) == ["ok"]


def test_a_channel_is_listed_once_and_the_limit_holds() -> None:
    live = [entry("a", 5, stream="s1"), entry("a", 9, stream="s2"), entry("b", 1), entry("c", 2)]
    assert [e.stream_id for e in one_per_channel(live)] == ["s2", "s-b", "s-c"]
    picks = rank(live, {"a": 0.1}, {}, set(), 2)
    assert ids(picks) == ["a", "c"]
    assert picks[0].entry.stream_id == "s2"
    assert rank(live, {}, {}, set(), 0) == []


def test_ties_break_on_viewers_then_stream_id_and_bad_scores_fall_back() -> None:
    live = [entry("x", 1, stream="s-2"), entry("y", 1, stream="s-1"), entry("z", 7), entry("n", 0)]
    picks = rank(live, {"x": 0.5, "y": 0.5, "z": 0.5, "n": math.nan}, {}, set(), 10)
    assert ids(picks) == ["z", "y", "x", "n"]
    assert picks[-1].reason == POPULAR
    assert rank(list(reversed(live)), {"x": 0.5, "y": 0.5, "z": 0.5}, {}, set(), 10) == rank(
        live, {"x": 0.5, "y": 0.5, "z": 0.5}, {}, set(), 10)


def test_public_item_is_the_directory_entry_plus_score_and_reason() -> None:
    pick = rank([entry("a", 3, "Games")], {"a": 0.123456789}, {}, set(), 1)[0]
    body = pick.public()
    assert body["channel_id"] == "a" and body["viewers"] == 3 and body["thumbnail_url"] == "/thumbs/s-a.jpg"
    assert body["score"] == 0.123457 and body["reason"] == "cowatch"


def test_seeds_weigh_follows_in_full_and_watching_by_how_long() -> None:
    tuning = CowatchTuning(min_beats=2, full_beats=60, follow_weight=1.0, history_weight=1.0)
    seeds = seed_weights({"long": 600, "full": 60, "short": 2, "both": 2}, ["followed", "both"], tuning)
    assert seeds["long"] == seeds["full"] == 1.0 == seeds["followed"] == seeds["both"]
    assert seeds["short"] == math.log(3) / math.log(61)


def test_cowatch_scores_sum_seed_weight_times_likeness_over_candidates_only() -> None:
    table = {"A": {"B": 0.5, "C": 0.2, "A": 1.0}, "F": {"B": 0.1, "D": 0.9}}
    scores = cowatch_scores({"A": 0.5, "F": 1.0, "unknown": 1.0}, table, {"A", "B", "C"})
    assert scores == {"B": 0.5 * 0.5 + 0.1, "C": 0.5 * 0.2}
    assert cowatch_scores({}, table, {"B"}) == {}

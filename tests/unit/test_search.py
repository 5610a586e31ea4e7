"""Tokens, search documents and ranking (views/search.py), without Valkey."""

from __future__ import annotations

import pytest

from views.channels import ChannelView
from views.search import (
    CATEGORY_WEIGHT,
    EXACT_FACTOR,
    MAX_QUERY_LENGTH,
    MAX_TOKEN_LENGTH,
    NAME_WEIGHT,
    PREFIX_FACTOR,
    TAG_WEIGHT,
    TITLE_WEIGHT,
    SearchDoc,
    build_doc,
    live_bonus,
    match_factor,
    normalize,
    prefix_range,
    query_tokens,
    rank,
    text_scores,
    tokenize,
)
from views.streams import CONFIGURED, ENDED, LIVE, StreamView

CHANNEL = "7d8a0b8e-54a6-4b43-9d4c-6f1f0b9b2a11"
STREAM = "0f3c2a55-1b7e-4d0f-a7a4-2f5c9d1e8b30"


def channel(**changes: object) -> ChannelView:
    base: dict[str, object] = {
        "id": CHANNEL, "name": "Speedy_Runner", "owner_user_id": "u1", "title": "Chill art", "category": "Art",
        "tags": ("cozy",), "stream_key_hash": "a" * 64, "created_at_ms": 1, "updated_at_ms": 1, "seq": 0}
    return ChannelView(**{**base, **changes})  # type: ignore[arg-type]


def stream(status: str = LIVE, channel_id: str = CHANNEL) -> StreamView:
    return StreamView(id=STREAM, channel_id=channel_id, seq=3, status=status, started_at_ms=1_790_000_000_000,
                      title="Pokémon any% practice", category="Games", tags=("speedrun",))


def doc(channel_id: str, name: str, stream_id: str | None = None) -> SearchDoc:
    return SearchDoc(channel_id=channel_id, channel_name=name, title="t", category=None, tags=(),
                     stream_id=stream_id, tokens={})


def test_tokens_are_normalised_words() -> None:
    assert tokenize("Speedy_Runner plays GTA-5!") == ["speedy", "runner", "plays", "gta", "5"]
    assert tokenize("Pokémon Café") == ["pokemon", "cafe"]
    assert tokenize("ＦＵＬＬ ｗｉｄｔｈ") == ["full", "width"]  # NFKC
    assert tokenize("Straße STRASSE") == ["strasse"]  # case-folding, then duplicates drop
    assert tokenize("Ελληνικά ёлка") == ["ελληνικά", "ёлка"]  # only Latin accents fold: ά and ё stay
    assert tokenize("日本語の配信") == ["日本語の配信"]
    assert tokenize("x" * 100) == ["x" * MAX_TOKEN_LENGTH]
    assert tokenize("") == [] and tokenize(None) == [] and tokenize("?! -- __") == []
    assert normalize("ÉCOLE") == "ecole"


def test_queries_are_checked() -> None:
    assert query_tokens("  Speedy  RUN ") == ["speedy", "run"]
    for q, message in [("", "empty"), ("   ", "empty"), ("x" * (MAX_QUERY_LENGTH + 1), "longer than"),
                       ("?!", "no letters or digits"), ("a b c d e f g h i", "more than 8 words")]:
        with pytest.raises(ValueError, match=message):
            query_tokens(q)


def test_prefix_range_covers_exactly_the_tokens_starting_with_it() -> None:
    low, high = prefix_range("spe")
    inside = [t.encode() for t in ("spe", "speed", "speedy", "spe日本")]
    outside = [t.encode() for t in ("sp", "spf", "sod", "tspe")]
    assert all(low[1:] <= t <= high[1:] for t in inside)
    assert not any(low[1:] <= t <= high[1:] for t in outside)
    assert low.startswith(b"[") and high.startswith(b"[")


def test_an_offline_channel_document_has_the_channel_fields() -> None:
    d = build_doc(channel(), None)
    assert d is not None and not d.live and d.stream_id is None
    assert (d.title, d.category, d.tags) == ("Chill art", "Art", ("cozy",))
    assert d.tokens == {"speedy": NAME_WEIGHT, "runner": NAME_WEIGHT, "chill": TITLE_WEIGHT, "art": TITLE_WEIGHT,
                        "cozy": TAG_WEIGHT}
    assert SearchDoc.from_json(d.to_json()) == d
    assert build_doc(None, stream()) is None


def test_a_live_channel_document_adds_the_stream_and_shows_it() -> None:
    d = build_doc(channel(), stream())
    assert d is not None and d.live and d.stream_id == STREAM
    assert (d.title, d.category, d.tags) == ("Pokémon any% practice", "Games", ("speedrun",))
    assert d.tokens["pokemon"] == TITLE_WEIGHT and d.tokens["games"] == CATEGORY_WEIGHT
    assert d.tokens["speedrun"] == TAG_WEIGHT and d.tokens["cozy"] == TAG_WEIGHT  # the channel's stay
    for status in (CONFIGURED, ENDED):
        assert build_doc(channel(), stream(status)) == build_doc(channel(), None)
    assert build_doc(channel(), stream(channel_id="other")) == build_doc(channel(), None)


def test_matches_are_whole_tokens_or_prefixes_of_two_characters_or_more() -> None:
    assert match_factor("speedy", "speedy") == EXACT_FACTOR
    assert match_factor("spe", "speedy") == PREFIX_FACTOR
    assert match_factor("s", "speedy") == 0.0 and match_factor("s", "s") == EXACT_FACTOR
    assert match_factor("speedyx", "speedy") == 0.0


def test_every_query_token_must_match_and_the_best_match_counts() -> None:
    postings = {"speedy": {"a": NAME_WEIGHT}, "speedrun": {"a": TAG_WEIGHT, "b": TAG_WEIGHT},
                "art": {"a": TITLE_WEIGHT}, "speed": {"c": TITLE_WEIGHT}}
    assert text_scores(["speed"], postings) == {
        "a": NAME_WEIGHT * PREFIX_FACTOR, "b": TAG_WEIGHT * PREFIX_FACTOR, "c": TITLE_WEIGHT * EXACT_FACTOR}
    assert text_scores(["speed", "art"], postings) == {"a": NAME_WEIGHT * PREFIX_FACTOR + TITLE_WEIGHT}
    assert text_scores(["nothing"], postings) == {}
    assert text_scores([], postings) == {}


def test_live_channels_rank_above_offline_and_bigger_audiences_first() -> None:
    docs = [doc("off", "offline"), doc("small", "small", "s1"), doc("big", "big", "s2"), doc("idle", "idle", "s3")]
    scores = {"off": 4.0, "small": 4.0, "big": 4.0, "idle": 4.0}
    results = rank(docs, scores, {"s1": 10, "s2": 1000}, live_only=False, limit=10)
    assert [r["channel_id"] for r in results] == ["big", "small", "idle", "off"]
    assert results[0]["score"] == round(4.0 + live_bonus(1000), 3) and results[0]["viewers"] == 1000
    assert results[2]["viewers"] == 0 and results[3] == {
        "channel_id": "off", "channel_name": "offline", "title": "t", "category": None, "tags": [], "live": False,
        "stream_id": None, "viewers": 0, "score": 4.0}
    assert [r["channel_id"] for r in rank(docs, scores, {}, live_only=True, limit=2)] == ["big", "idle"]
    assert rank(docs, {"off": 1.0}, {}, live_only=True, limit=10) == []


def test_ties_are_broken_by_channel_name() -> None:
    docs = [doc("b", "Bravo"), doc("a", "alpha")]
    assert [r["channel_name"] for r in rank(docs, {"a": 1.0, "b": 1.0}, {}, False, 10)] == ["alpha", "Bravo"]

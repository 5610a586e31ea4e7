"""The co-watching SQL (views/analytics/cowatch.py) on chDB, through the tables of views/analytics/tables.py.

Heartbeats go into the raw table, so the heartbeat sessions the SQL reads are
the ones the materialised view makes from them, as on the platform.
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from views.analytics import cowatch
from views.analytics.chdb_store import ChdbStore
from views.analytics.errors import QueryRefused
from views.analytics.tables import HEARTBEATS, ddl
from views.recommend import cowatch_scores, seed_weights

NOW = 1_800_000_000_000
DAY = 86_400_000


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ChdbStore]:
    s = ChdbStore(str(tmp_path / "analytics"))
    for statement in ddl(30):
        await s.query(statement)
    yield s
    await s.close()


class Log:
    """Heartbeat rows to insert: ``watch(user, channel, beats)`` is one session of ``beats`` beats."""

    def __init__(self) -> None:
        self.rows: list[list[object]] = []

    def watch(self, user: str, channel: str, beats: int = 6, at: int = NOW - 3_600_000,
              playback: str = "LIVE") -> Log:
        session = f"{user}/{channel}/{len(self.rows)}"
        for n in range(beats):
            self.rows.append([at + n * 10_000, channel, f"{channel}-stream", session, user, "source", 3.0, 3000,
                              2000, 0, playback, "", 0, len(self.rows)])
        return self

    def audience(self, channel: str, users: list[str], beats: int = 6) -> Log:
        for user in users:
            self.watch(user, channel, beats)
        return self

    async def load(self, store: ChdbStore) -> None:
        await store.insert(HEARTBEATS.name, HEARTBEATS.columns, self.rows)


def users(*numbers: int) -> list[str]:
    return [f"u{n}" for n in numbers]


async def test_score_is_the_cosine_over_co_viewers_not_the_raw_count(store: ChdbStore) -> None:
    # A: u1-u4 and me; B: u1, u2; C: u3-u11.  B and C each share two viewers with A, but C is popular.
    log = Log().audience("A", users(1, 2, 3, 4)).audience("B", users(1, 2)).audience("C", users(*range(3, 12)))
    await log.watch("me", "A", beats=60).load(store)
    scores = await cowatch.scores_for_viewer(store, "me", [], ["A", "B", "C"], NOW, 10)
    # |A| = 5 (me included), co-viewers: 2; my weight on A is full (60 beats).
    assert scores["B"] == pytest.approx(2 / math.sqrt(5 * 2))
    assert scores["C"] == pytest.approx(2 / math.sqrt(5 * 9))
    assert scores["B"] > scores["C"]
    assert "A" not in scores  # a channel is not like itself


async def test_follows_seed_and_a_short_watch_weighs_less(store: ChdbStore) -> None:
    log = Log().audience("A", users(1, 2)).audience("B", users(1, 2)).audience("F", users(3, 4))
    await log.audience("G", users(3, 4)).watch("me", "A", beats=2).load(store)
    scores = await cowatch.scores_for_viewer(store, "me", ["F"], ["B", "G"], NOW, 10)
    assert scores["G"] == pytest.approx(1.0)  # followed F: weight 1, cos(F, G) = 1
    assert 0 < scores["B"] < 0.5  # watched A for 2 beats only: log(3) / log(61) of the weight


async def test_only_signed_in_live_watching_long_enough_in_the_window_counts(store: ChdbStore) -> None:
    log = Log().audience("A", users(1, 2)).watch("me", "A")
    log.watch("", "A").watch("", "B")  # anonymous viewers link nothing
    log.watch("u1", "Zap", beats=1)  # zapped past: under min_beats
    log.watch("u1", "Vod", playback="VOD")  # a past broadcast is not live watching
    log.watch("u2", "Old", at=NOW - 40 * DAY)  # before the 30-day window
    await log.watch("u2", "Fresh").load(store)
    scores = await cowatch.scores_for_viewer(store, "me", [], ["B", "Zap", "Vod", "Old", "Fresh"], NOW, 10)
    assert set(scores) == {"Fresh"}


async def test_only_candidates_are_scored_and_the_limit_holds(store: ChdbStore) -> None:
    log = Log().watch("me", "A")
    for n, channel in enumerate(["B", "C", "D", "E"]):
        log.audience("A", [f"v{n}"]).watch(f"v{n}", channel)
    await log.load(store)
    assert set(await cowatch.scores_for_viewer(store, "me", [], ["B", "C", "D"], NOW, 10)) == {"B", "C", "D"}
    assert len(await cowatch.scores_for_viewer(store, "me", [], ["B", "C", "D"], NOW, 2)) == 2
    assert await cowatch.scores_for_viewer(store, "me", [], [], NOW, 10) == {}
    assert await cowatch.scores_for_viewer(store, "nobody", [], ["B"], NOW, 10) == {}


async def test_every_viewer_lists_leave_out_what_each_watched(store: ChdbStore) -> None:
    log = Log().audience("A", users(1, 2, 3)).audience("B", users(1, 2, 3)).audience("C", users(1, 2))
    await log.audience("P", users(4, 5, 6, 7)).watch("me", "A").load(store)
    ours = await cowatch.top_for_every_viewer(store, NOW, 10)
    assert ours["me"][:2] == ["B", "C"] and "A" not in ours["me"] and "P" not in ours["me"]
    assert ours["u3"] == ["C"]
    popular = await cowatch.popular_for_every_viewer(store, NOW, 2)
    assert popular["me"] == ["P", "B"]  # most distinct viewers first, minus A
    assert popular["u4"] == ["A", "B"]


async def test_the_cached_table_and_history_give_the_same_scores_as_the_sql(store: ChdbStore) -> None:
    """The gateway's path (NEIGHBOURS once, HISTORY per viewer, summed in Python) equals FOR_VIEWER."""
    rng = random.Random(7)
    channels = [f"ch{i}" for i in range(12)]
    log = Log()
    for v in range(40):
        for channel in rng.sample(channels[:6] if v % 2 else channels[6:], 3) + rng.sample(channels, 1):
            log.watch(f"v{v}", channel, beats=rng.randint(1, 80), at=NOW - rng.randint(1, 40) * DAY)
    await log.load(store)
    table = await cowatch.neighbours(store, NOW, per_channel=len(channels))
    for viewer, follows in (("v1", []), ("v2", ["ch0"]), ("v7", ["ch3", "ch9"]), ("nobody", ["ch5"])):
        expected = await cowatch.scores_for_viewer(store, viewer, follows, channels, NOW, len(channels))
        watched = await cowatch.history(store, viewer, NOW)
        got = cowatch_scores(seed_weights(watched, follows), table, set(channels))
        assert got.keys() == expected.keys() and expected, viewer
        for channel, score in expected.items():
            assert got[channel] == pytest.approx(score), (viewer, channel)


async def test_the_neighbour_table_is_kept_until_stale_and_survives_a_failed_refresh(store: ChdbStore) -> None:
    await Log().audience("A", users(1, 2)).audience("B", users(1, 2)).load(store)
    now = [0.0]
    cache = cowatch.NeighbourCache(store, refresh_s=60, clock=lambda: now[0])
    assert (await cache.get(NOW)) == {"A": {"B": pytest.approx(1.0)}, "B": {"A": pytest.approx(1.0)}}
    await Log().audience("C", users(1, 2)).load(store)
    now[0] = 59
    assert "C" not in await cache.get(NOW)  # still fresh: not computed again
    now[0] = 61
    assert set(await cache.get(NOW)) == {"A", "B", "C"}
    await store.query("DROP TABLE watch_sessions_mv")
    await store.query("DROP TABLE watch_sessions")
    now[0] = 200
    assert set(await cache.get(NOW)) == {"A", "B", "C"}  # the store refuses: the last table stays
    with pytest.raises(QueryRefused):
        await cowatch.NeighbourCache(store).get(NOW)  # and with no table yet, the error shows


def test_channel_ids_travel_as_one_comma_separated_parameter() -> None:
    assert cowatch.id_list(["a", "b"]) == "a,b"
    with pytest.raises(ValueError, match="comma"):
        cowatch.id_list(["a,b"])

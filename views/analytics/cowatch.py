"""Co-watching between channels, in ClickHouse SQL over the heartbeat sessions (the recommender's data half).

Item-to-item: two channels are alike when the same signed-in viewers watch
both.  A viewer *watched* a channel when their LIVE heartbeat sessions on it
that still beat after ``since_ms`` hold at least ``min_beats`` beats (a beat
is every few seconds, so a channel zapped past counts for nothing).  The likeness of channels A and B is
the cosine over their sets of distinct viewers:

    cos(A, B) = |viewers(A) & viewers(B)| / sqrt(|viewers(A)| * |viewers(B)|)

which, unlike a raw co-viewer count, does not make every channel look like the
most popular one.  A viewer's score for channel C sums cos(S, C) over their
seeds S (the channels they follow, weight ``follow_weight``, and the ones they
watched, weight up to ``history_weight`` growing with how long they watched),
so a channel liked by the audiences of several of their channels ranks first.

One definition of *watched* and of the cosine serves every statement:

* ``NEIGHBOURS``: each channel's most alike channels, the table the gateway
  keeps in memory (``NeighbourCache``) and sums per request with the
  viewer's ``HISTORY`` (views/recommend.py, ``cowatch_scores``); one
  indexed read per request instead of a self-join of every session.
* ``FOR_VIEWER``: the same scores all in SQL, for one viewer: what the
  cached path must equal (tests/unit/test_recommend_sql.py), and the
  statement a contract suite can run against a ClickHouse server.
* ``FOR_EVERY_VIEWER``: the top ``k`` channels for every viewer at once,
  leaving out what each already watched (the offline evaluation,
  bench/recommendations.py).
* ``POPULAR_FOR_EVERY_VIEWER``: the popularity-only baseline: the channels
  with most distinct viewers, minus what each viewer already watched.

The SQL is plain ClickHouse and runs through any ``AnalyticsStore`` (chDB or a
server), with every value bound as a ``{name:Type}`` parameter; a list of
channel ids travels as one comma-separated ``String`` (``id_list``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from views.analytics.errors import AnalyticsError
from views.analytics.store import AnalyticsStore

log = logging.getLogger("glasscast.analytics.cowatch")

DAY_MS = 86_400_000


@dataclass(frozen=True)
class CowatchTuning:
    """The knobs of the co-watching score (defaults suit a 10 s heartbeat)."""

    lookback_days: int = 30  # how far back watching counts (the raw heartbeats' default retention)
    min_beats: int = 2  # heartbeats that make a (viewer, channel) pair "watched"
    full_beats: int = 60  # heartbeats at which a watched channel's seed weight stops growing (10 minutes)
    follow_weight: float = 1.0
    history_weight: float = 1.0

    def since_ms(self, now_ms: int) -> int:
        return max(0, now_ms - self.lookback_days * DAY_MS)

    def history_weight_of(self, beats: int) -> float:
        """A watched channel's seed weight, as ``_HISTORY_WEIGHT`` computes it in SQL."""
        full = max(self.full_beats, self.min_beats + 1)
        return self.history_weight * min(1.0, math.log(1 + max(0, beats)) / math.log(1 + full))

    def params(self, now_ms: int) -> dict[str, object]:
        return {"since_ms": self.since_ms(now_ms), "min_beats": self.min_beats, "full_beats": self.full_beats,
                "history_weight": self.history_weight}


DEFAULT_TUNING = CowatchTuning()

# Every (viewer, channel) pair watched long enough, and how long (in heartbeats), from the heartbeat sessions
# (``watch_sessions``, views/analytics/tables.py): an aggregate that outlives the raw heartbeats' TTL.  Its rows
# are merged in the background, so the inner GROUP BY finishes the merge of each session.
_WATCHED = """
watched AS (
    SELECT user_id, channel_id, sum(session_beats) AS beats
    FROM (
        SELECT channel_id, stream_id, session_id, max(user_id) AS user_id, max(last_at) AS session_last,
               sum(beats) AS session_beats
        FROM watch_sessions
        WHERE playback = 'LIVE'
        GROUP BY channel_id, stream_id, session_id
    )
    WHERE user_id != '' AND session_last >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC')
    GROUP BY user_id, channel_id
    HAVING beats >= {min_beats:UInt32}
),
audience AS (
    SELECT channel_id AS audience_channel, toFloat64(count()) AS audience_size
    FROM watched
    GROUP BY channel_id
)"""

# A watched channel's weight as a seed: from a little (min_beats) up to history_weight at full_beats.
_HISTORY_WEIGHT = ("{history_weight:Float64} * least(1.0, log(1 + beats) / log(1 + greatest({full_beats:UInt32}, "
                   "{min_beats:UInt32} + 1)))")

# How alike every two channels watched by someone in common are: co-viewers over the cosine's denominator.
_COSINE = """
similar AS (
    SELECT s.channel_id AS seed_channel, w.channel_id AS item, toFloat64(count()) AS co_viewers
    FROM watched AS s
    INNER JOIN watched AS w ON w.user_id = s.user_id
    WHERE w.channel_id != s.channel_id
    GROUP BY seed_channel, item
),
cosine AS (
    SELECT similar.seed_channel AS seed_channel, similar.item AS item,
           similar.co_viewers / sqrt(a.audience_size * b.audience_size) AS likeness
    FROM similar
    INNER JOIN audience AS a ON a.audience_channel = similar.seed_channel
    INNER JOIN audience AS b ON b.audience_channel = similar.item
)"""

NEIGHBOURS = f"""
WITH {_WATCHED},
{_COSINE}
SELECT seed_channel, item, likeness
FROM cosine
ORDER BY seed_channel, likeness DESC, item
LIMIT {{per_channel:UInt32}} BY seed_channel
"""

HISTORY = """
SELECT channel_id, sum(session_beats) AS beats
FROM (
    SELECT channel_id, stream_id, session_id, max(last_at) AS session_last, sum(beats) AS session_beats
    FROM watch_sessions
    WHERE playback = 'LIVE' AND user_id = {viewer:String}
    GROUP BY channel_id, stream_id, session_id
)
WHERE session_last >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC')
GROUP BY channel_id
HAVING beats >= {min_beats:UInt32}
ORDER BY channel_id
"""

FOR_VIEWER = f"""
WITH {_WATCHED},
seeds AS (
    SELECT seed_channel, max(weight) AS seed_weight FROM (
        SELECT channel_id AS seed_channel, {_HISTORY_WEIGHT} AS weight
        FROM watched WHERE user_id = {{viewer:String}}
        UNION ALL
        SELECT arrayJoin(splitByChar(',', {{follows:String}})) AS seed_channel, {{follow_weight:Float64}} AS weight
    )
    WHERE seed_channel != ''
    GROUP BY seed_channel
),
{_COSINE}
SELECT cosine.item AS item, sum(seeds.seed_weight * cosine.likeness) AS score
FROM cosine
INNER JOIN seeds ON seeds.seed_channel = cosine.seed_channel
WHERE has(splitByChar(',', {{candidates:String}}), cosine.item)
GROUP BY item
ORDER BY score DESC, item
LIMIT {{limit:UInt32}}
"""

FOR_EVERY_VIEWER = f"""
WITH {_WATCHED},
{_COSINE},
scored AS (
    SELECT h.user_id AS viewer, cosine.item AS item, sum({_HISTORY_WEIGHT} * cosine.likeness) AS score
    FROM watched AS h
    INNER JOIN cosine ON cosine.seed_channel = h.channel_id
    GROUP BY viewer, item
)
SELECT viewer, item, score
FROM scored
WHERE (viewer, item) NOT IN (SELECT user_id, channel_id FROM watched)
ORDER BY viewer, score DESC, item
LIMIT {{k:UInt32}} BY viewer
"""

POPULAR_FOR_EVERY_VIEWER = f"""
WITH {_WATCHED},
popular AS (
    SELECT audience_channel AS item, audience_size FROM audience
    ORDER BY audience_size DESC, item
    LIMIT {{pool:UInt32}}
)
SELECT viewer, item, audience_size AS score
FROM (SELECT DISTINCT user_id AS viewer FROM watched) AS viewers
CROSS JOIN popular
WHERE (viewer, item) NOT IN (SELECT user_id, channel_id FROM watched)
ORDER BY viewer, score DESC, item
LIMIT {{k:UInt32}} BY viewer
"""


def id_list(ids: Sequence[str]) -> str:
    """Channel ids as one comma-separated parameter (``splitByChar`` in the SQL).

    One ``String`` binds the same way through chDB, a ClickHouse server and the
    analytics service; ids are UUIDs, so a comma never occurs in one (refused if it does).
    """
    for i in ids:
        if "," in i:
            raise ValueError(f"a channel id holds a comma: {i!r}")
    return ",".join(ids)


def _score(value: object) -> float:
    score = float(value) if isinstance(value, (int, float, str)) else 0.0
    return score if math.isfinite(score) else 0.0


async def scores_for_viewer(store: AnalyticsStore, viewer_id: str, follows: Sequence[str],
                            candidates: Sequence[str], now_ms: int, limit: int,
                            tuning: CowatchTuning = DEFAULT_TUNING) -> dict[str, float]:
    """The co-watching score of each candidate channel for one viewer (channels with none are absent)."""
    if not candidates or limit <= 0:
        return {}
    result = await store.query(FOR_VIEWER, {
        **tuning.params(now_ms), "viewer": viewer_id, "follows": id_list(follows),
        "follow_weight": tuning.follow_weight, "candidates": id_list(candidates), "limit": limit}, readonly=True)
    return {str(item): _score(score) for item, score in result.rows if _score(score) > 0}


async def neighbours(store: AnalyticsStore, now_ms: int, per_channel: int,
                     tuning: CowatchTuning = DEFAULT_TUNING) -> dict[str, dict[str, float]]:
    """Every watched channel's ``per_channel`` most alike channels and their cosine (``NEIGHBOURS``)."""
    params = {**tuning.params(now_ms), "per_channel": per_channel}
    params.pop("history_weight")
    params.pop("full_beats")
    result = await store.query(NEIGHBOURS, params, readonly=True)
    out: dict[str, dict[str, float]] = {}
    for seed, item, likeness in result.rows:
        out.setdefault(str(seed), {})[str(item)] = _score(likeness)
    return out


async def history(store: AnalyticsStore, viewer_id: str, now_ms: int,
                  tuning: CowatchTuning = DEFAULT_TUNING) -> dict[str, int]:
    """The channels one viewer watched long enough, and for how many heartbeats (``HISTORY``)."""
    result = await store.query(HISTORY, {"viewer": viewer_id, "since_ms": tuning.since_ms(now_ms),
                                         "min_beats": tuning.min_beats}, readonly=True)
    return {str(channel): int(str(beats)) for channel, beats in result.rows}


class NeighbourCache:
    """``neighbours`` kept in memory and computed again once ``refresh_s`` old, one computation at a time.

    Which channels are alike moves slowly (it sums weeks of watching), while
    a viewer's own history is one small indexed read: so the gateway computes
    the channel-to-channel table once per ``refresh_s`` and each request only
    reads the viewer's history and sums (views/recommend.py,
    ``cowatch_scores``).  A refresh that fails keeps the table it had, and
    raises only when there is none yet.
    """

    def __init__(self, store: AnalyticsStore, tuning: CowatchTuning = DEFAULT_TUNING, refresh_s: float = 300.0,
                 per_channel: int = 100, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.tuning = tuning
        self.refresh_s = refresh_s
        self.per_channel = per_channel
        self.clock = clock
        self.table: dict[str, dict[str, float]] | None = None
        self.computed_at = 0.0
        self._lock = asyncio.Lock()

    def fresh(self) -> bool:
        return self.table is not None and self.clock() - self.computed_at < self.refresh_s

    async def get(self, now_ms: int) -> Mapping[str, Mapping[str, float]]:
        """The table, computed again first when it is older than ``refresh_s``."""
        if self.fresh():
            assert self.table is not None
            return self.table
        async with self._lock:
            if not self.fresh():  # another request may have refreshed it while this one waited
                try:
                    self.table = await neighbours(self.store, now_ms, self.per_channel, self.tuning)
                    self.computed_at = self.clock()
                except AnalyticsError:
                    if self.table is None:
                        raise
                    log.warning("co-watching table not refreshed; the one from %.0f s ago stays",
                                self.clock() - self.computed_at, exc_info=True)
                    self.computed_at = self.clock() - self.refresh_s / 2  # try again in a while, not each request
            assert self.table is not None
            return self.table


async def top_for_every_viewer(store: AnalyticsStore, now_ms: int, k: int,
                               tuning: CowatchTuning = DEFAULT_TUNING) -> dict[str, list[str]]:
    """Every viewer's ``k`` best channels by co-watching, leaving out those they watched."""
    result = await store.query(FOR_EVERY_VIEWER, {**tuning.params(now_ms), "k": k}, readonly=True)
    return _lists(result.rows)


async def popular_for_every_viewer(store: AnalyticsStore, now_ms: int, k: int,
                                   tuning: CowatchTuning = DEFAULT_TUNING) -> dict[str, list[str]]:
    """Every viewer's ``k`` most watched channels overall, leaving out those they watched (the baseline)."""
    params = {**tuning.params(now_ms), "k": k, "pool": 4 * k + 64}
    params.pop("history_weight")
    params.pop("full_beats")
    result = await store.query(POPULAR_FOR_EVERY_VIEWER, params, readonly=True)
    return _lists(result.rows)


def _lists(rows: Sequence[Sequence[object]]) -> dict[str, list[str]]:
    lists: dict[str, list[str]] = {}
    for viewer, item, _ in rows:
        lists.setdefault(str(viewer), []).append(str(item))
    return lists

"""Recommendation quality offline: hit rate at 10 of co-watching against a popularity-only baseline.

A synthetic watch log with known taste clusters (``--clusters`` x
``--per-cluster`` channels, ``--viewers`` signed-in viewers) goes through the
real heartbeats table of an embedded analytics store (chDB, in a temporary
directory), so the co-watching SQL reads it through the same materialised
heartbeat sessions as on the platform:

* every viewer belongs to one cluster and watches ``SESSIONS`` channels, each
  from their own cluster with probability ``IN_CLUSTER`` (the cluster's
  channels are unequally popular, Zipf-like) and otherwise from the whole
  catalogue by global popularity (the noise a popularity baseline thrives on);
  a session is a few to a few dozen heartbeats;
* each viewer's last watched channel is held out: all their sessions on it
  are left out of the log;
* both recommenders run as SQL on chDB (views/analytics/cowatch.py):
  ``FOR_EVERY_VIEWER`` (item-to-item cosine over co-viewers, seeded by the
  viewer's history) and ``POPULAR_FOR_EVERY_VIEWER`` (most distinct viewers),
  each leaving out what the viewer already watched;
* hit rate at 10: the share of viewers whose held-out channel is in their
  top 10.

``measure()`` returns ``hit_rate_at_10``, ``baseline_hit_rate_at_10``,
``ratio`` and ``viewers``; ``main()`` prints them as one JSON line.  The aim is
a ratio of at least 2.  ``bench/analytics.py`` calls ``measure()`` too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.settings import Settings  # noqa: E402
from views.analytics.cowatch import popular_for_every_viewer, top_for_every_viewer  # noqa: E402
from views.analytics.store import AnalyticsStore, open_analytics  # noqa: E402
from views.analytics.tables import HEARTBEATS, ddl  # noqa: E402

K = 10
SESSIONS = (6, 12)  # channels watched per viewer, at random in this range (the last one held out)
BEATS = (2, 24)  # heartbeats per session
IN_CLUSTER = 0.7  # a session's chance to be on a channel of the viewer's own cluster
ZIPF = 1.0  # the skew of channel popularity, within a cluster and overall
BEAT_MS = 10_000
INSERT_ROWS = 100_000  # heartbeats per insert block
SEED = 17


@dataclass(frozen=True)
class WatchLog:
    """The synthetic log: heartbeat rows to load, and each viewer's held-out channel."""

    rows: list[list[object]]
    held_out: dict[str, str]
    cluster_of: dict[str, int]  # channel id -> its cluster


def _zipf_weights(n: int) -> list[float]:
    return [1.0 / (rank + 1) ** ZIPF for rank in range(n)]


def watch_log(clusters: int, per_cluster: int, viewers: int, now_ms: int, seed: int = SEED) -> WatchLog:
    """Generate the log (pure but for its seeded random numbers)."""
    rng = random.Random(seed)
    channels = [[f"c{c:03d}-{i:03d}" for i in range(per_cluster)] for c in range(clusters)]
    cluster_of = {ch: c for c, members in enumerate(channels) for ch in members}
    everyone = [ch for members in channels for ch in members]
    global_order = everyone[:]
    rng.shuffle(global_order)  # global popularity is unrelated to clusters
    global_weights = _zipf_weights(len(global_order))
    local_weights = _zipf_weights(per_cluster)
    rows: list[list[object]] = []
    held_out: dict[str, str] = {}
    offset = 0
    for v in range(viewers):
        user = f"viewer-{v:05d}"
        home = channels[rng.randrange(clusters)]
        watched = []
        for _ in range(rng.randint(*SESSIONS)):
            if rng.random() < IN_CLUSTER:
                watched.append(rng.choices(home, local_weights)[0])
            else:
                watched.append(rng.choices(global_order, global_weights)[0])
        last = watched[-1]
        held_out[user] = last
        at = now_ms - rng.randrange(7 * 86_400_000)
        for n, channel in enumerate(watched):
            at += rng.randrange(60_000, 3_600_000)
            if channel == last:
                continue  # the held-out channel: none of the viewer's sessions on it are in the log
            session = f"{user}-s{n}"
            for beat in range(rng.randint(*BEATS)):
                rows.append([min(at + beat * BEAT_MS, now_ms), channel, f"{channel}-live", session, user,
                             "source", 4.0, 3000, 2000, 0, "LIVE", "", 0, offset])
                offset += 1
    return WatchLog(rows, held_out, cluster_of)


def hit_rate(held_out: dict[str, str], lists: dict[str, list[str]], k: int = K) -> float:
    """The share of viewers whose held-out channel is among the first ``k`` of their list."""
    if not held_out:
        return 0.0
    return sum(1 for user, channel in held_out.items() if channel in lists.get(user, [])[:k]) / len(held_out)


async def load(store: AnalyticsStore, log: WatchLog) -> None:
    for start in range(0, len(log.rows), INSERT_ROWS):
        await store.insert(HEARTBEATS.name, HEARTBEATS.columns, log.rows[start:start + INSERT_ROWS])


async def measure(clusters: int = 20, per_cluster: int = 10, viewers: int = 5000,
                  seed: int = SEED) -> dict[str, float]:
    """Generate, load, recommend for every viewer both ways, and score against the held-out channels."""
    with tempfile.TemporaryDirectory(prefix="glasscast-recs-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        store = open_analytics(settings)
        try:
            for statement in ddl(settings.analytics.retention_days):
                await store.query(statement)
            now_ms = int(time.time() * 1000)
            log = watch_log(clusters, per_cluster, viewers, now_ms, seed)
            await load(store, log)
            ours = await top_for_every_viewer(store, now_ms, K)
            baseline = await popular_for_every_viewer(store, now_ms, K)
        finally:
            await store.close()
    hits, base = hit_rate(log.held_out, ours), hit_rate(log.held_out, baseline)
    return {"hit_rate_at_10": round(hits, 4), "baseline_hit_rate_at_10": round(base, 4),
            "ratio": round(hits / max(base, 1e-9), 2), "viewers": float(len(log.held_out))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--per-cluster", type=int, default=10)
    parser.add_argument("--viewers", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.clusters, args.per_cluster, args.viewers, args.seed))), flush=True)


if __name__ == "__main__":
    main()

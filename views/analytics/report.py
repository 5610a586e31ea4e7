"""Creator analytics: the numbers of one channel (or one of its streams) over a time range, from the tables.

What each number means (all over ``[from, to)``, live playback only):

* ``viewers_per_minute``: per minute, the heartbeat sessions that beat in it
  (minutes without any are left out); ``peak_viewers`` is its largest value
  and ``avg_viewers`` its mean over the minutes listed.
* ``unique_viewers``: heartbeat sessions over the whole range.
* ``watch_time_s``: summed over those sessions, each session's
  ``min(beats * heartbeat interval, last beat - first beat + interval)``: a
  beat stands for the interval before the next, and a session that paused
  for an hour is not counted as watching it.  ``avg_watch_time_s`` is that
  over ``unique_viewers``.
* ``chat_per_minute``, ``chat_messages``, ``chatters``: messages sent, and
  distinct users who sent them.
* ``new_followers`` and ``new_subscribers``: distinct users who followed, or
  started a subscription.
* ``renditions``: each rendition's share of the live beats, largest first;
  ``rebuffering_ratio``: the share of live beats whose buffer held less than
  ``REBUFFER_BELOW_S`` seconds.
* ``ingest``: per minute of the stream's health reports, the mean ingest
  bitrate and frame rate and the frames dropped.

Every number comes from the aggregates, never from raw rows that expire, so a
stream's analytics stay after the retention.  CSV (``to_csv``): one row per
minute that has any series, columns ``CSV_COLUMNS``: ``minute`` (ISO 8601
UTC), ``t`` (epoch ms), ``viewers``, ``chat_messages``, ``chatters``,
``ingest_bitrate_kbps``, ``ingest_fps``, ``ingest_dropped_frames``; a minute
without a value of some series has that cell empty.
"""

from __future__ import annotations

import asyncio
import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from views.analytics.store import AnalyticsStore
from views.analytics.tables import REBUFFER_BELOW_S

__all__ = ["REBUFFER_BELOW_S", "AnalyticsReport", "Range", "build_report", "to_csv", "CSV_COLUMNS"]

CSV_COLUMNS = ("minute", "t", "viewers", "chat_messages", "chatters", "ingest_bitrate_kbps", "ingest_fps",
               "ingest_dropped_frames")

_RANGE = ("minute >= toStartOfMinute(fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC')) "
          "AND minute < fromUnixTimestamp64Milli({to_ms:Int64}, 'UTC')")
_STREAM = "({stream_id:String} = '' OR stream_id = {stream_id:String})"
_EVENTS = ("occurred_at >= fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC') "
           "AND occurred_at < fromUnixTimestamp64Milli({to_ms:Int64}, 'UTC')")

# ROLLUP adds one row over the whole range (grouping(minute) = 1): the unique sessions of the range.
VIEWERS_SQL = f"""SELECT toInt64(toUnixTimestamp(minute)) * 1000 AS t, uniqMerge(sessions) AS viewers,
       sum(beats) AS beats, sum(rebuffer_beats) AS rebuffer_beats, grouping(minute) AS total
FROM viewer_minutes
WHERE channel_id = {{channel_id:String}} AND {_STREAM} AND {_RANGE}
GROUP BY ROLLUP(minute) ORDER BY total, minute"""

WATCH_SQL = f"""SELECT count() AS sessions, sum(watched_s) AS watch_time_s FROM (
  SELECT least(sum(beats) * {{interval_s:Float64}},
               (toUnixTimestamp64Milli(max(last_at)) - toUnixTimestamp64Milli(min(first_at))) / 1000
               + {{interval_s:Float64}}) AS watched_s
  FROM watch_sessions
  WHERE channel_id = {{channel_id:String}} AND {_STREAM} AND playback = 'LIVE'
  GROUP BY stream_id, session_id
  HAVING min(first_at) < fromUnixTimestamp64Milli({{to_ms:Int64}}, 'UTC')
     AND max(last_at) >= fromUnixTimestamp64Milli({{from_ms:Int64}}, 'UTC'))"""

CHAT_SQL = f"""SELECT toInt64(toUnixTimestamp(minute)) * 1000 AS t, sum(messages) AS messages,
       uniqMerge(chatters) AS chatters, grouping(minute) AS total
FROM chat_minutes
WHERE channel_id = {{channel_id:String}} AND {_RANGE}
GROUP BY ROLLUP(minute) ORDER BY total, minute"""

SOCIAL_SQL = f"""SELECT
  (SELECT uniqExactIf(follower_id, followed = 1) FROM follows
   WHERE channel_id = {{channel_id:String}} AND {_EVENTS}) AS followers,
  (SELECT uniqExactIf(user_id, event = 'started') FROM subscriptions
   WHERE channel_id = {{channel_id:String}} AND {_EVENTS}) AS subscribers"""

RENDITIONS_SQL = f"""SELECT rendition, sum(beats) AS beats FROM rendition_minutes
WHERE channel_id = {{channel_id:String}} AND {_STREAM} AND {_RANGE}
GROUP BY rendition ORDER BY beats DESC, rendition"""

INGEST_SQL = f"""SELECT toInt64(toUnixTimestamp(toStartOfMinute(occurred_at))) * 1000 AS t,
       toInt64(round(avg(ingest_bitrate_kbps))) AS bitrate_kbps, round(avg(fps), 2) AS fps,
       toInt64(sum(dropped_frames)) AS dropped_frames
FROM stream_health
WHERE channel_id = {{channel_id:String}} AND {_STREAM} AND {_EVENTS}
GROUP BY t ORDER BY t"""


@dataclass(frozen=True)
class Range:
    """What a report covers: a channel, optionally one of its streams, from ``from_ms`` up to ``to_ms``."""

    channel_id: str
    stream_id: str | None
    from_ms: int
    to_ms: int


@dataclass(frozen=True)
class AnalyticsReport:
    """The creator analytics of one range (module docstring); ``to_json`` is the API's answer."""

    range: Range
    viewers_per_minute: tuple[tuple[int, int], ...]
    unique_viewers: int
    watch_time_s: float
    chat_per_minute: tuple[tuple[int, int, int], ...]  # (t, messages, chatters)
    chatters: int
    new_followers: int
    new_subscribers: int
    renditions: tuple[tuple[str, float], ...]
    rebuffering_ratio: float
    ingest: tuple[tuple[int, int, float, int], ...]  # (t, bitrate_kbps, fps, dropped_frames)

    @property
    def peak_viewers(self) -> int:
        return max((v for _, v in self.viewers_per_minute), default=0)

    @property
    def avg_viewers(self) -> float:
        if not self.viewers_per_minute:
            return 0.0
        return round(sum(v for _, v in self.viewers_per_minute) / len(self.viewers_per_minute), 3)

    @property
    def chat_messages(self) -> int:
        return sum(m for _, m, _ in self.chat_per_minute)

    def to_json(self) -> dict[str, Any]:
        r = self.range
        return {
            "channel_id": r.channel_id, "stream_id": r.stream_id, "from": r.from_ms, "to": r.to_ms,
            "viewers_per_minute": [{"t": t, "viewers": v} for t, v in self.viewers_per_minute],
            "peak_viewers": self.peak_viewers, "avg_viewers": self.avg_viewers,
            "unique_viewers": self.unique_viewers, "watch_time_s": round(self.watch_time_s, 3),
            "avg_watch_time_s": round(self.watch_time_s / self.unique_viewers, 3) if self.unique_viewers else 0.0,
            "chat_per_minute": [{"t": t, "messages": m} for t, m, _ in self.chat_per_minute],
            "chat_messages": self.chat_messages, "chatters": self.chatters,
            "new_followers": self.new_followers, "new_subscribers": self.new_subscribers,
            "renditions": [{"rendition": name, "share": share} for name, share in self.renditions],
            "rebuffering_ratio": self.rebuffering_ratio,
            "ingest": [{"t": t, "bitrate_kbps": b, "fps": f, "dropped_frames": d} for t, b, f, d in self.ingest],
        }


def _int(value: object) -> int:
    return int(value) if isinstance(value, (int, float)) else int(str(value or 0))


def _float(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else float(str(value or 0))


async def build_report(store: AnalyticsStore, rng: Range, heartbeat_interval_s: float) -> AnalyticsReport:
    """Run the report's queries (concurrently) and assemble the answer."""
    params: dict[str, object] = {"channel_id": rng.channel_id, "stream_id": rng.stream_id or "",
                                 "from_ms": rng.from_ms, "to_ms": rng.to_ms, "interval_s": heartbeat_interval_s}
    viewers, watch, chat, social, renditions, ingest = await asyncio.gather(
        store.query(VIEWERS_SQL, params), store.query(WATCH_SQL, params), store.query(CHAT_SQL, params),
        store.query(SOCIAL_SQL, params), store.query(RENDITIONS_SQL, params), store.query(INGEST_SQL, params))
    minutes = [row for row in viewers.rows if not _int(row[4])]
    viewers_total = next((row for row in viewers.rows if _int(row[4])), (0, 0, 0, 0, 1))
    chat_minutes = [row for row in chat.rows if not _int(row[3])]
    chat_total = next((row for row in chat.rows if _int(row[3])), (0, 0, 0, 1))
    beats, rebuffer = _int(viewers_total[2]), _int(viewers_total[3])
    rendition_beats = [(str(name), _int(n)) for name, n in renditions.rows]
    rendition_total = sum(n for _, n in rendition_beats)
    social_row = social.rows[0] if social.rows else (0, 0)
    watch_row = watch.rows[0] if watch.rows else (0, 0)
    return AnalyticsReport(
        range=rng,
        viewers_per_minute=tuple((_int(row[0]), _int(row[1])) for row in minutes),
        unique_viewers=_int(viewers_total[1]),
        watch_time_s=_float(watch_row[1]),
        chat_per_minute=tuple((_int(row[0]), _int(row[1]), _int(row[2])) for row in chat_minutes),
        chatters=_int(chat_total[2]),
        new_followers=_int(social_row[0]),
        new_subscribers=_int(social_row[1]),
        renditions=tuple((name, round(n / rendition_total, 4)) for name, n in rendition_beats if rendition_total),
        rebuffering_ratio=round(rebuffer / beats, 4) if beats else 0.0,
        ingest=tuple((_int(t), _int(b), _float(f), _int(d)) for t, b, f, d in ingest.rows),
    )


def to_csv(report: AnalyticsReport) -> str:
    """The per-minute series as CSV, one row per minute (module docstring for the columns)."""
    minutes: dict[int, dict[str, object]] = {}
    for t, v in report.viewers_per_minute:
        minutes.setdefault(t, {})["viewers"] = v
    for t, m, c in report.chat_per_minute:
        minutes.setdefault(t, {}).update(chat_messages=m, chatters=c)
    for t, b, f, d in report.ingest:
        minutes.setdefault(t, {}).update(ingest_bitrate_kbps=b, ingest_fps=f, ingest_dropped_frames=d)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for t in sorted(minutes):
        cells = minutes[t]
        stamp = datetime.fromtimestamp(t / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        writer.writerow([stamp, t, *(cells.get(c, "") for c in CSV_COLUMNS[2:])])
    return out.getvalue()

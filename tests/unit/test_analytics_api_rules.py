"""Creator analytics input and output rules (gateways/analytics.py, views/analytics/report.py, the sql CLI): pure."""

from __future__ import annotations

import pytest

from gateways.analytics import DAY_MS, parse_range, parse_time
from gateways.errors import BadRequest
from infra.analytics_sql import format_result
from views.analytics.report import AnalyticsReport, Range, to_csv
from views.analytics.store import QueryResult

NOW = 1_800_000_000_000


def test_times_are_ms_or_iso_8601() -> None:
    assert parse_time("from", "1700000000000") == 1_700_000_000_000
    assert parse_time("from", "2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_time("from", "2023-11-14T22:13:20") == 1_700_000_000_000  # no zone: UTC
    assert parse_time("from", "2023-11-14T23:13:20+01:00") == 1_700_000_000_000
    with pytest.raises(BadRequest):
        parse_time("from", "last tuesday")


def test_ranges() -> None:
    assert parse_range(None, None, NOW) == (NOW - 7 * DAY_MS, NOW)
    assert parse_range("1000", "2000", NOW) == (1000, 2000)
    assert parse_range("0", str(366 * DAY_MS), NOW) == (0, 366 * DAY_MS)
    for bad in (("2000", "1000"), ("1000", "1000"), ("0", str(366 * DAY_MS + 1))):
        with pytest.raises(BadRequest):
            parse_range(*bad, NOW)


def test_csv_one_row_per_minute() -> None:
    report = AnalyticsReport(range=Range("c", None, 0, 180_000), viewers_per_minute=((0, 2), (60_000, 1)),
                             unique_viewers=2, watch_time_s=10.0, chat_per_minute=((60_000, 3, 2),), chatters=2,
                             new_followers=0, new_subscribers=0, renditions=(("source", 1.0),),
                             rebuffering_ratio=0.0, ingest=((120_000, 3000, 30.0, 1),))
    assert to_csv(report).splitlines() == [
        "minute,t,viewers,chat_messages,chatters,ingest_bitrate_kbps,ingest_fps,ingest_dropped_frames",
        "1970-01-01T00:00:00Z,0,2,,,,,", "1970-01-01T00:01:00Z,60000,1,3,2,,,",
        "1970-01-01T00:02:00Z,120000,,,,3000,30.0,1"]
    body = report.to_json()
    assert (body["peak_viewers"], body["avg_viewers"], body["avg_watch_time_s"], body["chat_messages"]) == (
        2, 1.5, 5.0, 3)


def test_sql_output_formats() -> None:
    result = QueryResult(columns=("name", "n"), rows=(("a,b", 1), (None, 22)))
    assert format_result(result, "csv") == 'name,n\n"a,b",1\nNULL,22\n'
    assert format_result(result, "json") == '{"name": "a,b", "n": 1}\n{"name": null, "n": 22}\n'
    assert format_result(result, "table").splitlines() == ["name  n", "----  --", "a,b    1", "NULL  22",
                                                           "(2 rows)"]

"""Reading ClickHouse's ``JSONCompact`` answer into a ``QueryResult``: one parser for every store.

chDB, a ClickHouse server (``clickhouse_connect``'s raw query) and the
analytics process's HTTP API all hand back this format, so every store returns
the same values: 64-bit integers as numbers (``output_format_json_quote_64bit_integers=0``),
times as ClickHouse prints them, NaN and infinities as ``null``.
"""

from __future__ import annotations

import json

from views.analytics.errors import AnalyticsError
from views.analytics.store import QueryResult

SETTINGS: dict[str, int] = {
    "output_format_json_quote_64bit_integers": 0,
    "output_format_json_quote_64bit_floats": 0,
}
"""The output settings every store runs with, so that the JSON carries numbers as numbers."""


def parse_json_compact(data: bytes) -> QueryResult:
    """A ``QueryResult`` from a ``JSONCompact`` document; an empty answer (a statement with no result) has none."""
    if not data.strip():
        return QueryResult(columns=(), rows=())
    try:
        doc = json.loads(data)
        columns = tuple(str(col["name"]) for col in doc["meta"])
        rows = tuple(tuple(row) for row in doc["data"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AnalyticsError("the answer is not ClickHouse's JSONCompact (a FORMAT clause in the statement? "
                             "leave it out)") from exc
    return QueryResult(columns=columns, rows=rows)

"""``glasscast sql "SELECT ..." [--format table|csv|json]``: analysts' read-only SQL over the analytics store.

The statement goes to the store the settings name (``views/analytics/store.py``:
on one machine the running platform's analytics process, found through the
run state; with ``GLASSCAST_ANALYTICS_BACKEND=clickhouse`` the server) as a
read-only query: only one SELECT, WITH, SHOW or DESCRIBE statement passes
(``views/analytics/readonly.py``), and the engine runs it with ClickHouse's
``readonly`` setting.  ``table`` prints aligned columns, ``csv`` RFC 4180 CSV
with a header, ``json`` one JSON object per row.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json

from infra.settings import Settings
from views.analytics.store import QueryResult, open_analytics

FORMATS = ("table", "csv", "json")
MAX_CELL = 80  # the table format cuts longer cells (csv and json never cut)


def _cell(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def format_result(result: QueryResult, fmt: str) -> str:
    """The result as text in ``fmt`` (``FORMATS``)."""
    if fmt == "json":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in result.dicts())
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([_cell(v) if v is None or isinstance(v, (list, dict)) else v for v in row]
                         for row in result.rows)
        return out.getvalue()
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r} (expected {', '.join(FORMATS)})")
    cells = [[c[:MAX_CELL - 1] + "…" if len(c) > MAX_CELL else c for c in map(_cell, row)] for row in result.rows]
    widths = [max([len(name)] + [len(row[i]) for row in cells]) for i, name in enumerate(result.columns)]
    lines = ["  ".join(name.ljust(w) for name, w in zip(result.columns, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(row, widths)).rstrip()
              for row in cells]
    lines.append(f"({len(result.rows)} row{'' if len(result.rows) == 1 else 's'})")
    return "\n".join(lines) + "\n"


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


async def run_sql(settings: Settings, sql: str) -> QueryResult:
    """Run one read-only statement against the configured store."""
    store = open_analytics(settings)
    try:
        return await store.query(sql, readonly=True)
    finally:
        await store.close()


def sql_command(settings: Settings, sql: str, fmt: str) -> str:
    """What ``glasscast sql`` prints."""
    return format_result(asyncio.run(run_sql(settings, sql)), fmt)

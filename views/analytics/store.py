"""The analytics store interface: run ClickHouse SQL, load rows, and pick the implementation the settings name.

Every implementation speaks the same ClickHouse SQL against the tables of
``views/analytics/tables.py``:

* ``query`` runs one statement.  Parameters use ClickHouse's ``{name:Type}``
  placeholders (``WHERE channel_id = {channel:String}``) and are bound by the
  engine, never pasted into the text.  ``readonly=True`` also runs it with
  ClickHouse's ``readonly=1`` setting, so the engine itself refuses a write.
* ``insert`` loads rows into a table in ONE insert block, which MergeTree
  applies atomically: all the rows or none (the sink's exactly-once rests on
  it, processors/analytics/sink.py).  A ``DateTime64(3)`` value is given as
  epoch milliseconds (``EpochMs``).
* ``insert_avro`` loads an Avro object container file the same way, read by the
  engine itself (no decoding in Python; the sink's bulk path).

Values in a ``QueryResult`` are JSON values, the same from every
implementation: ``None``, ``bool``, ``int``, ``float``, ``str``, lists and
dicts; dates and times come as ClickHouse prints them
(``2026-12-04 13:00:00.000``), so a query that wants numbers asks for them
(``toUnixTimestamp64Milli(occurred_at)``).

``open_analytics(settings)``: ``GLASSCAST_ANALYTICS_BACKEND=clickhouse`` is a
ClickHouse server at ``GLASSCAST_ANALYTICS_URL``; with ``chdb`` (the
embedded platform) a set URL is the analytics process that owns chDB's data
directory and an empty one opens chDB in this process (the analytics process
itself, tests, the bench).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from infra.settings import Settings


@dataclass(frozen=True)
class QueryResult:
    """A statement's answer: column names and rows of JSON values, in the statement's order."""

    columns: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]

    def dicts(self) -> list[dict[str, object]]:
        """The rows as ``{column: value}``."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def scalar(self) -> object:
        """The first column of the first row, or None when there is no row."""
        return self.rows[0][0] if self.rows and self.rows[0] else None


class AnalyticsStore(Protocol):
    """Where the analytics tables live; every method may raise ``views.analytics.errors.AnalyticsError``."""

    async def query(self, sql: str, params: Mapping[str, object] | None = None, *,
                    readonly: bool = False) -> QueryResult:
        """Run one statement with ``{name:Type}`` parameters bound by the engine."""

    async def query_compact(self, sql: str, params: Mapping[str, object] | None = None, *,
                            readonly: bool = False) -> bytes:
        """``query``'s answer as the engine wrote it, ClickHouse's ``JSONCompact`` (passed on unparsed)."""

    async def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        """Load ``rows`` (values in ``columns`` order) into ``table`` as one atomic insert block."""

    async def insert_avro(self, table: str, columns: Sequence[str], structure: str, select: str,
                          data: bytes) -> None:
        """Load an Avro object container file into ``table`` as one atomic insert block, the engine decoding it.

        The engine reads the file's records as ``structure`` (their fields, as ClickHouse types) and inserts
        ``SELECT select`` of them into ``columns`` (processors/analytics/avro_rows.py).
        """

    async def close(self) -> None:
        """Release the connection (or the engine); the store is not used after."""


def chdb_path(settings: Settings) -> str:
    """Where the embedded engine keeps its data: ``<data dir>/analytics``."""
    return str(settings.data_dir / "analytics")


def open_analytics(settings: Settings) -> AnalyticsStore:
    """The store the settings name (see the module docstring); ``close()`` it when done.

    Connections are made lazily, at the first call, so opening never blocks.
    """
    analytics = settings.analytics
    if analytics.backend == "clickhouse":
        from views.analytics.clickhouse_store import ClickHouseStore
        return ClickHouseStore(analytics.url, analytics.database, timeout_s=analytics.query_timeout_s)
    if analytics.url:
        from views.analytics.service_store import ServiceStore
        return ServiceStore(analytics.url, timeout_s=analytics.query_timeout_s)
    from views.analytics.chdb_store import ChdbStore
    return ChdbStore(chdb_path(settings), analytics.database)

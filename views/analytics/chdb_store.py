"""The embedded analytics store: chDB, ClickHouse's engine in this process, with its data in one directory.

chDB locks its data directory, so exactly one process opens it: the
analytics process of ``glasscast up`` (processors/analytics/), which answers
the others over HTTP (``views/analytics/service_store.py``).  Every call runs
on one thread of its own (the engine's session is not shared between
threads), so the event loop never waits on a query.

Parameters are bound by chDB itself (``{name:Type}``), given as the text the
engine parses for their type (``params.py``).  Answers are read from
the ``JSONCompact`` format with 64-bit integers unquoted (``result_json.py``),
the same parsing the other stores use.  Rows are loaded with one ``INSERT ...
FORMAT JSONCompactColumns`` per call: one insert block, applied whole or not
at all; ``insert_avro`` has the engine read an Avro container from a file in
``<path>-load`` (emptied when the store opens, so a kill -9 mid-insert leaves
nothing behind for long), likewise one insert.  A ``DateTime64`` value comes in as epoch milliseconds and is written
as ``seconds.millis`` text, which is how the format reads a number as a time.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from views.analytics.errors import AnalyticsError, AnalyticsUnavailable, QueryRefused
from views.analytics.params import params_text
from views.analytics.readonly import check_readonly
from views.analytics.result_json import parse_json_compact
from views.analytics.store import QueryResult

_CODE = re.compile(r"Code: (\d+)")
# ClickHouse error codes that mean "this statement is wrong or not allowed", not "the engine failed".
REFUSED_CODES = frozenset({
    6, 10, 16, 26, 27, 36, 38, 41, 42, 43, 44, 46, 47, 48, 53, 57, 60, 62, 70, 72, 81, 117, 164, 179, 184, 215,
    352, 386, 456, 457, 497, 748,
})


def classify(exc: Exception) -> AnalyticsError:
    """The store's error for an engine exception: ``QueryRefused`` for a bad or forbidden statement."""
    message = str(exc).strip()
    match = _CODE.search(message)
    if match is not None and int(match.group(1)) in REFUSED_CODES:
        return QueryRefused(message)
    return AnalyticsError(message)


# DateTime64's range; a time outside it is stored at its edge rather than refusing the row's whole batch.
MIN_MS, MAX_MS = -2_208_988_800_000, 10_413_791_999_999  # 1900-01-01T00:00:00Z, 2299-12-31T23:59:59.999Z
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms_text(value: object) -> object:
    """An epoch-milliseconds int as text JSON input reads as that DateTime64; anything else as is.

    ``seconds.millis`` for ten-digit seconds (2001 to 2286, every real event); JSON input takes shorter
    numbers for dates (``1000.000`` does not parse), so other times are written out in full, in UTC.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        seconds, millis = divmod(value, 1000)
        if 1_000_000_000 <= seconds < 10_000_000_000:
            return f"{seconds}.{millis:03d}"
        when = _EPOCH + timedelta(milliseconds=min(max(value, MIN_MS), MAX_MS))
        return f"{when:%Y-%m-%d %H:%M:%S}.{when.microsecond // 1000:03d}"
    return value


class ChdbStore:
    """The analytics store on chDB, opened lazily at the first call (``path`` is locked from then on)."""

    def __init__(self, path: str, database: str = "glasscast") -> None:
        if not database.isidentifier():
            raise ValueError(f"database must be a plain name, not {database!r}")
        self.path = path
        self.database = database
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chdb")
        self._session: Any = None
        self._time_columns: dict[str, frozenset[str]] = {}
        self._load_dir = Path(f"{path}-load")

    def _open(self) -> Any:
        if self._session is None:
            # Heavy, and untyped: only the process that owns the store loads it.
            chdb_session: Any = importlib.import_module("chdb.session")
            Path(self.path).mkdir(parents=True, exist_ok=True)
            try:
                sess: Any = chdb_session.Session(self.path)
            except Exception as exc:  # chDB raises plain exceptions: another process holding the lock, a bad path
                raise AnalyticsUnavailable(f"cannot open chDB at {self.path}: {exc}") from exc
            # Containers of an Avro load (``insert_avro``) are files of this process's own, next to the data:
            # any still there were left by a predecessor killed mid-insert.
            shutil.rmtree(self._load_dir, ignore_errors=True)
            self._load_dir.mkdir(parents=True, exist_ok=True)
            sess.query(f"CREATE DATABASE IF NOT EXISTS {self.database}")
            sess.query(f"USE {self.database}")
            sess.query("SET output_format_json_quote_64bit_integers = 0")
            sess.query("SET output_format_json_quote_64bit_floats = 0")
            self._session = sess
        return self._session

    def _query(self, sql: str, params: Mapping[str, object] | None, readonly: bool) -> QueryResult:
        return parse_json_compact(self._query_compact(sql, params, readonly))

    def _query_compact(self, sql: str, params: Mapping[str, object] | None, readonly: bool) -> bytes:
        sess = self._open()
        if readonly:
            sql = check_readonly(sql) + "\nSETTINGS readonly = 1"
        try:
            result = sess.query(sql, "JSONCompact", params=params_text(params) if params else None)
        except Exception as exc:  # chDB's ChdbError and RuntimeError carry ClickHouse's message and code
            raise classify(exc) from exc
        data: bytes = result.bytes()
        return data

    def _insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        if not rows:
            return
        sess = self._open()
        if not table.isidentifier() or not all(c.isidentifier() for c in columns):
            raise QueryRefused(f"bad table or column name in insert into {table!r}")
        times = self._time_columns.get(table)
        if times is None:
            found = sess.query(
                "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String} "
                "AND type LIKE 'DateTime64%'", "JSONCompact", params={"db": self.database, "t": table})
            times = frozenset(str(r[0]) for r in parse_json_compact(found.bytes()).rows)
            self._time_columns[table] = times
        width = len(columns)
        if any(len(row) != width for row in rows):
            raise QueryRefused(f"insert into {table}: every row must have {width} values")
        # Column-oriented JSON: one encoder call for the whole block rather than one per row.
        values = [list(column) for column in zip(*rows, strict=True)]
        for i, name in enumerate(columns):
            if name in times:
                values[i] = [ms_text(v) for v in values[i]]
        payload = json.dumps(values, separators=(",", ":"), ensure_ascii=False)
        sql = f"INSERT INTO {table} ({', '.join(columns)}) FORMAT JSONCompactColumns\n{payload}"
        try:
            sess.query(sql)
        except Exception as exc:  # as in _query
            raise classify(exc) from exc

    def _insert_avro(self, table: str, columns: Sequence[str], structure: str, select: str, data: bytes) -> None:
        sess = self._open()
        if not table.isidentifier() or not all(c.isidentifier() for c in columns) or "'" in structure:
            raise QueryRefused(f"bad table, column or structure in Avro insert into {table!r}")
        # The engine reads the container from a file of its own (a query's text cannot carry binary data).
        fd, path = tempfile.mkstemp(prefix="load-", suffix=".avro", dir=self._load_dir)
        literal = path.replace("\\", "\\\\").replace("'", "\\'")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            sess.query(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {select} "
                       f"FROM file('{literal}', 'Avro', '{structure}')")
        except Exception as exc:  # as in _query
            raise classify(exc) from exc
        finally:
            os.unlink(path)

    async def insert_avro(self, table: str, columns: Sequence[str], structure: str, select: str,
                          data: bytes) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._insert_avro, table, columns, structure,
                                                         select, data)

    async def query(self, sql: str, params: Mapping[str, object] | None = None, *,
                    readonly: bool = False) -> QueryResult:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._query, sql, params, readonly)

    async def query_compact(self, sql: str, params: Mapping[str, object] | None = None, *,
                            readonly: bool = False) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._query_compact, sql, params,
                                                                readonly)

    async def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._insert, table, columns, rows)

    def query_sync(self, sql: str, params: Mapping[str, object] | None = None) -> QueryResult:
        """``query`` from a thread that is not the event loop's (the sink's consumer thread, the bench)."""
        return self._pool.submit(self._query, sql, params, False).result()

    def insert_sync(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        """``insert`` from a thread that is not the event loop's."""
        self._pool.submit(self._insert, table, columns, rows).result()

    def _close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._close)
        self._pool.shutdown(wait=True)

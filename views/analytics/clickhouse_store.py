"""The analytics store on a ClickHouse server, through clickhouse-connect (the distributed deployment).

``GLASSCAST_ANALYTICS_URL`` names the server's HTTP interface,
``http://USER:PASSWORD@HOST:8123`` (the password never reaches a log:
``infra/log_redaction.py`` masks it); the tables live in
``GLASSCAST_ANALYTICS_DATABASE``, created at the first call.

Queries go through ``raw_query`` in ``JSONCompact`` (``result_json.py``), so
the values are those of the other stores; ``{name:Type}`` parameters are bound
by the server.  Read-only statements run with ``readonly=2``: the server
refuses every write, and every change of ``readonly`` itself, while the
client may still send its output settings with the request (``readonly=1``
refuses those too, so every read would fail).  Rows go in with one native
``insert`` per call: one insert block, applied whole or not at all, with a
``DateTime64(3)`` value given as epoch milliseconds (the column's ticks).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from views.analytics.errors import AnalyticsError, AnalyticsUnavailable, QueryRefused
from views.analytics.readonly import check_readonly
from views.analytics.result_json import SETTINGS, parse_json_compact
from views.analytics.store import QueryResult


def _classify(exc: Exception) -> AnalyticsError:
    from clickhouse_connect.driver.exceptions import OperationalError

    from views.analytics.chdb_store import classify

    if isinstance(exc, OperationalError):  # connection refused, timed out
        return AnalyticsUnavailable(str(exc))
    return classify(exc)


class ClickHouseStore:
    """The analytics store on a ClickHouse server; connects at the first call."""

    def __init__(self, url: str, database: str = "glasscast", timeout_s: float = 30.0) -> None:
        if not database.isidentifier():
            raise ValueError(f"database must be a plain name, not {database!r}")
        self.url = url
        self.database = database
        self.timeout_s = timeout_s
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def _get(self) -> Any:
        async with self._lock:
            if self._client is None:
                self._client = await asyncio.to_thread(self._connect)
        return self._client

    def _connect(self) -> Any:
        import clickhouse_connect  # only processes that talk to a server load it

        try:
            admin = clickhouse_connect.get_client(dsn=self.url, autogenerate_session_id=False,
                                                  send_receive_timeout=int(self.timeout_s))
            admin.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
            admin.close()
            return clickhouse_connect.get_client(dsn=self.url, database=self.database,
                                                 autogenerate_session_id=False,
                                                 send_receive_timeout=int(self.timeout_s))
        except Exception as exc:  # clickhouse-connect raises its own and urllib3's errors
            raise _classify(exc) from exc

    async def query(self, sql: str, params: Mapping[str, object] | None = None, *,
                    readonly: bool = False) -> QueryResult:
        return parse_json_compact(await self.query_compact(sql, params, readonly=readonly))

    async def query_compact(self, sql: str, params: Mapping[str, object] | None = None, *,
                            readonly: bool = False) -> bytes:
        client = await self._get()
        settings: dict[str, Any] = dict(SETTINGS)
        if readonly:
            sql = check_readonly(sql)
            settings["readonly"] = 2

        def run() -> bytes:
            try:
                data: bytes = client.raw_query(sql, parameters=dict(params) if params else None,
                                               settings=settings, fmt="JSONCompact")
            except Exception as exc:  # as in _connect
                raise _classify(exc) from exc
            return data

        return await asyncio.to_thread(run)

    async def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        if not rows:
            return
        client = await self._get()

        def run() -> None:
            try:
                client.insert(table, [list(r) for r in rows], column_names=list(columns))
            except Exception as exc:  # as in _connect
                raise _classify(exc) from exc

        await asyncio.to_thread(run)

    async def insert_avro(self, table: str, columns: Sequence[str], structure: str, select: str,
                          data: bytes) -> None:
        if not table.isidentifier() or not all(c.isidentifier() for c in columns) or "'" in structure:
            raise QueryRefused(f"bad table, column or structure in Avro insert into {table!r}")
        client = await self._get()
        # The container is the request's body, read by the input() table function: one INSERT, one block.
        sql = f"INSERT INTO {table} ({', '.join(columns)}) SELECT {select} FROM input('{structure}') FORMAT Avro"

        def run() -> None:
            try:
                client.command(sql, data=data)
            except Exception as exc:  # as in _connect
                raise _classify(exc) from exc

        await asyncio.to_thread(run)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await asyncio.to_thread(client.close)

"""The analytics store as seen from every process but the one that owns chDB: HTTP to the analytics process.

On the embedded platform the analytics process (processors/analytics/) owns
chDB's data directory and serves this small API on 127.0.0.1, at
``GLASSCAST_ANALYTICS_URL`` (``http://glasscast:PASSWORD@127.0.0.1:PORT``,
filled in by ``glasscast up``; the password is the embedded secret
``analytics``, sent as HTTP Basic):

* ``POST /query``  ``{"sql", "params", "readonly"}`` -> the engine's ``JSONCompact`` answer, as it wrote it
* ``POST /insert`` ``{"table", "columns", "rows"}`` -> 204
* ``POST /insert_avro?table=&columns=a,b&structure=&select=`` with the container as the body -> 204

A refused statement answers 400 and an engine failure 500, each with
``{"error": "refused" | "failed", "message"}``, and they come back here as the
same errors the store raised over there; no answer at all is
``AnalyticsUnavailable``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from views.analytics.errors import AnalyticsError, AnalyticsUnavailable, QueryRefused
from views.analytics.result_json import parse_json_compact
from views.analytics.store import QueryResult


def split_url(url: str) -> tuple[str, tuple[str, str] | None]:
    """``url`` without its userinfo, and the (user, password) it carried."""
    parts = urlsplit(url)
    auth = (unquote(parts.username or ""), unquote(parts.password)) if parts.password is not None else None
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return bare.rstrip("/"), auth


class ServiceStore:
    """An ``AnalyticsStore`` that asks the analytics process."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        base, auth = split_url(url)
        self._client = httpx.AsyncClient(base_url=base, auth=auth, timeout=timeout_s)

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self._send(path, json=body)

    async def _send(self, path: str, **request: Any) -> httpx.Response:
        try:
            response = await self._client.post(path, **request)
        except httpx.HTTPError as exc:
            raise AnalyticsUnavailable(f"the analytics process did not answer: {exc!r}") from exc
        if response.status_code < 300:
            return response
        try:
            message = str(response.json().get("message", ""))
        except ValueError:
            message = response.text[:500]
        if response.status_code == 400:
            raise QueryRefused(message)
        if response.status_code in (502, 503, 504):
            raise AnalyticsUnavailable(message or f"the analytics process answered {response.status_code}")
        raise AnalyticsError(message or f"the analytics process answered {response.status_code}")

    async def insert_avro(self, table: str, columns: Sequence[str], structure: str, select: str,
                          data: bytes) -> None:
        params = {"table": table, "columns": ",".join(columns), "structure": structure, "select": select}
        await self._send("/insert_avro", content=data, params=params,
                         headers={"content-type": "application/avro"})

    async def query(self, sql: str, params: Mapping[str, object] | None = None, *,
                    readonly: bool = False) -> QueryResult:
        return parse_json_compact(await self.query_compact(sql, params, readonly=readonly))

    async def query_compact(self, sql: str, params: Mapping[str, object] | None = None, *,
                            readonly: bool = False) -> bytes:
        response = await self._post("/query", {"sql": sql, "params": dict(params or {}), "readonly": readonly})
        return response.content

    async def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        if rows:
            await self._post("/insert", {"table": table, "columns": list(columns), "rows": [list(r) for r in rows]})

    async def close(self) -> None:
        await self._client.aclose()

"""The analytics process (``glasscast run analytics``): the sink, and on the embedded platform chDB's one owner.

chDB locks its data directory, so one process owns it: this one.  It runs the
sink (``sink.py``) and answers every other process's queries and inserts over
the small HTTP API of ``views/analytics/service_store.py``, on 127.0.0.1 at
the port of ``GLASSCAST_ANALYTICS_URL`` (which ``glasscast up`` fills in, with
the embedded secret ``analytics`` as the HTTP Basic password; a request
without it gets 401).  With ``GLASSCAST_ANALYTICS_BACKEND=clickhouse`` (the
compose deployment) the store is the ClickHouse server, which every process
reaches itself, and this process only runs the sink (and ``/healthz``).

The sink and the API share one store.  A sink that fails (the broker gone for
good, the store refusing a batch) ends the process with an error, and the
supervisor starts it again: it then resumes from the tables (exactly once,
``sink.py``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from infra.settings import Settings
from processors.analytics.sink import AnalyticsSink
from topics.runtime import make_serde
from views.analytics.errors import AnalyticsError, AnalyticsUnavailable, QueryRefused
from views.analytics.service_store import split_url
from views.analytics.store import AnalyticsStore, chdb_path
from views.analytics.tables import create_tables

log = logging.getLogger("glasscast.analytics")


def owner_store(settings: Settings) -> AnalyticsStore:
    """The store this process writes itself: chDB here, or the ClickHouse server."""
    analytics = settings.analytics
    if analytics.backend == "clickhouse":
        from views.analytics.clickhouse_store import ClickHouseStore

        return ClickHouseStore(analytics.url, analytics.database, timeout_s=analytics.query_timeout_s)
    from views.analytics.chdb_store import ChdbStore

    return ChdbStore(chdb_path(settings), analytics.database)


def _expected_auth(settings: Settings) -> bytes | None:
    if settings.analytics.backend == "clickhouse":
        return None
    _, auth = split_url(settings.analytics.url)
    if auth is None:
        return None
    return b"Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode())


def _error(exc: AnalyticsError) -> JSONResponse:
    if isinstance(exc, QueryRefused):
        return JSONResponse({"error": "refused", "message": str(exc)}, status_code=400)
    if isinstance(exc, AnalyticsUnavailable):
        return JSONResponse({"error": "unavailable", "message": str(exc)}, status_code=503)
    return JSONResponse({"error": "failed", "message": str(exc)}, status_code=500)


def create_analytics_app(settings: Settings, store: AnalyticsStore, sink: AnalyticsSink | None) -> Starlette:
    """The internal API over ``store``; the lifespan creates the tables and runs ``sink`` (when given)."""
    expected = _expected_auth(settings)
    serves_queries = settings.analytics.backend == "chdb"

    def allowed(request: Request) -> bool:
        if expected is None:
            return True
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, expected)

    def refusal(request: Request) -> Response | None:
        if not allowed(request):
            return JSONResponse({"error": "unauthorized", "message": "HTTP Basic with the URL's password"},
                                status_code=401, headers={"WWW-Authenticate": 'Basic realm="glasscast-analytics"'})
        if not serves_queries:
            return JSONResponse({"error": "refused", "message": "the store is the ClickHouse server"},
                                status_code=404)
        return None

    async def body(request: Request) -> dict[str, Any] | Response:
        if (refused := refusal(request)) is not None:
            return refused
        try:
            doc = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": "refused", "message": "the body is not JSON"}, status_code=400)
        if not isinstance(doc, dict):
            return JSONResponse({"error": "refused", "message": "the body is not a JSON object"}, status_code=400)
        return doc

    async def query(request: Request) -> Response:
        doc = await body(request)
        if isinstance(doc, Response):
            return doc
        sql, params = doc.get("sql"), doc.get("params") or {}
        if not isinstance(sql, str) or not isinstance(params, dict):
            return JSONResponse({"error": "refused", "message": "sql must be a string, params an object"},
                                status_code=400)
        try:
            answer = await store.query_compact(sql, params, readonly=bool(doc.get("readonly")))
        except AnalyticsError as exc:
            return _error(exc)
        return Response(answer, media_type="application/json")  # passed on unparsed: ServiceStore reads it

    async def insert(request: Request) -> Response:
        doc = await body(request)
        if isinstance(doc, Response):
            return doc
        table, columns, rows = doc.get("table"), doc.get("columns"), doc.get("rows")
        if not isinstance(table, str) or not isinstance(columns, list) or not isinstance(rows, list):
            return JSONResponse({"error": "refused", "message": "table, columns and rows are required"},
                                status_code=400)
        try:
            await store.insert(table, [str(c) for c in columns], rows)
        except AnalyticsError as exc:
            return _error(exc)
        return Response(status_code=204)

    async def insert_avro(request: Request) -> Response:
        if (refused := refusal(request)) is not None:
            return refused
        q = request.query_params
        table, columns, structure, select = q.get("table"), q.get("columns"), q.get("structure"), q.get("select")
        if not table or not columns or not structure or not select:
            return JSONResponse({"error": "refused", "message": "table, columns, structure and select are required"},
                                status_code=400)
        try:
            await store.insert_avro(table, columns.split(","), structure, select, await request.body())
        except AnalyticsError as exc:
            return _error(exc)
        return Response(status_code=204)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "loaded_rows": sink.loaded_rows if sink else 0})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await create_tables(store, settings.analytics.retention_days)
        stop = asyncio.Event()
        task: asyncio.Task[None] | None = None
        if sink is not None:
            await sink.start()
            task = asyncio.create_task(_run_sink(sink, stop), name="analytics-sink")
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task
            if sink is not None:
                await sink.close()
            await store.close()

    return Starlette(routes=[Route("/healthz", healthz), Route("/query", query, methods=["POST"]),
                             Route("/insert", insert, methods=["POST"]),
                             Route("/insert_avro", insert_avro, methods=["POST"])], lifespan=lifespan)


async def _run_sink(sink: AnalyticsSink, stop: asyncio.Event) -> None:
    try:
        await sink.run(stop)
    except Exception:  # anything: the process ends and is restarted, and resumes from the tables
        log.exception("analytics sink failed; exiting so that the supervisor restarts the process")
        os._exit(70)


def service_port(settings: Settings) -> int:
    """The port to serve on: that of ``GLASSCAST_ANALYTICS_URL``, else ``GLASSCAST_ANALYTICS_PORT``."""
    if settings.analytics.backend == "chdb" and settings.analytics.url:
        port = urlsplit(settings.analytics.url).port
        if port:
            return port
    return settings.analytics.port


def serve_analytics(settings: Settings) -> None:
    """Run the analytics process until SIGTERM."""
    store = owner_store(settings)
    sink = AnalyticsSink(settings, store, make_serde(settings))
    config = uvicorn.Config(create_analytics_app(settings, store, sink), host="127.0.0.1",
                            port=service_port(settings), lifespan="on", log_config=None, access_log=False)
    uvicorn.Server(config).run()

"""Analytics: the event log in ClickHouse tables, for creators' dashboards, analysts' SQL and recommendations.

``store.py`` is the interface every reader and writer uses (``AnalyticsStore``,
``QueryResult``, ``open_analytics``) and ``errors.py`` its errors.
``tables.py`` is the one DDL both ClickHouse and chDB run.  The three
implementations: ``chdb_store.py`` (the embedded engine, in the one process
that owns its data directory), ``clickhouse_store.py`` (a ClickHouse server,
through clickhouse-connect) and ``service_store.py`` (HTTP to the embedded
analytics process); ``result_json.py`` reads every answer, ``params.py``
writes chDB's parameters.  ``report.py`` is the creator analytics and
``readonly.py`` the rules of analysts' read-only SQL.  The sink that fills the
tables is ``processors/analytics/``.  docs/ARCHITECTURE.md, "Analytics".
"""

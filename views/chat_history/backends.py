"""Open the chat history backend the settings name (``GLASSCAST_CHAT_HISTORY_BACKEND``).

``sqlite`` (the default, for ``glasscast up``) keeps one file in the data
directory, shared by the processors that write it and the gateways that read
it; ``cassandra`` connects to ``GLASSCAST_CHAT_CASSANDRA_HOSTS``.
"""

from __future__ import annotations

from pathlib import Path

from infra.settings import Settings
from views.chat_history.cassandra_store import CassandraHistory
from views.chat_history.sqlite_store import SqliteHistory
from views.chat_history.store import HistoryStore


def sqlite_path(settings: Settings) -> Path:
    """Where the SQLite backend keeps the history."""
    return settings.data_dir / "chat" / "history.sqlite3"


async def open_history(settings: Settings) -> HistoryStore:
    """The configured history store, connected and with its tables created; ``close()`` it when done."""
    if settings.chat.history_backend == "cassandra":
        return await CassandraHistory.open(settings.chat)
    return await SqliteHistory.open(sqlite_path(settings))

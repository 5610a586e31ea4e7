"""The credential store: each account's argon2id password hash, apart from the event log and the views.

Password hashes used to travel in ``UserRegistered`` on the ``users`` topic,
so every archive, export and analyst's replay held them, and the user view
put them into Valkey (and its AOF).  Now the only place a hash is written is
this store: one SQLite file under the data directory,
``<data dir>/credentials/passwords.sqlite``, in a directory only its owner
may enter (0700) and a file only its owner may read (0600).  It is not a
topic, so nothing archives, exports, tails or replays it, and
``glasscast rebuild-views`` leaves it alone.

Who reads it: the gateway's login and sign-up (gateways/passwords.py), and
nothing else.  Gateway processes on one machine (or sharing the data
volume, as in the compose file) share the file; SQLite's WAL mode lets them
read while one writes.

Calls block (file I/O): they run on the password pool's threads, next to
the argon2 work they go with.  Each call opens its own connection, since a
connection belongs to the thread that made it and a call costs far less
than the hash beside it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

STORE_DIR = "credentials"
STORE_FILE = "passwords.sqlite"
BUSY_TIMEOUT_S = 5.0  # another gateway process holding the write lock
_SCHEMA = """
CREATE TABLE IF NOT EXISTS credentials (
    user_id TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
)
"""


def store_path(data_dir: Path) -> Path:
    """Where the credential store of a data directory lives."""
    return data_dir / STORE_DIR / STORE_FILE


class CredentialStore:
    """Password hashes by user id, in one owner-only SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def open(cls, data_dir: Path) -> CredentialStore:
        """Create (or open) the store of ``data_dir`` with owner-only permissions."""
        path = store_path(data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        # Create the file with 0600 before SQLite does, so it is never readable by others, even briefly.
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        os.chmod(path, 0o600)
        store = cls(path)
        with store._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
            conn.commit()
        return store

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        try:
            yield conn
        finally:
            conn.close()

    def get(self, user_id: str) -> str | None:
        """The account's password hash, or None when it has none here."""
        with self._connect() as conn:
            row = conn.execute("SELECT password_hash FROM credentials WHERE user_id = ?", (user_id,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, user_id: str, password_hash: str) -> None:
        """Set the account's password hash (a new account, or a changed password)."""
        with self._connect() as conn:
            conn.execute("INSERT INTO credentials (user_id, password_hash, updated_at_ms) VALUES (?, ?, ?) "
                         "ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash, "
                         "updated_at_ms = excluded.updated_at_ms",
                         (user_id, password_hash, int(time.time() * 1000)))
            conn.commit()

    def delete(self, user_id: str) -> None:
        """Forget the account's credential (a sign-up the log refused)."""
        with self._connect() as conn:
            conn.execute("DELETE FROM credentials WHERE user_id = ?", (user_id,))
            conn.commit()

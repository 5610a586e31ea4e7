"""Personal data in the log, erasable: each user's fields sealed with a key of their own (crypto-shredding).

The ``users`` topic is append-only and archived, and analysts replay it; an
account's e-mail, display name and bio must still be erasable.  So those
fields never enter the log in clear: the gateway seals each one with the
user's own AES-256-GCM key (``seal``) before the event is produced, and
whoever shows them opens them with that key (``open_field``).  Deleting the
account deletes the key: every copy of the sealed bytes (topic, archive,
views, Valkey's AOF, an analyst's export) becomes noise, while the log and
every offset stay as they were, and a replay or ``glasscast rebuild-views``
shows the account as deleted.

A sealed field is ``pd1:`` and the base64url of a 12-byte nonce and the
ciphertext with its tag; the associated data binds it to the user and the
field, so a value copied into another user's event or field does not open.
A value without the prefix is an event written before sealing (shown as it
is); a sealed value whose key is gone opens to None.

The keys live in ``<data dir>/credentials/personal_keys.sqlite`` next to the
credential store (gateways/passwords_store.py): owner-only, not a topic,
never archived.  SQLite's ``secure_delete`` overwrites a deleted key's bytes
and the journal is a rollback journal (not WAL), so no old page keeps a copy.
Processes sharing the data directory share the file (the compose file
shares the data volume the same way).  Calls block: run them in a thread.
"""

from __future__ import annotations

import base64
import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

STORE_DIR = "credentials"
STORE_FILE = "personal_keys.sqlite"
PREFIX = "pd1:"
KEY_BYTES = 32
NONCE_BYTES = 12
BUSY_TIMEOUT_S = 5.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS personal_keys (
    user_id TEXT PRIMARY KEY,
    key BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
)
"""


def _aad(user_id: str, field: str) -> bytes:
    return f"glasscast personal data v1|{user_id}|{field}".encode()


def seal(key: bytes, user_id: str, field: str, value: str) -> str:
    """``value`` sealed with the user's key for ``field`` (pure but for the random nonce)."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, value.encode(), _aad(user_id, field))
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def is_sealed(value: str | None) -> bool:
    return value is not None and value.startswith(PREFIX)


def open_field(key: bytes | None, user_id: str, field: str, value: str | None) -> str | None:
    """The clear text of a field: as it is when never sealed, None when its key is gone or it does not open."""
    if value is None or not value.startswith(PREFIX):
        return value
    if key is None:
        return None
    raw = value[len(PREFIX):]
    try:
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        return AESGCM(key).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], _aad(user_id, field)).decode()
    except (ValueError, InvalidTag, UnicodeDecodeError):
        return None


def store_path(data_dir: Path) -> Path:
    return data_dir / STORE_DIR / STORE_FILE


class PersonalKeys:
    """Each user's data key, in one owner-only SQLite file; deleting a key erases the user's sealed fields."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def open(cls, data_dir: Path) -> PersonalKeys:
        path = store_path(data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))  # 0600 before SQLite creates it
        os.chmod(path, 0o600)
        keys = cls(path)
        with keys._connect() as conn:
            conn.execute("PRAGMA journal_mode=DELETE")  # no WAL file holding pages of deleted keys
            conn.execute(_SCHEMA)
            conn.commit()
        return keys

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        try:
            conn.execute("PRAGMA secure_delete=ON")  # a deleted key's bytes are overwritten in the file
            yield conn
        finally:
            conn.close()

    def get(self, user_id: str) -> bytes | None:
        """The user's key, or None: never created, or erased with the account."""
        with self._connect() as conn:
            row = conn.execute("SELECT key FROM personal_keys WHERE user_id = ?", (user_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def create(self, user_id: str) -> bytes:
        """The user's key, made now if it has none (idempotent: a retried sign-up gets the same key)."""
        with self._connect() as conn:
            conn.execute("INSERT OR IGNORE INTO personal_keys (user_id, key, created_at_ms) VALUES (?, ?, ?)",
                         (user_id, AESGCM.generate_key(bit_length=KEY_BYTES * 8), int(time.time() * 1000)))
            conn.commit()
            row = conn.execute("SELECT key FROM personal_keys WHERE user_id = ?", (user_id,)).fetchone()
        return bytes(row[0])

    def erase(self, user_id: str) -> None:
        """Delete the user's key: their sealed fields, wherever copies of them are, can no longer be read."""
        with self._connect() as conn:
            conn.execute("DELETE FROM personal_keys WHERE user_id = ?", (user_id,))
            conn.commit()

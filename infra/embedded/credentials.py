"""Passwords of the embedded Valkey and Schema Registry, generated once into the data directory.

The JWT secret's way (``infra/supervisor.py``): a random secret written once
to ``<data dir>/secrets/<name>.secret`` (mode 0600, created exclusively, so
two starters cannot disagree) and read back on every start, so a restarted
service and its clients keep agreeing.  Clients are handed the password
inside the service's URL, ``redis://:PASSWORD@host:port/0`` and
``http://glasscast:PASSWORD@host:port``: the form redis-py, httpx and
confluent-kafka's ``SchemaRegistryClient`` all authenticate with, so every
process that gets ``GLASSCAST_VALKEY_URL`` / ``GLASSCAST_REGISTRY_URL`` (the
gateway, processors, ingest, media workers, the CLI tools, tests) uses it
without another setting.  Logs never show it (``infra/log_redaction.py``
masks a URL's password) and what ``glasscast up`` prints leaves it out
(``without_password``).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

REGISTRY_USER = "glasscast"
SECRET_BYTES = 32  # 256 bits, as the JWT secret's minimum (RFC 7518 section 3.2)


def read_or_create_secret(path: Path) -> str:
    """The secret in ``path``, written there first (0600) if there is none yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it a moment ago: use theirs
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(SECRET_BYTES))
    return path.read_text().strip()


def embedded_secret(data_dir: Path, name: str) -> str:
    """The password of embedded service ``name`` (``valkey``, ``registry``) for this data directory."""
    return read_or_create_secret(data_dir / "secrets" / f"{name}.secret")


def with_password(url: str, password: str, user: str = "") -> str:
    """``url`` with ``user:password`` as its userinfo (replacing any it had)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}@"
    return urlunsplit(parts._replace(netloc=userinfo + host))


def url_credentials(url: str) -> tuple[str, str] | None:
    """The (user, password) a URL carries, or None when it has no password."""
    parts = urlsplit(url)
    if parts.password is None:
        return None
    return unquote(parts.username or ""), unquote(parts.password)


def without_password(url: str) -> str:
    """``url`` without its userinfo: fit to print."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

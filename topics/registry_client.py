"""A small Schema Registry client on httpx: register by subject, fetch by id, cached.

Speaks the Confluent REST API subset Glasscast needs; works against the
embedded registry and Confluent's.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx

from infra.log_redaction import redact
from topics.errors import RegistryError

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryClient:
    """Register schemas and resolve ids; every answer is cached for the process lifetime."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        if not url:
            raise RegistryError("no Schema Registry URL configured (GLASSCAST_REGISTRY_URL)")
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s,
                                  headers={"Accept": CONTENT_TYPE, "Content-Type": CONTENT_TYPE})
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, str] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            resp = self._http.request(method, path, content=None if body is None else json.dumps(body))
        except httpx.HTTPError as exc:
            # The URL may carry the registry's password (infra/embedded/credentials.py): never in a message.
            raise RegistryError(f"Schema Registry at {redact(self.url)} unreachable: {exc}") from exc
        if resp.status_code >= 400:
            try:
                message = resp.json().get("message", resp.text)
            except ValueError:
                message = resp.text
            raise RegistryError(f"{method} {path}: HTTP {resp.status_code}: {message}")
        return resp.json()

    def register(self, subject: str, schema: str) -> int:
        """The id of ``schema`` under ``subject``, registering it if needed."""
        key = (subject, schema)
        with self._lock:
            cached = self._ids.get(key)
        if cached is not None:
            return cached
        answer = self._call("POST", f"/subjects/{subject}/versions", {"schema": schema, "schemaType": "AVRO"})
        schema_id = int(answer["id"])
        with self._lock:
            self._ids[key] = schema_id
            self._schemas[schema_id] = schema
        return schema_id

    def schema(self, schema_id: int) -> str:
        """The schema text registered under ``schema_id``."""
        with self._lock:
            cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        answer = self._call("GET", f"/schemas/ids/{schema_id}")
        text = str(answer["schema"])
        with self._lock:
            self._schemas[schema_id] = text
        return text

    def subjects(self) -> list[str]:
        return list(self._call("GET", "/subjects"))

"""HTTP Basic authentication for the embedded Schema Registry (RFC 7617).

Confluent's registry takes its clients' credentials the same way
(``basic.auth.credentials.source=URL``: the userinfo of the registry URL), so
confluent-kafka's ``SchemaRegistryClient``, httpx and kcat/libserdes
authenticate without anything beyond the URL ``glasscast up`` hands them.  A
request without the right credentials gets Confluent's error shape,
``{"error_code": 401, "message": ...}``, and a ``WWW-Authenticate``
challenge; nothing else is answered, not even the root.
"""

from __future__ import annotations

import base64
import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"
REALM = "glasscast-registry"


class BasicAuth:
    """Pure ASGI middleware: HTTP requests pass only with ``Authorization: Basic`` for ``user:password``."""

    def __init__(self, app: ASGIApp, user: str, password: str) -> None:
        self.app = app
        self._expected = b"Basic " + base64.b64encode(f"{user}:{password}".encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error_code": 401, "message": "Unauthorized: this registry needs the user and "
                                                         "password of its URL (HTTP Basic)"}).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", f'Basic realm="{REALM}"'.encode())]})
        await send({"type": "http.response.body", "body": body})

    def _allowed(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                return hmac.compare_digest(value, self._expected)
        return False

"""The embedded Schema Registry's REST API, a subset of Confluent's.

Enough of https://docs.confluent.io/platform/current/schema-registry/develop/api.html
for confluent-kafka's ``SchemaRegistryClient`` and serdes (2.16), kcat/libserdes and
Kafka Connect: subjects and versions, schemas by id, lookup, soft and hard deletes,
compatibility config and tests, and a fixed READWRITE mode.  AVRO only.

Bodies are JSON as ``application/vnd.schemaregistry.v1+json``; errors are
``{"error_code": N, "message": "..."}`` with Confluent's codes (``errors.py``).
Boolean query parameters accept ``true``/``True``: the client formats some of them
with Python's ``str(bool)``.

When its own URL (``GLASSCAST_REGISTRY_URL``) carries a user and password, as
the one ``glasscast up`` generates does, every request must bring them (HTTP
Basic, ``auth.py``); without them it is open, as a registry behind a network
boundary (compose) is.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateways.quiet import QuietServer
from infra.embedded.credentials import url_credentials
from infra.embedded.registry.auth import BasicAuth
from infra.embedded.registry.errors import BadRequest, InvalidSchema, RegistryError
from infra.embedded.registry.state import LEVELS, Candidate, Reference, RegistryState, SchemaVersion
from infra.embedded.registry.store import RegistryStore
from infra.errors import SettingsError
from infra.settings import Settings

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"
SCHEMA_TYPES = ["AVRO"]


class RegistryJSON(JSONResponse):
    media_type = MEDIA_TYPE


def _store(request: Request) -> RegistryStore:
    store: RegistryStore = request.state.store
    return store


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() in ("true", "1")


def _page(items: list[Any], request: Request) -> list[Any]:
    try:
        offset = int(request.query_params.get("offset", 0))
        limit = int(request.query_params.get("limit", -1))
    except ValueError:
        raise BadRequest("offset and limit must be integers") from None
    return items[max(offset, 0):] if limit < 0 else items[max(offset, 0):max(offset, 0) + limit]


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise BadRequest(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


async def _candidate(request: Request, state: RegistryState) -> Candidate:
    body = await _body(request)
    schema = body.get("schema")
    if not isinstance(schema, str) or not schema.strip():
        raise InvalidSchema('Invalid schema: the body needs a non-empty "schema" string')
    refs = tuple(Reference.from_json(r) for r in body.get("references") or ())
    return state.parse(schema, body.get("schemaType"), refs)


def _version_json(sv: SchemaVersion) -> dict[str, Any]:
    out: dict[str, Any] = {"subject": sv.subject, "version": sv.version, "id": sv.id, "schema": sv.schema}
    return out | _schema_extras(sv)


def _schema_extras(sv: SchemaVersion) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if sv.schema_type != "AVRO":
        out["schemaType"] = sv.schema_type
    if sv.references:
        out["references"] = [r.to_json() for r in sv.references]
    return out


# -- root, subjects and versions --------------------------------------------------

async def root(request: Request) -> Response:
    return RegistryJSON({})


async def list_subjects(request: Request) -> Response:
    names = _store(request).state.subjects(_flag(request, "deleted"), _flag(request, "deleted_only"),
                                           request.query_params.get("subjectPrefix", ""))
    return RegistryJSON(_page(names, request))


async def list_versions(request: Request) -> Response:
    subject = request.path_params["subject"]
    versions = _store(request).state.versions(subject, _flag(request, "deleted"), _flag(request, "deleted_only"))
    return RegistryJSON(_page(versions, request))


async def get_version(request: Request) -> Response:
    p = request.path_params
    return RegistryJSON(_version_json(_store(request).state.version(p["subject"], p["version"],
                                                                      _flag(request, "deleted"))))


async def get_version_schema(request: Request) -> Response:
    p = request.path_params
    sv = _store(request).state.version(p["subject"], p["version"], _flag(request, "deleted"))
    return Response(sv.schema, media_type=MEDIA_TYPE)


async def register(request: Request) -> Response:
    store, subject = _store(request), request.path_params["subject"]
    candidate = await _candidate(request, store.state)
    schema_id = await store.execute(lambda state: state.plan_register(subject, candidate))
    return RegistryJSON({"id": schema_id})


async def lookup(request: Request) -> Response:
    state, subject = _store(request).state, request.path_params["subject"]
    candidate = await _candidate(request, state)
    return RegistryJSON(_version_json(state.lookup(subject, candidate, _flag(request, "deleted"))))


async def delete_subject(request: Request) -> Response:
    subject, permanent = request.path_params["subject"], _flag(request, "permanent")
    return RegistryJSON(await _store(request).execute(lambda s: s.plan_delete_subject(subject, permanent)))


async def delete_version(request: Request) -> Response:
    p, permanent = request.path_params, _flag(request, "permanent")
    version = await _store(request).execute(
        lambda s: s.plan_delete_version(p["subject"], p["version"], permanent))
    return RegistryJSON(version)


# -- schemas by id ----------------------------------------------------------------

async def get_schema(request: Request) -> Response:
    sv = _store(request).state.schema_by_id(request.path_params["schema_id"])
    return RegistryJSON({"schema": sv.schema} | _schema_extras(sv))


async def get_schema_text(request: Request) -> Response:
    sv = _store(request).state.schema_by_id(request.path_params["schema_id"])
    return Response(sv.schema, media_type=MEDIA_TYPE)


def _uses(request: Request) -> list[SchemaVersion]:
    uses = _store(request).state.uses_of_id(request.path_params["schema_id"], _flag(request, "deleted"))
    only = request.query_params.get("subject")
    return [sv for sv in uses if only is None or sv.subject == only]


async def get_schema_subjects(request: Request) -> Response:
    return RegistryJSON(_page(sorted({sv.subject for sv in _uses(request)}), request))


async def get_schema_versions(request: Request) -> Response:
    pairs = [{"subject": sv.subject, "version": sv.version} for sv in _uses(request)]
    return RegistryJSON(_page(pairs, request))


async def schema_types(request: Request) -> Response:
    return RegistryJSON(SCHEMA_TYPES)


# -- config, compatibility and mode -----------------------------------------------

async def get_config(request: Request) -> Response:
    level = _store(request).state.config(request.path_params.get("subject"), _flag(request, "defaultToGlobal"))
    return RegistryJSON({"compatibilityLevel": level})


async def put_config(request: Request) -> Response:
    body, subject = await _body(request), request.path_params.get("subject")
    wanted = body.get("compatibility", body.get("compatibilityLevel"))
    level = await _store(request).execute(lambda s: s.plan_set_config(subject, wanted))
    return RegistryJSON({"compatibility": level})


async def delete_config(request: Request) -> Response:
    subject = request.path_params.get("subject")
    old = await _store(request).execute(lambda s: s.plan_delete_config(subject))
    return RegistryJSON({"compatibilityLevel": old})


async def compatibility(request: Request) -> Response:
    state, subject = _store(request).state, request.path_params["subject"]
    candidate = await _candidate(request, state)
    problems = state.compatibility_problems(subject, candidate, request.path_params.get("version"))
    answer: dict[str, Any] = {"is_compatible": not problems}
    if _flag(request, "verbose"):
        answer["messages"] = problems
    return RegistryJSON(answer)


async def get_mode(request: Request) -> Response:
    return RegistryJSON({"mode": "READWRITE"})


# -- the app ----------------------------------------------------------------------

async def registry_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RegistryError)
    return RegistryJSON({"error_code": exc.error_code, "message": exc.message}, status_code=exc.status_code)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return RegistryJSON({"error_code": exc.status_code, "message": f"HTTP {exc.status_code} {exc.detail}"},
                        status_code=exc.status_code, headers=exc.headers)


ROUTES = [
    Route("/", root),
    Route("/subjects", list_subjects),
    Route("/subjects/{subject}/versions", list_versions),
    Route("/subjects/{subject}/versions", register, methods=["POST"]),
    Route("/subjects/{subject}/versions/{version}", get_version),
    Route("/subjects/{subject}/versions/{version}", delete_version, methods=["DELETE"]),
    Route("/subjects/{subject}/versions/{version}/schema", get_version_schema),
    Route("/subjects/{subject}", lookup, methods=["POST"]),
    Route("/subjects/{subject}", delete_subject, methods=["DELETE"]),
    Route("/schemas/ids/{schema_id:int}", get_schema),
    Route("/schemas/ids/{schema_id:int}/schema", get_schema_text),
    Route("/schemas/ids/{schema_id:int}/subjects", get_schema_subjects),
    Route("/schemas/ids/{schema_id:int}/versions", get_schema_versions),
    Route("/schemas/types", schema_types),
    Route("/config", get_config),
    Route("/config", put_config, methods=["PUT"]),
    Route("/config", delete_config, methods=["DELETE"]),
    Route("/config/{subject}", get_config),
    Route("/config/{subject}", put_config, methods=["PUT"]),
    Route("/config/{subject}", delete_config, methods=["DELETE"]),
    Route("/compatibility/subjects/{subject}/versions", compatibility, methods=["POST"]),
    Route("/compatibility/subjects/{subject}/versions/{version}", compatibility, methods=["POST"]),
    Route("/mode", get_mode),
    Route("/mode/{subject}", get_mode),
]


def create_registry_app(settings: Settings) -> Starlette:
    """The registry app; its Kafka store opens (topic read to the end) in the lifespan."""
    if not settings.kafka.bootstrap_servers:
        raise SettingsError("GLASSCAST_KAFKA_BOOTSTRAP_SERVERS: the registry needs a broker address")
    if settings.registry.compatibility.upper() not in LEVELS:
        raise SettingsError(f"GLASSCAST_REGISTRY_COMPATIBILITY={settings.registry.compatibility!r}: "
                            f"expected one of {', '.join(LEVELS)}")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        store = RegistryStore(settings.kafka, settings.registry)
        try:
            await store.open()
            yield {"store": store}
        finally:
            await store.close()

    credentials = url_credentials(settings.registry.url)
    middleware = [] if credentials is None else [Middleware(BasicAuth, user=credentials[0], password=credentials[1])]
    return Starlette(routes=ROUTES, lifespan=lifespan, middleware=middleware,
                     exception_handlers={RegistryError: registry_error, HTTPException: http_error})


def serve_registry(settings: Settings) -> None:
    """Serve the registry on settings.registry.host:port until interrupted."""
    config = uvicorn.Config(create_registry_app(settings), host=settings.registry.host,
                            port=settings.registry.port, lifespan="on", log_config=None)
    QuietServer(config).run()  # idle, it wakes once a second rather than ten times (gateways/quiet.py)

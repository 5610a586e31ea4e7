"""Discovery: the live directory, categories and search.

    GET /v1/directory/streams?category=&sort=viewers|recent&limit=&cursor=
    GET /v1/categories
    GET /v1/search?q=&live_only=true|false&limit=

Handlers only read the views the processors keep in Valkey
(views/discovery.py).  Directory pages are keyset ranges: the
cursor names the last stream a page showed, so paging is exact however many
streams tie on viewers.  A query-string problem is a 400 that names the
parameter; unknown parameters are refused so a typo is not silently ignored.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateways import validation as v
from gateways.errors import BadRequest
from gateways.services import services
from views.directory import SORTS, VIEWERS, category_key, category_rows, decode_cursor, encode_cursor
from views.search import query_tokens

DIRECTORY_LIMIT, DIRECTORY_MAX_LIMIT = 24, 100
SEARCH_LIMIT, SEARCH_MAX_LIMIT = 20, 100
BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def params(query: QueryParams, allowed: set[str]) -> dict[str, str]:
    """The query string as a dict, refusing unknown and repeated parameters."""
    for name in sorted(set(query.keys())):
        if name not in allowed:
            raise BadRequest(f"unknown parameter '{name}' (allowed: {', '.join(sorted(allowed))})", field=name)
        if len(query.getlist(name)) > 1:
            raise BadRequest(f"parameter '{name}' is given more than once", field=name)
    return dict(query)


def limit(data: dict[str, str], default: int, maximum: int) -> int:
    """``limit``: a whole number from 1 to ``maximum``."""
    return v.query_int(data.get("limit"), "limit", 1, maximum, default)


def choice(data: dict[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    """One of ``choices``; absent or empty means ``default``."""
    value = data.get(name) or default
    if value not in choices:
        raise BadRequest(f"'{name}' must be one of {', '.join(choices)}", field=name)
    return value


def boolean(data: dict[str, str], name: str, default: bool) -> bool:
    """true/false (or 1/0), any case; absent or empty means ``default``."""
    raw = data.get(name, "")
    if raw == "":
        return default
    if raw.lower() not in BOOLEANS:
        raise BadRequest(f"'{name}' must be true or false", field=name)
    return BOOLEANS[raw.lower()]


def category(data: dict[str, str]) -> str | None:
    """The category filter's key, or None for every category."""
    raw = data.get("category", "")
    if len(raw) > v.MAX_CATEGORY_LENGTH:
        raise BadRequest(f"'category' is longer than {v.MAX_CATEGORY_LENGTH} characters", field="category")
    return category_key(raw)


async def list_streams(request: Request) -> JSONResponse:
    data = params(request.query_params, {"category", "sort", "limit", "cursor"})
    sort = choice(data, "sort", SORTS, VIEWERS)
    count = limit(data, DIRECTORY_LIMIT, DIRECTORY_MAX_LIMIT)
    cat = category(data)
    after = None
    if data.get("cursor"):
        try:
            after = decode_cursor(sort, data["cursor"])
        except ValueError as exc:
            raise BadRequest(f"'cursor' is not valid: {exc}", field="cursor") from None
    entries, last = await services(request).views.discovery.page(sort, cat, after, count)
    body: dict[str, Any] = {"streams": [e.public() for e in entries],
                            "next_cursor": encode_cursor(sort, last) if last is not None else None}
    return JSONResponse(body)


async def list_categories(request: Request) -> JSONResponse:
    params(request.query_params, set())
    names, live, viewers = await services(request).views.discovery.categories()
    return JSONResponse({"categories": category_rows(names, live, viewers)})


async def search(request: Request) -> JSONResponse:
    data = params(request.query_params, {"q", "live_only", "limit"})
    try:
        tokens = query_tokens(data.get("q", ""))
    except ValueError as exc:
        raise BadRequest(f"'q' {exc}", field="q") from None
    live_only = boolean(data, "live_only", False)
    count = limit(data, SEARCH_LIMIT, SEARCH_MAX_LIMIT)
    results = await services(request).views.discovery.search(tokens, live_only, count)
    return JSONResponse({"results": results})


routes = [
    Route("/v1/directory/streams", list_streams, methods=["GET"]),
    Route("/v1/categories", list_categories, methods=["GET"]),
    Route("/v1/search", search, methods=["GET"]),
]

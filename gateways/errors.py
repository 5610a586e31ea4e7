"""Errors the gateway answers with, as RFC 9457 problem details.

    ApiError                  an HTTP answer other than success
    ├── BadRequest            400: body is not JSON or not an object
    ├── ValidationFailed      422: a field is missing or invalid
    ├── Unauthorized          401: no, forged or expired bearer token; wrong password
    ├── Forbidden             403: authenticated but not allowed
    ├── NotFound              404
    ├── RequestTimeout        408: the body did not arrive in time (the client is gone: nobody reads it)
    ├── Conflict              409: a unique name is taken
    ├── PayloadTooLarge       413
    ├── TooManyRequests       429: slow down (``Retry-After`` says for how long)
    └── Unavailable           503: the log or a view store did not answer (``reason`` says which)

A dependency's own errors never reach a client as a 500: ``dependency_error``
is the one place that maps them into this tree (as httpx maps httpcore's),
and the app registers it as the handler of every such error class
(``DEPENDENCY_ERRORS``), so no route catches them.  Valkey's connection-class
errors (refused, reset, timed out, loading, read-only replica, out of memory,
cluster down) become ``Unavailable`` with ``reason: "valkey_unavailable"`` and
a ``Retry-After``; any other redis error is a bug and stays a 500.  A blob
store that cannot be read (S3 unreachable or refusing) is ``Unavailable`` with
``reason: "blob_store_unavailable"``; a missing blob is each route's own 404.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from media.blob import BlobError
from views.errors import VALKEY_UNAVAILABLE

PROBLEM_JSON = "application/problem+json"


class ApiError(Exception):
    status = 500
    title = "Internal Server Error"
    headers: dict[str, str] | None = None

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def body(self, instance: str) -> dict[str, Any]:
        return {"type": "about:blank", "title": self.title, "status": self.status,
                "detail": self.detail, "instance": instance, **self.extra}


class BadRequest(ApiError):
    status, title = 400, "Bad Request"


class ValidationFailed(ApiError):
    status, title = 422, "Unprocessable Content"


class Unauthorized(ApiError):
    status, title = 401, "Unauthorized"


class Forbidden(ApiError):
    status, title = 403, "Forbidden"


class NotFound(ApiError):
    status, title = 404, "Not Found"


class RequestTimeout(ApiError):
    status, title = 408, "Request Timeout"


class Conflict(ApiError):
    status, title = 409, "Conflict"


class PayloadTooLarge(ApiError):
    status, title = 413, "Content Too Large"


class TooManyRequests(ApiError):
    status, title = 429, "Too Many Requests"

    def __init__(self, detail: str, retry_after_s: int, reason: str = "rate_limited", **extra: Any) -> None:
        super().__init__(detail, reason=reason, retry_after_s=retry_after_s, **extra)
        self.headers = {"Retry-After": str(retry_after_s)}


class Unavailable(ApiError):
    status, title = 503, "Service Unavailable"

    def __init__(self, detail: str, reason: str = "unavailable", retry_after_s: int = 1, **extra: Any) -> None:
        super().__init__(detail, reason=reason, **extra)
        self.reason = reason
        self.headers = {"Retry-After": str(retry_after_s)}


DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (*VALKEY_UNAVAILABLE, BlobError)


def dependency_error(exc: Exception) -> ApiError:
    """The answer for a dependency's error: ``Unavailable`` with a reason, or a 500 for anything else."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, VALKEY_UNAVAILABLE):
        return Unavailable(f"the view store (Valkey) did not answer: {type(exc).__name__}: {exc}",
                           reason="valkey_unavailable")
    if isinstance(exc, BlobError):  # its message names the bucket and key: for the log, not the client
        return Unavailable("the blob store did not answer", reason="blob_store_unavailable")
    return ApiError(f"{type(exc).__name__}")


def problem(request: Request, status: int, title: str, detail: str, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail,
            "instance": request.url.path, **extra}
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="glasscast"'
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers or None)


async def api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return problem(request, exc.status, exc.title, exc.detail, headers=exc.headers, **exc.extra)


async def dependency_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """A dependency's error (``DEPENDENCY_ERRORS``) as the problem ``dependency_error`` maps it to."""
    return await api_error_handler(request, dependency_error(exc))


async def http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    status = int(getattr(exc, "status_code", 500))
    detail = str(getattr(exc, "detail", "")) or "error"
    # Keep what the router says about the answer, such as Allow on a 405 (RFC 9110 section 15.5.6).
    return problem(request, status, detail, detail, headers=getattr(exc, "headers", None))

"""Serving one stored object from memory: validators, conditional and Range requests (RFC 9110).

The HLS origin and the avatars serve objects read from the blob store through
the origin cache (gateways/origin_cache.py), whatever the store (files or S3),
so a Range request is cut from the object's bytes rather than read from a
file.  The answers are those Starlette's ``FileResponse`` gives for the same
object: ``Accept-Ranges``, ``ETag`` and ``Last-Modified`` on every answer;
304 when ``If-None-Match`` lists the ETag (before any Range, 13.2.2); a single
range is a 206 with ``Content-Range``; a range starting past the end is a 416
with ``Content-Range: bytes */<size>`` (15.5.17); ``If-Range`` that matches
neither validator, an unknown unit or several ranges get the whole object,
which 14.2 allows (players ask for one range at a time).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from gateways.errors import ApiError, BadRequest
from gateways.origin_cache import OriginObject

MAX_RANGE_HEADER = 200  # one "bytes=a-b" is well under this; longer is not a range we serve


class RangeNotSatisfiable(ApiError):
    status, title = 416, "Range Not Satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(f"the range starts past the end of the object ({size} bytes)")
        self.headers = {"Content-Range": f"bytes */{size}"}


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` up to ``end`` (exclusive) of an object of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end - 1}/{self.size}"


def parse_range(header: str, size: int) -> ByteRange | None:
    """The one range ``header`` asks of ``size`` bytes; None: answer with the whole object."""
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    if len(header) > MAX_RANGE_HEADER:
        raise BadRequest(f"Range header longer than {MAX_RANGE_HEADER} characters")
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first or last) or not all(p.isascii() and p.isdigit() for p in (first, last) if p):
        raise BadRequest(f"malformed Range header {header!r}: expected bytes=START-END, START- or -SUFFIX")
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return ByteRange(max(size - suffix, 0), size, size)
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size:
        raise RangeNotSatisfiable(size)
    if end <= start:
        raise BadRequest(f"malformed Range header {header!r}: the range ends before it starts")
    return ByteRange(start, end, size)


def object_response(request: Request, obj: OriginObject, media_type: str, cache_control: str) -> Response:
    """``obj`` as the answer to a GET or HEAD, honouring If-None-Match, If-Range and Range."""
    headers = {"Cache-Control": cache_control, "accept-ranges": "bytes",
               "last-modified": obj.last_modified, "etag": obj.etag}
    if obj.etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers={"ETag": obj.etag, "Cache-Control": cache_control})
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if wanted is not None and if_range is not None and if_range not in (obj.etag, obj.last_modified):
        wanted = None  # the object changed since the client's copy: all of it (RFC 9110 13.1.5)
    part = parse_range(wanted, len(obj.body)) if wanted is not None else None
    head = request.method == "HEAD"
    if part is None:
        headers["content-length"] = str(len(obj.body))
        return Response(b"" if head else obj.body, media_type=media_type, headers=headers)
    headers |= {"content-range": part.content_range, "content-length": str(part.end - part.start)}
    return Response(b"" if head else obj.body[part.start:part.end], status_code=206, media_type=media_type,
                    headers=headers)

"""Stream thumbnails: ``GET /thumbs/{stream_id}.jpg``, the newest keyframe of a live stream.

The media worker replaces ``thumbs/{stream_id}.jpg`` in the origin store once
per GOP (media/transcode/thumbnail.py).  Thumbnails are public, like the live
directory that shows them, so no playback token is asked for.  They change
every GOP, so they are cached for five seconds and never kept in the
gateway's memory; concurrent requests still share one store read
(gateways/origin_cache.py), and a browser revalidating with the ETag gets 304.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateways.errors import NotFound
from gateways.hls import read_origin_object
from gateways.services import services
from media.blob import BlobNotFound
from media.transcode.thumbnail import thumbnail_key

THUMBNAIL_CACHE = "public, max-age=5"


async def thumbnail(request: Request) -> Response:
    svc = services(request)
    stream_id = str(request.path_params["stream_id"])
    key = thumbnail_key(stream_id)
    try:
        obj = await svc.origin_cache.get(key, lambda: read_origin_object(svc.origin, key), keep=False)
    except BlobNotFound:
        raise NotFound(f"stream {stream_id} has no thumbnail") from None
    headers = {"Cache-Control": THUMBNAIL_CACHE, "ETag": obj.etag, "Last-Modified": obj.last_modified}
    if obj.etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(b"" if request.method == "HEAD" else obj.body, media_type="image/jpeg",
                    headers={**headers, "Content-Length": str(len(obj.body))})


routes = [
    Route("/thumbs/{stream_id:uuid}.jpg", thumbnail, methods=["GET", "HEAD"]),
]

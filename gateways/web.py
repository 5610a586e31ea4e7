"""The web app: the live directory (``/``), channel pages (``/c/{name}``, with their Videos and Clips
tabs), past broadcasts (``/videos/{id}``, chat replayed beside the video), clips (``/clips/{id}``, also
``?embed=1`` for other sites' iframes), profiles (``/u/{name}``), the creator dashboard
(``/dashboard``) and its analytics charts (``/dashboard/analytics``).  Every page but an embedded clip
has the signed-in user's notification menu.

Pages are static HTML (gateways/web/pages/); what they show comes from the
REST API through plain ES modules (gateways/web/static/), so the gateway keeps
no page state and any instance can serve any page.  hls.js and uPlot are installed by npm
at set-up, pinned by gateways/web/package-lock.json, and served from
node_modules under ``/static/vendor/``.

Caching (RFC 9111): pages and the app's own scripts and styles are
``no-cache``, revalidated by ETag on every load, so a new release shows at
once; vendor files are named with the installed version in their URL
(``?v=1.7.4``), so they can be kept for a year.  Chat emotes
(``/static/emotes/{id}.svg``, the ids of gateways/chat/emotes.py) are drawn
in every chat line and change only with a release, so browsers and caches
keep them for a day and revalidate by ETag after that.  Pages carry a
Content-Security-Policy that runs scripts from this origin only and no inline
script, so text from other users (chat, titles) can never run as script.
Only the clip page may be framed by other sites (``frame-ancestors *``), so a
clip can be embedded as on Twitch; every other page refuses framing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from gateways.errors import NotFound
from gateways.validation import NAME_RE

WEB_ROOT = Path(__file__).resolve().parent / "web"
PAGES_DIR = WEB_ROOT / "pages"
STATIC_DIR = WEB_ROOT / "static"
HLS_PACKAGE = WEB_ROOT / "node_modules" / "hls.js"
# uPlot draws the creator analytics charts: canvas time series in ~50 KB with no dependencies, fast on
# thousands of points, MIT, and kept up (https://github.com/leeoniya/uPlot); Chart.js would be four times the size.
UPLOT_PACKAGE = WEB_ROOT / "node_modules" / "uplot"
# /static/vendor/{name} -> (installed package, file in it, media type)
VENDOR_FILES = {
    "hls.min.js": (HLS_PACKAGE, "dist/hls.min.js", "text/javascript"),
    "uPlot.iife.min.js": (UPLOT_PACKAGE, "dist/uPlot.iife.min.js", "text/javascript"),
    "uPlot.min.css": (UPLOT_PACKAGE, "dist/uPlot.min.css", "text/css"),
}
VERSION_PLACEHOLDER = "{{hls_version}}"
UPLOT_VERSION_PLACEHOLDER = "{{uplot_version}}"

PAGE_CACHE = "no-cache"
APP_CACHE = "no-cache"
VENDOR_CACHE = "public, max-age=31536000, immutable"
EMOTE_DIR = "emotes"
EMOTE_CACHE = "public, max-age=86400, stale-while-revalidate=604800"
# An SVG opened on its own is a document: ours hold no script, and this makes sure none would run.
SVG_POLICY = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
# MSE plays from blob: URLs; connect-src 'self' also covers the same-origin ws:/wss: chat
# socket (CSP Level 3, 6.7.2.8); hls.js runs without a worker (gateways/web/static/js/player.js).
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data: blob:",
    "media-src 'self' blob:", "connect-src 'self'", "worker-src 'none'", "object-src 'none'",
    "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
])
PAGE_HEADERS = {
    "Cache-Control": PAGE_CACHE,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
EMBEDDABLE_POLICY = CONTENT_SECURITY_POLICY.replace("frame-ancestors 'none'", "frame-ancestors *")
EMBEDDABLE_HEADERS = {**PAGE_HEADERS, "Content-Security-Policy": EMBEDDABLE_POLICY}


def hls_version(package_dir: Path = HLS_PACKAGE) -> str | None:
    """The installed hls.js version, or None when ``npm ci`` has not run."""
    try:
        version = json.loads((package_dir / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return version if isinstance(version, str) else None


def render_page(template: str, version: str | None, uplot: str | None = None) -> str:
    """A page with the vendor versions in its script URLs (pure)."""
    return template.replace(VERSION_PLACEHOLDER, version or "missing").replace(
        UPLOT_VERSION_PLACEHOLDER, uplot or "missing")


def _read_page(name: str) -> str:
    return render_page((PAGES_DIR / name).read_text(encoding="utf-8"), hls_version(), hls_version(UPLOT_PACKAGE))


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _not_modified(request: Request, etag: str) -> bool:
    wanted = request.headers.get("if-none-match", "")
    return etag in {tag.strip().removeprefix("W/") for tag in wanted.split(",")}


async def _page(request: Request, name: str, headers: dict[str, str] = PAGE_HEADERS) -> Response:
    body = (await asyncio.to_thread(_read_page, name)).encode()
    etag = _etag(body)
    if _not_modified(request, etag):
        return Response(status_code=304, headers={**headers, "ETag": etag})
    return HTMLResponse(body, headers={**headers, "ETag": etag})


async def directory_page(request: Request) -> Response:
    return await _page(request, "index.html")


async def channel_page(request: Request) -> Response:
    name = request.path_params["channel_name"]
    if not NAME_RE.match(name):
        raise NotFound(f"no channel can be named '{name[:64]}': names are 4-25 letters, digits or underscores")
    return await _page(request, "channel.html")


async def profile_page(request: Request) -> Response:
    name = request.path_params["user_name"]
    if not NAME_RE.match(name):
        raise NotFound(f"no user can be named '{name[:64]}': names are 4-25 letters, digits or underscores")
    return await _page(request, "profile.html")


async def dashboard_page(request: Request) -> Response:
    return await _page(request, "dashboard.html")


async def analytics_page(request: Request) -> Response:
    return await _page(request, "analytics.html")


async def video_page(request: Request) -> Response:
    return await _page(request, "video.html")


async def clip_page(request: Request) -> Response:
    return await _page(request, "clip.html", EMBEDDABLE_HEADERS)


async def vendor_file(request: Request) -> Response:
    """hls.js and uPlot from node_modules: only the files the pages load, cached for a year."""
    name = request.path_params["name"]
    vendored = VENDOR_FILES.get(name)
    if vendored is None:
        raise NotFound(f"/static/vendor/{name[:64]} does not exist")
    package, relative, media_type = vendored
    path = package / relative
    try:
        stat_result = await asyncio.to_thread(os.stat, path)
    except OSError:
        raise NotFound(f"{name} is not installed: run `npm ci` in gateways/web (part of `make setup`)") from None
    response = FileResponse(path, media_type=media_type, stat_result=stat_result,
                            headers={"Cache-Control": VENDOR_CACHE, "X-Content-Type-Options": "nosniff"})
    etag = response.headers["etag"]
    if _not_modified(request, etag):
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": VENDOR_CACHE})
    return response


class AppFiles(StaticFiles):
    """The app's own scripts, styles and images: revalidated on every use (emotes: daily), never content-sniffed."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code == 404:
                raise NotFound(f"/static/{path[:128]} does not exist") from None
            raise

    def file_response(self, full_path: Any, stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        emote = self.get_path(scope).split(os.sep, 1)[0] == EMOTE_DIR
        response.headers["Cache-Control"] = EMOTE_CACHE if emote else APP_CACHE
        response.headers["X-Content-Type-Options"] = "nosniff"
        if str(full_path).endswith(".svg"):
            response.headers["Content-Security-Policy"] = SVG_POLICY
        return response


routes = [
    Route("/", directory_page, methods=["GET"]),
    Route("/c/{channel_name}", channel_page, methods=["GET"]),
    Route("/u/{user_name}", profile_page, methods=["GET"]),
    Route("/dashboard", dashboard_page, methods=["GET"]),
    Route("/dashboard/analytics", analytics_page, methods=["GET"]),
    Route("/videos/{video_id:uuid}", video_page, methods=["GET"]),
    Route("/clips/{clip_id:uuid}", clip_page, methods=["GET"]),
    Route("/static/vendor/{name}", vendor_file, methods=["GET"]),
    Mount("/static", app=AppFiles(directory=STATIC_DIR), name="static"),
]

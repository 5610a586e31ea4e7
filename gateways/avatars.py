"""Avatars: ``PUT /v1/me/avatar`` (the image as the body) and ``GET /avatars/{user_id}/{name}.jpg``.

The upload is at most ``MAX_AVATAR_BYTES``, must be a PNG, JPEG, WebP or GIF
(named by its bytes, not its Content-Type), at most 4096 pixels a side, and is
re-encoded to a 256x256 JPEG (media/avatar.py) in a thread: at most
``AVATAR_JOBS`` at once per gateway and one at a time per user (429 with
Retry-After otherwise), so uploads cannot take the CPU the media paths need.
The JPEG is stored in the origin under ``avatars/<user id>/<digest>.jpg`` (a new
name per picture, so it is served immutable) and the profile's ``avatar_url``
points at it through ``ProfileUpdated``.  Deleting the account deletes the
user's avatars (gateways/profiles.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateways.errors import NotFound, PayloadTooLarge, TooManyRequests, ValidationFailed
from gateways.hls import read_origin_object
from gateways.object_response import object_response
from gateways.services import Services, services
from media.avatar import AvatarError, make_avatar
from media.blob import BlobNotFound
from schemas.records.user import ProfileUpdated

MAX_AVATAR_BYTES = 2 * 1024 * 1024
AVATAR_NAME = re.compile(r"[0-9a-f]{32}\.jpg")
IMMUTABLE = "public, max-age=31536000, immutable"


async def _image(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and (
            len(declared) > 18 or int(declared) > MAX_AVATAR_BYTES):
        raise PayloadTooLarge(f"an avatar is at most {MAX_AVATAR_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_AVATAR_BYTES:
            raise PayloadTooLarge(f"an avatar is at most {MAX_AVATAR_BYTES} bytes")
    if not body:
        raise ValidationFailed("the request body must be the image (PNG, JPEG, WebP or GIF)", field="body")
    return bytes(body)


def avatar_dir(user_id: str) -> str:
    return f"avatars/{user_id}"


def forget_avatars(svc: Services, user_id: str) -> None:
    """Delete every avatar of the user from the origin (blocking)."""
    svc.origin.delete_prefix(f"{avatar_dir(user_id)}/")


async def put_avatar(request: Request) -> JSONResponse:
    svc = services(request)
    principal = await svc.user_principal(request)
    user_id = principal.user_id
    if user_id in svc.avatar_uploads or svc.avatar_jobs.locked():
        raise TooManyRequests("an avatar is already being processed; try again in a moment", 1,
                              reason="avatar_busy")
    svc.avatar_uploads.add(user_id)
    try:
        data = await _image(request)
        async with svc.avatar_jobs:
            try:
                jpeg = await asyncio.to_thread(make_avatar, data)
            except AvatarError as exc:
                raise ValidationFailed(str(exc), field="body") from None
    finally:
        svc.avatar_uploads.discard(user_id)
    name = f"{hashlib.sha256(jpeg).hexdigest()[:32]}.jpg"
    await asyncio.to_thread(svc.origin.put, f"{avatar_dir(user_id)}/{name}", jpeg)
    url = f"/avatars/{user_id}/{name}"
    ack = await svc.emit(ProfileUpdated(occurred_at=svc.now_ms(), user_id=user_id, avatar_url=url), user_id)

    async def seen() -> bool:
        user = await svc.views.get_user(user_id)
        return user is not None and user.seq >= ack.offset

    await svc.wait_for(seen)
    return JSONResponse({"avatar_url": url}, headers={"Cache-Control": "no-store"})


async def get_avatar(request: Request) -> Response:
    svc = services(request)
    user_id, name = str(request.path_params["user_id"]), str(request.path_params["name"])
    if not AVATAR_NAME.fullmatch(name):
        raise NotFound("no such avatar")
    key = f"{avatar_dir(user_id)}/{name}"
    try:
        # Not kept in memory: deleting the account deletes the avatar, on every gateway at once.
        obj = await svc.origin_cache.get(key, lambda: read_origin_object(svc.origin, key), keep=False)
    except BlobNotFound:
        raise NotFound("no such avatar") from None
    return object_response(request, obj, "image/jpeg", IMMUTABLE)


routes = [
    Route("/v1/me/avatar", put_avatar, methods=["PUT"]),
    Route("/avatars/{user_id:uuid}/{name}", get_avatar, methods=["GET", "HEAD"]),
]

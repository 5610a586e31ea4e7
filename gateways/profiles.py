"""Public profiles, editing one's own, and deleting one's account (crypto-shredding).

- ``GET /v1/users/{id or name}``: the public profile (display name, bio, avatar
  URL, created_at_ms) and the user's channels.  A deleted account is a 404;
  more than ``PROFILE_READS_PER_MINUTE`` reads from one client address in a
  minute is a 429 with Retry-After.
- ``PATCH /v1/me`` ``{display_name?, bio?}``: a ``ProfileUpdated`` whose fields
  are sealed with the user's personal-data key (views/personal_data.py).
- ``POST /v1/me/password`` ``{old_password, new_password}``: the old password
  is checked like a login; the new hash goes to the credential store, then
  ``PasswordChanged`` goes on the log.  Tokens carry the account's count of
  password changes (claim ``cv``), so every token issued before the change is
  refused from then on (at once here, elsewhere within ``KnownUsers``' time to
  live); the answer holds a new token.
- ``DELETE /v1/me`` ``{password}``: the password is checked like a login
  (throttled, one argon2 verification); then the user's key is erased, so
  their e-mail, display name and bio in every earlier event (topic, archive,
  views, exports) no longer open, and their avatars are deleted; then an
  ``Unfollowed`` for each channel they follow and ``UserDeleted`` go on the log
  (the notification processor erases their in-app feed on it), the credential
  is dropped, and every token of the account stops working (at once here, on
  other gateways within ``KnownUsers``' time to live).  The key goes first: a
  deletion cut short by a crash has still erased the personal data, and asking
  again finishes it (each step is idempotent).  The username stays taken; the
  user's channels stay (they are the channel's, not personal data).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateways import validation as v
from gateways.accounts import client_address
from gateways.auth import issue_token
from gateways.avatars import forget_avatars
from gateways.channels import channel_json
from gateways.chat.ratelimit import RateLimiter
from gateways.errors import BadRequest, NotFound, TooManyRequests, Unauthorized
from gateways.passwords import Busy
from gateways.services import Services, json_body, services
from schemas.records.social import Unfollowed
from schemas.records.user import PasswordChanged, ProfileUpdated, UserDeleted
from views.follows import FOLLOWING
from views.personal_data import seal
from views.users import UserView, profile_of

MAX_DISPLAY_NAME = 64
MAX_BIO = 300
UNFOLLOW_PAGE = 200  # follows unfollowed at once when an account is deleted
PROFILE_READS_PER_MINUTE = 300  # public profile reads per client address
READ_WINDOW_MS = 60_000


class ProfileReads(RateLimiter):
    """Public profile reads per client address in a sliding minute (each opens sealed fields)."""

    def __init__(self, svc: Services) -> None:
        super().__init__(svc.redis, svc.settings.valkey.key_prefix)
        self.prefix = f"{svc.settings.valkey.key_prefix}profiles:rate:"


async def _user(svc: Services, ref: str) -> UserView | None:
    """A user by id (a UUID) or by name."""
    try:
        user_id = str(uuid.UUID(ref))
    except ValueError:
        return await svc.views.get_user_by_name(ref)
    return await svc.views.get_user(user_id)


async def profile_json(svc: Services, user: UserView) -> dict[str, Any]:
    """What anyone may see about a user."""
    key = await asyncio.to_thread(svc.personal_keys.get, user.id)
    profile = profile_of(user, key)
    return {"id": user.id, "username": user.username, "display_name": profile.display_name or user.username,
            "bio": profile.bio or "", "avatar_url": user.avatar_url, "created_at_ms": user.created_at_ms}


async def get_profile(request: Request) -> JSONResponse:
    svc = services(request)
    allowed, wait_ms = await ProfileReads(svc).allow("reads", client_address(request), svc.now_ms(),
                                                     READ_WINDOW_MS, PROFILE_READS_PER_MINUTE, uuid.uuid4().hex)
    if not allowed:
        wait_s = max(1, math.ceil(wait_ms / 1000))
        raise TooManyRequests(f"too many profile reads: at most {PROFILE_READS_PER_MINUTE} a minute; "
                              f"try again in {wait_s} s", retry_after_s=wait_s)
    ref = str(request.path_params["user"])
    if not 0 < len(ref) <= 64:
        raise NotFound("no such user")
    user = await _user(svc, ref)
    if user is None or user.deleted:
        raise NotFound(f"user {ref[:64]!r} does not exist")
    channels = [await channel_json(svc, c) for c in await svc.views.channels_of(user.id)]
    return JSONResponse({**await profile_json(svc, user), "channels": channels})


async def update_me(request: Request) -> JSONResponse:
    svc = services(request)
    principal = await svc.user_principal(request)
    data = await json_body(request)
    v.only(data, {"display_name", "bio"})
    display_name = v.text(data, "display_name", required=False, max_length=MAX_DISPLAY_NAME)
    bio = v.text(data, "bio", required=False, max_length=MAX_BIO)
    if display_name is None and bio is None:
        raise BadRequest("nothing to change: give 'display_name' and/or 'bio'")
    user_id = principal.user_id
    key = await asyncio.to_thread(svc.personal_keys.create, user_id)  # an account from before sealing gets one
    ack = await svc.emit(ProfileUpdated(
        occurred_at=svc.now_ms(), user_id=user_id,
        display_name=None if display_name is None else seal(key, user_id, "display_name", display_name),
        bio=None if bio is None else seal(key, user_id, "bio", bio)), user_id)

    async def seen() -> bool:
        user = await svc.views.get_user(user_id)
        return user is not None and user.seq >= ack.offset

    await svc.wait_for(seen)
    user = await svc.views.get_user(user_id)
    if user is None or user.deleted:
        raise Unauthorized("the token's account does not exist")
    return JSONResponse(await profile_json(svc, user), headers={"Cache-Control": "no-store"})


async def _checked_password(svc: Services, request: Request, user: UserView, password: str) -> None:
    """The account's password, checked as a login checks it (throttled, one argon2 verification); else 401."""
    svc.passwords.check_room()
    attempt = await svc.login_throttle.attempt(user.username, client_address(request), svc.now_ms())
    try:
        verdict = await svc.passwords.verify(user.id, password, user.legacy_password_hash)
    except Busy:
        await svc.login_throttle.release(attempt)
        raise
    if not verdict.ok:
        raise Unauthorized("the password is not this account's")
    await svc.login_throttle.succeeded(attempt)


async def _signed_in_user(svc: Services, request: Request) -> UserView:
    principal = await svc.user_principal(request)
    user = await svc.views.get_user(principal.user_id)
    if user is None or user.deleted:
        raise Unauthorized("the token's account does not exist")
    return user


async def change_password(request: Request) -> JSONResponse:
    svc = services(request)
    try:
        return await _change_password(svc, request)
    except (Busy, TooManyRequests) as refused:
        await svc.login_throttle.hold(refused)
        raise


async def _change_password(svc: Services, request: Request) -> JSONResponse:
    user = await _signed_in_user(svc, request)
    data = await json_body(request)
    v.only(data, {"old_password", "new_password"})
    old = v.string(data, "old_password", max_length=v.MAX_PASSWORD_LENGTH)
    new = v.password(data, svc.settings.auth.min_password_length, field="new_password")
    assert old is not None  # required
    await _checked_password(svc, request, user, old)
    await svc.passwords.register(user.id, new)  # the new hash first: from now on only it opens the account
    ack = await svc.emit(PasswordChanged(occurred_at=svc.now_ms(), user_id=user.id), user.id)
    version = user.credentials_version + 1
    svc.known_users.add(user.id, version)

    async def seen() -> bool:
        after = await svc.views.get_user(user.id)
        return after is not None and after.seq >= ack.offset

    await svc.wait_for(seen)
    auth = svc.settings.auth
    token = issue_token(str(auth.jwt_secret), auth.jwt_issuer, user.id, user.username, int(svc.clock()),
                        auth.jwt_ttl_s, version)
    return JSONResponse({"access_token": token, "token_type": "bearer", "expires_in": auth.jwt_ttl_s,
                         "user": {"id": user.id, "username": user.username}}, headers={"Cache-Control": "no-store"})


async def delete_me(request: Request) -> Response:
    svc = services(request)
    try:
        return await _delete_me(svc, request)
    except (Busy, TooManyRequests) as refused:  # answered, but not at once (gateways/login_throttle.py)
        await svc.login_throttle.hold(refused)
        raise


async def _delete_me(svc: Services, request: Request) -> Response:
    user = await _signed_in_user(svc, request)
    data = await json_body(request)
    v.only(data, {"password"})
    password = v.string(data, "password", max_length=v.MAX_PASSWORD_LENGTH)
    assert password is not None  # required
    await _checked_password(svc, request, user, password)
    await asyncio.to_thread(svc.personal_keys.erase, user.id)
    await asyncio.to_thread(forget_avatars, svc, user.id)
    await _unfollow_all(svc, user.id)
    ack = await svc.emit(UserDeleted(occurred_at=svc.now_ms(), user_id=user.id), user.id)
    await svc.passwords.forget(user.id)
    svc.known_users.forget(user.id)

    async def seen() -> bool:
        after = await svc.views.get_user(user.id)
        return after is not None and after.seq >= ack.offset

    await svc.wait_for(seen)
    return Response(status_code=204)


async def _unfollow_all(svc: Services, user_id: str) -> None:
    """An ``Unfollowed`` for every channel the user follows, acknowledged, before the account goes.

    Follower counts, the go-live index and followers-only chat then forget the account through their usual
    folds.  A gateway that dies half-way leaves the account undeleted; deleting again emits the rest.
    """
    after: str | None = None
    while True:
        rows, after = await svc.views.follows.page(FOLLOWING, user_id, after, UNFOLLOW_PAGE)
        await asyncio.gather(*(svc.emit(Unfollowed(occurred_at=svc.now_ms(), follower_id=user_id,
                                                   channel_id=r.id), f"{user_id}:{r.id}") for r in rows))
        if after is None:
            return


routes = [
    Route("/v1/users/{user}", get_profile, methods=["GET"]),
    Route("/v1/me", update_me, methods=["PATCH"]),
    Route("/v1/me", delete_me, methods=["DELETE"]),
    Route("/v1/me/password", change_password, methods=["POST"]),
]

"""Accounts: register (``POST /v1/users``), log in (``POST /v1/auth/login``), who am I (``GET /v1/me``).

Usernames are unique case-insensitively: a name is claimed in Valkey (SET NX)
before its UserRegistered event is produced, and released if the log refuses
the event, so two concurrent sign-ups cannot both win.

Passwords never enter the log or the views: sign-up hashes the password in
the password pool and stores the hash in the credential store
(gateways/passwords_store.py) before the event, which carries none.  The
e-mail goes into the event sealed with the user's personal-data key, made at
sign-up (views/personal_data.py), so deleting the account erases it.  A login
is refused before any hashing when its account or client must wait
(gateways/login_throttle.py) or the hash queue is full (503), and does the
same argon2 work whether or not the account exists (gateways/passwords.py).
"""

from __future__ import annotations

import asyncio
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateways import validation as v
from gateways.auth import issue_token
from gateways.channels import channel_json
from gateways.errors import Conflict, TooManyRequests, Unauthorized
from gateways.passwords import Busy
from gateways.services import Services, json_body, services
from schemas.records.user import UserRegistered
from views.personal_data import seal


async def register(request: Request) -> JSONResponse:
    svc = services(request)
    data = await json_body(request)
    v.only(data, {"username", "password", "email"})
    username = v.name(data, "username")
    password = v.password(data, svc.settings.auth.min_password_length)
    email = v.email(data)
    user_id = str(uuid.uuid4())
    try:
        svc.passwords.check_room()  # a full hash queue refuses now, before the name is claimed
    except Busy as busy:
        await svc.login_throttle.hold(busy)
        raise
    if not await svc.views.claim("username", username, user_id):
        raise Conflict(f"username '{username}' is taken", field="username")
    stored = False
    try:
        # The credential first: once the event is visible, a login must find it.
        await svc.passwords.register(user_id, password)
        stored = True
        # Personal fields enter the log sealed with the user's own key (views/personal_data.py).
        key = await asyncio.to_thread(svc.personal_keys.create, user_id)
        ack = await svc.emit(UserRegistered(occurred_at=svc.now_ms(), user_id=user_id, username=username,
                                            email=None if email is None else seal(key, user_id, "email", email)),
                             user_id)
    except BaseException as exc:
        if stored:
            await svc.passwords.forget(user_id)
        await svc.views.release("username", username, user_id)
        if isinstance(exc, Busy):
            await svc.login_throttle.hold(exc)
        raise

    async def visible() -> bool:
        user = await svc.views.get_user(user_id)
        return user is not None and user.seq >= ack.offset

    await svc.wait_for(visible)
    return JSONResponse({"id": user_id, "username": username}, status_code=201,
                        headers={"Location": f"/v1/users/{user_id}"})


async def login(request: Request) -> JSONResponse:
    svc = services(request)
    try:
        return await _login(svc, request)
    except (Busy, TooManyRequests) as refused:  # answered, but not at once (gateways/login_throttle.py)
        await svc.login_throttle.hold(refused)
        raise


async def _login(svc: Services, request: Request) -> JSONResponse:
    data = await json_body(request)
    v.only(data, {"username", "password"})
    username = v.string(data, "username", max_length=64)
    password = v.string(data, "password", max_length=v.MAX_PASSWORD_LENGTH)
    assert username is not None and password is not None
    svc.passwords.check_room()  # a full hash queue refuses now, at the cost of nothing
    attempt = await svc.login_throttle.attempt(username, client_address(request), svc.now_ms())
    try:
        user = await svc.views.get_user_by_name(username)
        if user is not None and user.deleted:
            user = None  # a deleted account signs in as no account does (the dummy hash's work)
        elif user is None and await svc.views.claimed("username", username) is not None:
            # Registered a moment ago: the view is catching up with the log.
            async def visible() -> bool:
                return await svc.views.get_user_by_name(username) is not None
            await svc.wait_for(visible)
            user = await svc.views.get_user_by_name(username)
        # An unknown name is verified against the dummy hash: the same argon2 work as a real account.
        verdict = await svc.passwords.verify(None if user is None else user.id, password,
                                             None if user is None else user.legacy_password_hash)
    except Busy:
        await svc.login_throttle.release(attempt)
        raise
    if user is None or not verdict.ok:
        raise Unauthorized("invalid username or password")
    await svc.login_throttle.succeeded(attempt)
    if verdict.legacy and user.legacy_password_hash:
        # Registered before the credential store: its hash moves there at its first login.
        await svc.passwords.adopt(user.id, user.legacy_password_hash)
    auth = svc.settings.auth
    token = issue_token(str(auth.jwt_secret), auth.jwt_issuer, user.id, user.username,
                        int(svc.clock()), auth.jwt_ttl_s, user.credentials_version)
    return JSONResponse({"access_token": token, "token_type": "bearer", "expires_in": auth.jwt_ttl_s,
                         "user": {"id": user.id, "username": user.username}})


async def me(request: Request) -> JSONResponse:
    """The signed-in user and their channels (with live and configured stream ids): the dashboard's start."""
    svc = services(request)
    principal = await svc.user_principal(request)
    user = await svc.views.get_user(principal.user_id)
    if user is None:
        raise Unauthorized("the token's account does not exist")
    owned = [await channel_json(svc, c) for c in await svc.views.channels_of(user.id)]
    return JSONResponse({"user": {"id": user.id, "username": user.username}, "channels": owned},
                        headers={"Cache-Control": "no-store"})


def client_address(request: Request) -> str:
    """The client's address as the server saw it (behind a proxy: what the server trusts it to forward)."""
    return request.client.host if request.client is not None else "unknown"


routes = [
    Route("/v1/users", register, methods=["POST"]),
    Route("/v1/auth/login", login, methods=["POST"]),
    Route("/v1/me", me, methods=["GET"]),
]

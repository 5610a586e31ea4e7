"""Accounts: register (``POST /v1/users``), log in (``POST /v1/auth/login``), who am I (``GET /v1/me``).

Usernames are unique case-insensitively: a name is claimed in Valkey (SET NX)
before its UserRegistered event is produced, and released if the log refuses
the event, so two concurrent sign-ups cannot both win.
"""

from __future__ import annotations

import asyncio
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateways import validation as v
from gateways.auth import hash_password, issue_token, verify_password
from gateways.channels import channel_json
from gateways.errors import Conflict, NotFound, Unauthorized
from gateways.services import json_body, services
from schemas.records.user import UserRegistered


async def register(request: Request) -> JSONResponse:
    svc = services(request)
    data = await json_body(request)
    v.only(data, {"username", "password", "email"})
    username = v.name(data, "username")
    password = v.password(data, svc.settings.auth.min_password_length)
    email = v.email(data)
    user_id = str(uuid.uuid4())
    if not await svc.views.claim("username", username, user_id):
        raise Conflict(f"username '{username}' is taken", field="username")
    try:
        password_hash = await asyncio.to_thread(hash_password, password)
        ack = await svc.emit(UserRegistered(occurred_at=svc.now_ms(), user_id=user_id, username=username,
                                            email=email, password_hash=password_hash), user_id)
    except BaseException:
        await svc.views.release("username", username, user_id)
        raise

    async def visible() -> bool:
        user = await svc.views.get_user(user_id)
        return user is not None and user.seq >= ack.offset

    await svc.wait_for(visible)
    return JSONResponse({"id": user_id, "username": username}, status_code=201,
                        headers={"Location": f"/v1/users/{user_id}"})


async def login(request: Request) -> JSONResponse:
    svc = services(request)
    data = await json_body(request)
    v.only(data, {"username", "password"})
    username = v.string(data, "username", max_length=64)
    password = v.string(data, "password", max_length=v.MAX_PASSWORD_LENGTH)
    assert username is not None and password is not None
    user = await svc.views.get_user_by_name(username)
    if user is None and await svc.views.claimed("username", username) is not None:
        # Registered a moment ago: the view is catching up with the log.
        async def visible() -> bool:
            return await svc.views.get_user_by_name(username) is not None
        await svc.wait_for(visible)
        user = await svc.views.get_user_by_name(username)
    if user is None or not await asyncio.to_thread(verify_password, user.password_hash, password):
        raise Unauthorized("invalid username or password")
    auth = svc.settings.auth
    token = issue_token(str(auth.jwt_secret), auth.jwt_issuer, user.id, user.username,
                        int(svc.clock()), auth.jwt_ttl_s)
    return JSONResponse({"access_token": token, "token_type": "bearer", "expires_in": auth.jwt_ttl_s,
                         "user": {"id": user.id, "username": user.username}})


async def me(request: Request) -> JSONResponse:
    """The signed-in user and their channels (with live and configured stream ids): the dashboard's start."""
    svc = services(request)
    principal = svc.principal(request)
    user = await svc.views.get_user(principal.user_id)
    if user is None:
        raise NotFound("this account does not exist (any more)")
    owned = [await channel_json(svc, c) for c in await svc.views.channels_of(user.id)]
    return JSONResponse({"user": {"id": user.id, "username": user.username}, "channels": owned},
                        headers={"Cache-Control": "no-store"})


routes = [
    Route("/v1/users", register, methods=["POST"]),
    Route("/v1/auth/login", login, methods=["POST"]),
    Route("/v1/me", me, methods=["GET"]),
]

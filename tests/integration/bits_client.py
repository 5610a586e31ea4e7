"""Helpers of the bits and payments tests: users, channels, balances over the API."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import Platform
from tests.waiting import eventually_async


class User:
    def __init__(self, user_id: str, name: str, token: str) -> None:
        self.id, self.name, self.token = user_id, name, token

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def _user(http: httpx.AsyncClient, prefix: str = "fan") -> User:
    name, password = f"{prefix}_{uuid.uuid4().hex[:10]}", "correct horse battery"
    r = await http.post("/v1/users", json={"username": name, "password": password})
    assert r.status_code == 201, r.text

    async def login() -> httpx.Response | None:  # the processors may take a moment to fold the sign-up
        r = await http.post("/v1/auth/login", json={"username": name, "password": password})
        return r if r.status_code == 200 else None
    r = await eventually_async(login, 30, f"login of {name}")
    return User(r.json()["user"]["id"], name, r.json()["access_token"])


async def _channel(http: httpx.AsyncClient, owner: User) -> str:
    r = await http.post("/v1/channels", headers=owner.auth, json={"name": f"ch_{uuid.uuid4().hex[:10]}"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _bits(http: httpx.AsyncClient, user: User) -> dict[str, Any]:
    r = await http.get("/v1/me/bits", headers=user.auth)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _settled(http: httpx.AsyncClient, user: User, **expected: int) -> dict[str, Any]:
    """The user's bits once the ledger worker folded what is expected (and no cheer is left held)."""
    async def folded() -> dict[str, Any] | None:
        b = await _bits(http, user)
        return b if all(b[k] == v for k, v in expected.items()) and b["held"] == 0 else None
    return await eventually_async(folded, 30, f"bits {expected}")


async def _buy(http: httpx.AsyncClient, user: User, pack: str, key: str | None = None) -> dict[str, Any]:
    headers = {**user.auth, **({"Idempotency-Key": key} if key else {})}
    r = await http.post("/v1/bits/purchases", headers=headers, json={"pack": pack})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _ws(platform: Platform, channel: str) -> str:
    return platform.url.replace("http://", "ws://") + f"/v1/chat/ws?channel={channel}"

"""The credential store and the password pool on their own: owner-only files, a bounded queue, no timing oracle,
and user views and events that carry no hash (legacy ones move to the store)."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from gateways.auth import hash_password
from gateways.errors import Unavailable
from gateways.passwords import Busy, PasswordPool
from gateways.passwords_store import CredentialStore, store_path
from infra.settings import AuthSettings
from schemas.records.user import UserRegistered
from views.fold import Applied
from views.users import USER_FOLDS, UserView

PASSWORD = "correct horse battery"


def test_the_store_is_owner_only_and_keeps_one_hash_per_user(tmp_path: Path) -> None:
    store = CredentialStore.open(tmp_path)
    path = store_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert store.get("u1") is None
    store.put("u1", "$argon2id$first")
    store.put("u1", "$argon2id$second")
    # Another process (or gateway) opening the same data directory sees the same credentials.
    assert CredentialStore.open(tmp_path).get("u1") == "$argon2id$second"
    store.delete("u1")
    assert store.get("u1") is None


async def test_a_full_queue_is_refused_at_once(tmp_path: Path) -> None:
    pool = PasswordPool(AuthSettings(hash_workers=1, hash_queue_max=1), CredentialStore.open(tmp_path))
    try:
        await pool.start()
        running = [asyncio.create_task(pool.verify(None, f"guess-{i}")) for i in range(2)]
        await asyncio.sleep(0)  # let both tasks take their slots (one hashing, one waiting)
        assert pool.full
        with pytest.raises(Busy) as refused:
            await pool.verify(None, "one too many")
        assert isinstance(refused.value, Unavailable) and refused.value.status == 503
        assert refused.value.headers == {"Retry-After": "1"} and refused.value.reason == "auth_busy"
        with pytest.raises(Busy):
            await pool.register("u-late", PASSWORD)
        assert [v.ok for v in await asyncio.gather(*running)] == [False, False]
        assert pool.counts.peak_pending == 2 and not pool.full
    finally:
        pool.close()


async def test_unknown_users_verify_against_the_dummy_and_legacy_hashes_move(tmp_path: Path) -> None:
    store = CredentialStore.open(tmp_path)
    pool = PasswordPool(AuthSettings(hash_workers=1, hash_queue_max=4), store)
    try:
        await pool.start()
        assert pool.dummy_hash.startswith("$argon2id$")
        nobody = await pool.verify(None, PASSWORD)
        assert not nobody.ok and nobody.against_dummy and pool.counts.dummy == 1

        await pool.register("u1", PASSWORD)
        assert (await pool.verify("u1", PASSWORD)).ok and not (await pool.verify("u1", "wrong")).ok
        assert pool.counts.account == 2

        legacy = hash_password("an old password")
        verdict = await pool.verify("u2", "an old password", legacy_hash=legacy)
        assert verdict.ok and verdict.legacy
        await pool.adopt("u2", legacy)
        assert store.get("u2") == legacy
        verdict = await pool.verify("u2", "an old password", legacy_hash=legacy)
        assert verdict.ok and not verdict.legacy
        # An account that has neither a stored nor a legacy hash costs the dummy's work too.
        assert (await pool.verify("u3", PASSWORD)).against_dummy
    finally:
        pool.close()


def test_user_views_and_events_carry_no_hash() -> None:
    fresh = Applied(3, UserRegistered(occurred_at=1000, user_id="u1", username="alice", email=None))
    assert fresh.value.password_hash == "" and "$argon2" not in repr(fresh.value.to_avro())
    view = USER_FOLDS[UserRegistered](fresh, None)
    assert view is not None and view.legacy_password_hash is None
    assert "password_hash" not in view.to_json() and "legacy_password_hash" not in view.to_json()

    old = Applied(4, UserRegistered(occurred_at=1000, user_id="u2", username="bob", email=None,
                                    password_hash="$argon2id$old"))
    old_view = USER_FOLDS[UserRegistered](old, None)
    assert old_view is not None and old_view.legacy_password_hash == "$argon2id$old"
    assert UserView.from_json(old_view.to_json()) == old_view
    # A view Valkey holds from before the credential store (its hash under the old name) still loads.
    stored = {"id": "u2", "username": "bob", "email": None, "password_hash": "$argon2id$old",
              "created_at_ms": 1000, "seq": 4, "display_name": None, "bio": None, "avatar_url": None}
    assert UserView.from_json(stored) == old_view

"""Sealed personal fields (views/personal_data.py) and the gateway's account cache (gateways/auth.py)."""

from __future__ import annotations

import stat
from pathlib import Path

from gateways.auth import KnownUsers
from views.personal_data import PersonalKeys, is_sealed, open_field, seal, store_path


def test_a_sealed_field_opens_only_with_its_key_user_and_field() -> None:
    key, other = b"k" * 32, b"o" * 32
    sealed = seal(key, "u1", "email", "someone@example.org")
    assert is_sealed(sealed) and "someone" not in sealed
    assert open_field(key, "u1", "email", sealed) == "someone@example.org"
    assert seal(key, "u1", "email", "someone@example.org") != sealed  # a fresh nonce every time
    assert open_field(other, "u1", "email", sealed) is None  # another key
    assert open_field(key, "u2", "email", sealed) is None  # copied into another user's event
    assert open_field(key, "u1", "display_name", sealed) is None  # or another field
    assert open_field(None, "u1", "email", sealed) is None  # the key was erased
    assert open_field(key, "u1", "email", sealed[:-4]) is None  # damaged
    assert open_field(None, "u1", "email", "clear@example.org") == "clear@example.org"  # written before sealing
    assert open_field(key, "u1", "bio", None) is None


def test_keys_are_made_once_kept_owner_only_and_erased(tmp_path: Path) -> None:
    keys = PersonalKeys.open(tmp_path)
    first = keys.create("u1")
    assert keys.create("u1") == first == keys.get("u1") and len(first) == 32
    assert keys.get("u2") is None
    mode = stat.S_IMODE(store_path(tmp_path).stat().st_mode)
    assert mode == 0o600 and stat.S_IMODE(store_path(tmp_path).parent.stat().st_mode) == 0o700
    keys.create("u2")
    keys.erase("u1")
    assert keys.get("u1") is None and keys.get("u2") is not None
    assert first not in store_path(tmp_path).read_bytes()  # secure_delete: the bytes are overwritten


def test_known_users_expire_and_remember_the_password_count() -> None:
    now = [0.0]
    known = KnownUsers(max_size=2, ttl_s=30, clock=lambda: now[0])
    known.add("a", 3)
    assert known.version("a") == 3 and "a" in known and "b" not in known
    now[0] = 31
    assert known.version("a") is None  # stale: the view is read again
    known.add("a")
    known.forget("a")
    assert known.version("a") is None
    known.add("x")
    known.add("y")
    known.add("z")  # full: starts again
    assert known.version("z") == 0 and known.version("x") is None

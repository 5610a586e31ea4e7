from __future__ import annotations

import pytest

from gateways.auth import (
    bearer_token,
    derive_stream_key,
    hash_password,
    issue_token,
    new_stream_key,
    new_stream_key_nonce,
    read_token,
    stream_key_secret,
    verify_password,
)
from gateways.errors import Unauthorized
from views.channels import hash_stream_key

K = "k" * 40


def test_password_hash_is_argon2id() -> None:
    h = hash_password("correct horse")
    assert h.startswith("$argon2id$") and verify_password(h, "correct horse")
    assert not verify_password(h, "wrong") and not verify_password("not-a-hash", "x")


def test_token_round_trip_and_refusals() -> None:
    token = issue_token(K, "glasscast", "u1", "alice", now_s=1000, ttl_s=60)
    assert read_token(K, "glasscast", token, now_s=1030).user_id == "u1"
    with pytest.raises(Unauthorized, match="expired"):
        read_token(K, "glasscast", token, now_s=1060)
    with pytest.raises(Unauthorized, match="signature"):
        read_token("o" * 40, "glasscast", token, now_s=1030)
    with pytest.raises(Unauthorized, match="invalid"):
        read_token(K, "someone-else", token, now_s=1030)
    with pytest.raises(Unauthorized, match="invalid"):
        read_token(K, "glasscast", "a.b.c", now_s=1030)


def test_bearer_header() -> None:
    assert bearer_token("Bearer abc") == "abc"
    for bad in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(Unauthorized):
            bearer_token(bad)


def test_stream_keys() -> None:
    a, b = new_stream_key(), new_stream_key()
    assert a != b and a.startswith("live_") and len(a) > 30
    assert len(hash_stream_key(a)) == 64 and hash_stream_key(a) == hash_stream_key(a)


def test_stream_keys_derive_from_the_secret_and_nonce() -> None:
    secret = stream_key_secret("j" * 32, "")
    key = derive_stream_key(secret, "chan-1", "nonce-a")
    assert key.startswith("live_") and len(key) > 40
    assert derive_stream_key(secret, "chan-1", "nonce-a") == key  # revealable: the same inputs, the same key
    assert derive_stream_key(secret, "chan-1", "nonce-b") != key
    assert derive_stream_key(secret, "chan-2", "nonce-a") != key
    assert derive_stream_key(stream_key_secret("k" * 32, ""), "chan-1", "nonce-a") != key
    assert stream_key_secret("j" * 32, "configured") == b"configured"
    assert new_stream_key_nonce() != new_stream_key_nonce()

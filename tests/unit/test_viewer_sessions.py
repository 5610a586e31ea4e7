"""Issued viewer sessions (gateways/viewer_sessions.py), the issued mark on playback tokens
(gateways/playback_token.py) and the heartbeat route's session gate (gateways/heartbeat_intake.py)."""

from __future__ import annotations

import pytest

from gateways.heartbeat_intake import INTERVAL_SLACK, SessionGate, retry_after_s, too_soon_s, vouches
from gateways.playback_token import PlaybackClaims, TokenRefused, derive_secret, sign, verify, verify_session
from gateways.viewer_sessions import client_key, session_id, session_key

KEY = derive_secret("j" * 40, "")


@pytest.mark.parametrize(("host", "key"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),  # the same subscriber's other address
    ("::ffff:198.51.100.1", "198.51.100.1"),
    (None, "unknown"),
    ("testclient", "testclient"),
])
def test_a_client_is_an_ipv4_address_or_an_ipv6_64(host: str | None, key: str) -> None:
    assert client_key(host) == key


def test_a_client_gets_at_most_its_slots_worth_of_sessions() -> None:
    k = session_key(KEY)
    ids = {session_id(k, "chan", "203.0.113.7", n % 4) for n in range(1000)}
    assert len(ids) == 4 and all(len(i) == 32 for i in ids)
    assert session_id(k, "chan", "203.0.113.7", 0) == session_id(k, "chan", "203.0.113.7", 0)
    assert session_id(k, "chan", "203.0.113.7", 0) != session_id(k, "other", "203.0.113.7", 0)
    assert session_id(k, "chan", "203.0.113.7", 0) != session_id(k, "chan", "203.0.113.8", 0)
    assert session_id(session_key(derive_secret("k" * 40, "")), "chan", "203.0.113.7", 0) not in ids


def test_only_tokens_the_gateway_signed_as_issued_say_so() -> None:
    issued = sign(KEY, PlaybackClaims("chan", 1000, "s1", session_issued=True))
    assert verify(KEY, issued, "chan", 999) == PlaybackClaims("chan", 1000, "s1", True)
    assert not verify(KEY, sign(KEY, PlaybackClaims("chan", 1000, "s1")), "chan", 999).session_issued
    assert not verify(KEY, sign(KEY, PlaybackClaims("chan", 1000, None, True)), "chan", 999).session_issued


def test_a_beat_token_opens_its_own_issued_session_only() -> None:
    token = sign(KEY, PlaybackClaims("chan", 1000, "s1", session_issued=True))
    assert verify_session(KEY, token, "chan", "s1", 999) == 1000
    for bad, channel, session, now, why in [
        (token, "chan", "s2", 999, "not the session"),
        (token, "chan", 's1"}', 999, "not the session"),
        (token, "other", "s1", 999, "another channel"),
        (token, "chan", "s1", 1000, "expired"),
        (sign(KEY, PlaybackClaims("chan", 1000, "s1")), "chan", "s1", 999, "not the session"),  # never issued
        (sign(derive_secret("k" * 40, ""), PlaybackClaims("chan", 1000, "s1", True)), "chan", "s1", 999, "signature"),
        (token[:-2], "chan", "s1", 999, "signature|malformed"),
        (None, "chan", "s1", 999, "missing"),
        ("\ud800.x", "chan", "s1", 999, "malformed"),
    ]:
        with pytest.raises(TokenRefused, match=why):
            verify_session(KEY, bad, channel, session, now)


def test_one_beat_per_interval_with_a_slack_for_jitter() -> None:
    assert too_soon_s(100.0, 100.0 + 10 * (1 - INTERVAL_SLACK), 10.0) == 0.0
    assert too_soon_s(100.0, 101.0, 10.0) == pytest.approx(10 * (1 - INTERVAL_SLACK) - 1)
    assert too_soon_s(100.0, 130.0, 10.0) == 0.0
    assert retry_after_s(0.2) == 1 and retry_after_s(6.5) == 7


def test_the_gate_vouches_only_for_the_same_token_channel_and_lifetime() -> None:
    beat = (5.0, "tok", "chan", 2000)
    assert vouches(beat, "tok", "chan", 1999.0)
    assert not vouches(beat, "tok2", "chan", 1999.0)
    assert not vouches(beat, "tok", "other", 1999.0)
    assert not vouches(beat, "tok", "chan", 2000.0)


def test_the_gate_forgets_sessions_two_generations_old_and_stays_bounded() -> None:
    gate = SessionGate(generation_max=100)
    start = 1000.0
    gate.admit("a", (start, "t", "c", 10**9), 10.0)
    gate.admit("b", (start + 25, "t", "c", 10**9), 10.0)  # a new generation: "a" is in the old one
    assert gate.last("a") is not None and gate.last("b") is not None
    gate.admit("c", (start + 50, "t", "c", 10**9), 10.0)
    assert gate.last("a") is None and gate.last("b") is not None
    for i in range(1000):
        gate.admit(f"s{i}", (start + 51, "t", "c", 10**9), 10.0)
    assert len(gate) <= 200

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateways.playback_token import PlaybackClaims, TokenRefused, derive_secret, sign, verify

KEY = derive_secret("j" * 40, "")


def test_round_trip_and_every_refusal() -> None:
    token = sign(KEY, PlaybackClaims("chan-a", 1000, "sess-1"))
    assert verify(KEY, token, "chan-a", 999) == PlaybackClaims("chan-a", 1000, "sess-1")
    for bad, now, channel, why in [
        (None, 999, "chan-a", "missing"),
        ("", 999, "chan-a", "missing"),
        (token, 1000, "chan-a", "expired"),
        (token, 999, "chan-b", "another channel"),
        (sign(derive_secret("x" * 40, ""), PlaybackClaims("chan-a", 1000)), 999, "chan-a", "signature"),
        (token.replace(".", ".AAAA", 1), 999, "chan-a", "signature"),
        ("nodot", 999, "chan-a", "malformed"),
    ]:
        with pytest.raises(TokenRefused, match=why):
            verify(KEY, bad, channel, now)


def test_tampered_claims_fail_the_signature() -> None:
    token = sign(KEY, PlaybackClaims("chan-a", 1000))
    forged_payload = sign(KEY, PlaybackClaims("chan-a", 9999)).split(".")[0]
    with pytest.raises(TokenRefused, match="signature"):
        verify(KEY, forged_payload + "." + token.split(".")[1], "chan-a", 999)


@given(st.text(max_size=80))
def test_arbitrary_tokens_are_refused_cleanly(text: str) -> None:
    with pytest.raises(TokenRefused):
        verify(KEY, text, "chan-a", 0)

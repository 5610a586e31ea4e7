"""The chat's pure parts: frames, emotes, the send rules and the room-state fold."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateways.chat import checks, frames
from gateways.chat.emotes import only_emotes, parse_emotes
from schemas.records.chat import ChatModeChanged, UserBanned, UserTimedOut
from schemas.records.social import Followed
from views.chat_rooms import Chatter, RoomMode, changes

NOW = 1_800_000_000_000


def test_client_frames_are_parsed_or_refused_with_a_code() -> None:
    assert frames.parse_client_frame('{"type":"send","text":"hi","nonce":"a"}', 100) == frames.ClientFrame(
        "send", "hi", "a")
    assert frames.parse_client_frame('{"type":"ping"}', 100).type == "ping"
    for text, code in (("{", "invalid_json"), ("[]", "invalid_frame"), ('{"type":"x"}', "unknown_type"),
                       ('{"type":"send"}', "invalid_frame"), ('{"type":"send","text":"a","nonce":""}',
                                                              "invalid_frame"),
                       ('{"type":"send","text":"' + "a" * 200 + '"}', "frame_too_large"),
                       ("[" * 100_000, "frame_too_large")):
        with pytest.raises(frames.FrameError) as info:
            frames.parse_client_frame(text, 150)
        assert info.value.code == code


def test_deeply_nested_json_is_an_error_not_a_crash() -> None:
    with pytest.raises(frames.FrameError) as info:
        frames.parse_client_frame("[" * 50_000 + "]" * 50_000, 10**6)
    assert info.value.code in ("invalid_json", "invalid_frame")


@given(st.binary(min_size=0, max_size=70_000))
def test_text_frames_follow_rfc_6455(payload: bytes) -> None:
    frame = frames.text_frame(payload)
    assert frame[0] == 0x81 and frame.endswith(payload)
    n = frame[1]
    if n < 126:
        assert n == len(payload) and len(frame) == 2 + n
    elif n == 126:
        assert int.from_bytes(frame[2:4], "big") == len(payload)
    else:
        assert int.from_bytes(frame[2:10], "big") == len(payload)


@given(st.text())
def test_encoded_messages_never_contain_a_raw_newline(text: str) -> None:
    encoded = frames.encode({"type": "MESSAGE", "text": text})
    assert "\n" not in encoded and json.loads(encoded)["text"] == text


def test_emotes_are_whole_words_with_code_point_positions() -> None:
    text = "😀 Kappa hi Kappa123 LUL"
    found = parse_emotes(text)
    assert found == [{"id": "kappa", "code": "Kappa", "start": 2, "end": 6},
                     {"id": "lul", "code": "LUL", "start": 20, "end": 22}]
    assert all(text[e["start"]:e["end"] + 1] == e["code"] for e in found)
    assert only_emotes("Kappa  LUL", parse_emotes("Kappa  LUL"))
    assert not only_emotes("Kappa hi", parse_emotes("Kappa hi"))
    assert not only_emotes("", [])


ANYONE, OPEN_ROOM = Chatter(), RoomMode()


def _refusal(text: str = "hello", chatter: Chatter = ANYONE, mode: RoomMode = OPEN_ROOM,
             badges: list[str] | None = None, last: int | None = None) -> str | None:
    emotes = parse_emotes(text)
    r = checks.refusal(text, chatter, mode, badges or [], NOW, last, 500, only_emotes(text, emotes))
    return None if r is None else r.code


def test_send_rules() -> None:
    assert _refusal() is None
    assert _refusal(chatter=Chatter(banned=True)) == "banned"
    assert _refusal(chatter=Chatter(timed_out_until_ms=NOW + 5000)) == "timed_out"
    assert _refusal(chatter=Chatter(timed_out_until_ms=NOW - 1)) is None
    assert _refusal("") == "empty" and _refusal("x" * 501) == "too_long"
    slow = RoomMode(slow_mode_s=10)
    assert _refusal(mode=slow, last=NOW - 5000) == "slow_mode"
    assert _refusal(mode=slow, last=NOW - 10_000) is None
    assert _refusal(mode=slow, last=NOW - 5000, badges=["vip"]) is None
    assert _refusal(mode=slow, last=NOW - 5000, badges=["moderator"]) is None
    assert _refusal(mode=RoomMode(subscribers_only=True)) == "subscribers_only"
    assert _refusal(mode=RoomMode(subscribers_only=True),
                    chatter=Chatter(sub_tier="TIER_1", sub_expires_ms=NOW + 1)) is None
    assert _refusal(mode=RoomMode(subscribers_only=True),
                    chatter=Chatter(sub_tier="TIER_1", sub_expires_ms=NOW - 1)) == "subscribers_only"
    follow10 = RoomMode(followers_only_min=10)
    assert _refusal(mode=follow10) == "followers_only"
    assert _refusal(mode=follow10, chatter=Chatter(followed_at_ms=NOW - 60_000)) == "followers_only"
    assert _refusal(mode=follow10, chatter=Chatter(followed_at_ms=NOW - 600_000)) is None
    assert _refusal(mode=RoomMode(emote_only=True)) == "emote_only"
    assert _refusal("Kappa LUL", mode=RoomMode(emote_only=True)) is None
    assert _refusal(mode=RoomMode(subscribers_only=True), badges=["broadcaster"]) is None
    assert _refusal(chatter=Chatter(banned=True), badges=["moderator"]) == "banned"


def test_badges_and_banned_words() -> None:
    chatter = Chatter(role="moderator", sub_tier="TIER_3", sub_expires_ms=NOW + 1)
    assert checks.badges(chatter, True, NOW) == ["broadcaster", "moderator", "subscriber/3"]
    assert checks.badges(Chatter(role="vip"), False, NOW) == ["vip"]
    assert checks.banned_word("A big Spoiler!", ["spoiler"]) == "spoiler"
    assert checks.banned_word("spoilers", ["spoiler"]) is None
    assert checks.banned_word("c++ rocks", ["c++"]) == "c++"
    assert checks.normalise("  hi\u0000\u202e there \n") == "hi there"


def test_moderation_events_fold_into_idempotent_operations() -> None:
    base: dict[str, Any] = {"event_id": "e1", "occurred_at": NOW, "channel_id": "c1", "user_id": "u1",
                            "moderator_user_id": "m1"}
    ops = changes(UserTimedOut(**base, duration_s=30, reason=None), "p:")
    assert ("hset", ("p:view:chat:timeouts:c1", "u1", NOW + 30_000)) in ops
    assert ops[0][0] == "zadd" and ops == changes(UserTimedOut(**base, duration_s=30, reason=None), "p:")
    assert ("sadd", ("p:view:chat:bans:c1", "u1")) in changes(UserBanned(**base), "p:")
    mode = changes(ChatModeChanged(event_id="e1", occurred_at=NOW, channel_id="c1", changed_by_user_id="m1",
                                   slow_mode_s=5, subscribers_only=True, followers_only_min=None, emote_only=False,
                                   banned_words=("b", "a")), "p:")
    assert ("hset_map", ("p:view:chat:mode:c1", {"slow_mode_s": 5, "subscribers_only": 1, "followers_only_min": -1,
                                                 "emote_only": 0})) in mode
    assert ("set", ("p:view:chat:words:c1", '["a", "b"]')) in mode
    assert changes(Followed(event_id="e", occurred_at=NOW, channel_id="c1", follower_id="u1",
                            notifications_enabled=True), "p:") == [
        ("hset", ("p:view:follows:c1", "u1", NOW))]
    assert RoomMode.from_hash({b"slow_mode_s": b"5", b"subscribers_only": b"1", b"followers_only_min": b"-1",
                               b"emote_only": b"0"}) == RoomMode(5, True, None, False)

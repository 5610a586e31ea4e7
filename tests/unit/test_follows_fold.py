"""The follow graph's pure parts (views/follows.py): the pair fold, members and cursors."""

from __future__ import annotations

import pytest

from schemas.records.social import Followed, Unfollowed
from views.fold import Applied
from views.follows import FollowState, decode_cursor, encode_cursor, fold_follow, member, row


def _followed(offset: int, at: int, notify: bool = True) -> Applied[Followed | Unfollowed]:
    return Applied(offset, Followed(occurred_at=at, follower_id="u", channel_id="c", notifications_enabled=notify))


def _unfollowed(offset: int, at: int) -> Applied[Followed | Unfollowed]:
    return Applied(offset, Unfollowed(occurred_at=at, follower_id="u", channel_id="c"))


def test_a_pair_keeps_its_first_follow_time_and_ignores_redeliveries() -> None:
    first = fold_follow(_followed(1, 1000), None)
    assert first == FollowState(1, True, 1000, True)
    bell = fold_follow(_followed(2, 5000, notify=False), first)  # the bell: same follow, notifications off
    assert bell == FollowState(2, True, 1000, False)
    assert fold_follow(_followed(2, 5000), bell) is None and fold_follow(_followed(1, 1000), bell) is None
    gone = fold_follow(_unfollowed(3, 6000), bell)
    assert gone == FollowState(3, False, 1000, False)
    assert fold_follow(_followed(2, 5000), gone) is None  # an older event after the unfollow changes nothing
    again = fold_follow(_followed(4, 7000), gone)
    assert again == FollowState(4, True, 7000, True)  # a new follow starts a new follow time
    assert FollowState.decode(again.encode()) == again


def test_members_list_newest_first_and_cursors_only_open_for_their_list() -> None:
    older, newer = member(1000, "a" * 36), member(2000, "b" * 36)
    assert newer < older and row(newer).id == "b" * 36 and row(newer).followed_at_ms == 2000
    cursor = encode_cursor("following", older)
    assert decode_cursor("following", cursor) == older
    for kind, bad in (("followers", cursor), ("following", "not-a-cursor"), ("following", "x" * 300),
                      ("following", "")):
        with pytest.raises(ValueError):
            decode_cursor(kind, bad)

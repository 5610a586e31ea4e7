"""The subscription views' pure parts (views/subscriptions.py) and the chat entitlement they share a log with."""

from __future__ import annotations

from typing import Any

from gateways.chat import checks
from processors.notifications.index import NotifyIndex
from schemas.records.billing import (
    SubscriptionCancelRequested,
    SubscriptionEnded,
    SubscriptionRenewed,
    SubscriptionStarted,
)
from views.chat_rooms import ChatRooms, Chatter, changes
from views.fold import Applied
from views.subscriptions import Subscriptions, SubscriptionView, fold, points

T0 = 1_700_000_000_000
IDS: dict[str, Any] = {"subscription_id": "s", "user_id": "u", "channel_id": "c"}


def _started(offset: int, **extra: Any) -> Applied[Any]:
    return Applied(offset, SubscriptionStarted(occurred_at=T0, tier="TIER_1", expires_at=T0 + 100, amount_minor=499,
                                               currency="USD", **IDS, **extra))


def _renewed(offset: int, expires: int, months: int) -> Applied[Any]:
    return Applied(offset, SubscriptionRenewed(occurred_at=T0 + 50, tier="TIER_2", expires_at=expires,
                                               months_total=months, amount_minor=999, currency="USD", **IDS))


def test_a_subscription_starts_renews_is_cancelled_and_ends() -> None:
    view = fold(_started(1), None)
    assert view is not None and view.active(T0) and view.months_total == 1 and view.seq == 1
    renewed = fold(_renewed(2, T0 + 200, 2), view)
    assert renewed is not None and (renewed.tier, renewed.expires_at_ms, renewed.months_total) == ("TIER_2",
                                                                                                   T0 + 200, 2)
    assert fold(_renewed(2, T0 + 200, 2), renewed) is None and fold(_started(1), renewed) is None  # redeliveries
    cancelled = fold(Applied(3, SubscriptionCancelRequested(occurred_at=T0 + 60, **IDS)), renewed)
    assert cancelled is not None and cancelled.cancelled and cancelled.active(T0 + 199)
    assert cancelled.public(T0)["status"] == "cancelled" and cancelled.public(T0)["tier"] == "2000"
    ended = fold(Applied(4, SubscriptionEnded(occurred_at=T0 + 200, reason="EXPIRED", **IDS)), cancelled)
    assert ended is not None and ended.ended and not ended.active(T0) and ended.end_reason == "EXPIRED"
    again = fold(_started(5, months_total=3), ended)
    assert again is not None and again.active(T0) and not again.cancelled and again.months_total == 3
    assert SubscriptionView.from_json(again.to_json()) == again


def test_an_end_of_an_unknown_subscription_changes_nothing() -> None:
    assert fold(Applied(1, SubscriptionEnded(occurred_at=T0, **IDS)), None) is None
    assert fold(Applied(1, SubscriptionCancelRequested(occurred_at=T0, **IDS)), None) is None


def test_points_count_as_twitch_does() -> None:
    def sub(tier: str) -> SubscriptionView:
        return SubscriptionView(subscription_id="s", user_id="u", channel_id="c", tier=tier, started_at_ms=0,
                                expires_at_ms=1, months_total=1)
    assert points([sub("TIER_1"), sub("TIER_2"), sub("TIER_3"), sub("TIER_3")]) == 1 + 2 + 6 + 6


def test_random_gifts_read_the_notification_processors_engagement_index() -> None:
    assert Subscriptions(None, "p:").k_engaged("c") == NotifyIndex(None, "p:").k_engaged("c")  # type: ignore[arg-type]


def test_the_chat_badge_carries_tier_and_months_and_follows_the_period() -> None:
    ops = changes(_renewed(2, T0 + 200, 7).value, "p:")
    assert [(name, args[2:]) for name, args in ops] == [("eval", ("p:view:subs:c", "u", f"TIER_2:{T0 + 200}:7", 7))]
    chatter = ChatRooms._chatter(None, False, None, None, f"TIER_2:{T0 + 200}:7".encode())
    assert checks.badges(chatter, False, T0) == ["subscriber/2"] and checks.badge_info(chatter, T0) == {
        "subscriber": 7}
    assert checks.badges(chatter, False, T0 + 200) == [] and checks.badge_info(chatter, T0 + 200) == {}
    old = ChatRooms._chatter(None, False, None, None, f"TIER_1:{T0 + 200}".encode())  # written before months
    assert old == Chatter(sub_tier="TIER_1", sub_expires_ms=T0 + 200, sub_months=1)
    assert changes(SubscriptionEnded(occurred_at=T0, reason="REFUNDED", **IDS), "p:") == [
        ("hdel", ("p:view:subs:c", "u"))]
    expired = changes(SubscriptionEnded(occurred_at=T0, reason="EXPIRED", **IDS), "p:")
    assert [(name, args[2:]) for name, args in expired] == [("eval", ("p:view:subs:c", "u", T0))]


def test_a_period_granted_again_late_or_an_expiry_after_a_renewal_changes_nothing() -> None:
    view = fold(_started(1), None)
    renewed = fold(_renewed(3, T0 + 200, 2), view)
    assert renewed is not None
    assert fold(_started(4), renewed) is None  # the first period's event again, later in the log
    stale_end = Applied(5, SubscriptionEnded(occurred_at=T0 + 100, reason="EXPIRED", **IDS))
    assert fold(stale_end, renewed) is None  # the first period's expiry, after its renewal
    ended = fold(Applied(6, SubscriptionEnded(occurred_at=T0 + 200, reason="EXPIRED", **IDS)), renewed)
    assert ended is not None and ended.ended

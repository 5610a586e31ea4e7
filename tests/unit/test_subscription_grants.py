"""Subscriptions' pure parts: what a payment grants (processors/subscriptions/grants.py), expiry, cancellation,
the outbox's encoding, the chat announcement, and the gateway's tier and gift rules."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import pytest

from gateways.chat.fanout import CONTROL, ChatHub
from gateways.errors import ValidationFailed
from gateways.subscriptions import parse_tier, pick_recipients
from infra.settings import ChatSettings
from processors.eventsub import messages as m
from processors.subscriptions import announce
from processors.subscriptions.grants import (
    NotASubscriptionPayment,
    SubState,
    cancel,
    dedupe_key,
    expire,
    grant,
    recipients,
)
from processors.subscriptions.state import Outgoing, event_entry
from schemas.records.billing import PaymentSucceeded, SubscriptionRenewed, SubscriptionStarted
from views.subscriptions import subscription_id

DAY = 86_400_000
PERIOD = 30 * DAY
PAYER, CHANNEL = str(uuid.uuid4()), str(uuid.uuid4())
T0 = 1_700_000_000_000


def _payment(at: int = T0, **changes: Any) -> PaymentSucceeded:
    values: dict[str, Any] = {
        "occurred_at": at, "order_id": str(uuid.uuid4()), "provider": "sandbox", "provider_event_id": "evt-1",
        "kind": "SUBSCRIPTION", "user_id": PAYER, "channel_id": CHANNEL, "tier": 1000, "amount_minor": 499,
        "currency": "USD", **changes}
    return PaymentSucceeded(**values)


def test_a_first_payment_starts_a_subscription_for_one_period() -> None:
    p = _payment(message="hi")
    event, state = grant(p, PAYER, None, PERIOD)
    assert isinstance(event, SubscriptionStarted)
    assert (event.user_id, event.channel_id, event.tier, event.months_total) == (PAYER, CHANNEL, "TIER_1", 1)
    assert event.expires_at == T0 + PERIOD and event.amount_minor == 499 and not event.is_gift
    assert event.message == "hi" and event.subscription_id == subscription_id(PAYER, CHANNEL)
    assert state.active(T0 + PERIOD - 1) and not state.active(T0 + PERIOD)
    # The same payment decides the same thing, ids included: a redelivery is the same event.
    again, _ = grant(p, PAYER, None, PERIOD)
    assert again == event


def test_a_payment_during_a_period_renews_after_it_and_counts_a_month() -> None:
    _, state = grant(_payment(), PAYER, None, PERIOD)
    renewal = _payment(at=T0 + PERIOD - DAY, renewal=True, provider="stripe", provider_event_id="evt_2",
                       tier=3000, provider_subscription_ref="sub_123", message="two months!")
    event, after = grant(renewal, PAYER, state, PERIOD)
    assert isinstance(event, SubscriptionRenewed)
    assert event.expires_at == T0 + 2 * PERIOD and event.months_total == 2 and event.tier == "TIER_3"
    assert event.message == "two months!" and after.provider_subscription_ref == "sub_123"
    assert dedupe_key(renewal) == "renewal:stripe:evt_2" and dedupe_key(_payment()).startswith("order:")


def test_a_payment_after_the_end_starts_again_and_months_keep_counting() -> None:
    _, state = grant(_payment(), PAYER, None, PERIOD)
    ended = expire(state, T0 + PERIOD, 0)
    assert ended is not None
    end, state = ended
    assert end.reason == "EXPIRED" and end.occurred_at == T0 + PERIOD and state.ended
    event, after = grant(_payment(at=T0 + 3 * PERIOD), PAYER, state, PERIOD)
    assert isinstance(event, SubscriptionStarted) and event.months_total == 2 and not after.ended


def test_gifts_go_to_each_recipient_once_and_cost_them_nothing() -> None:
    friends = [str(uuid.uuid4()) for _ in range(3)]
    p = _payment(gift_to_user_ids=(*friends, friends[0]), amount_minor=3 * 499)
    assert recipients(p) == tuple(friends)
    events = [grant(p, f, None, PERIOD)[0] for f in recipients(p)]
    assert {e.user_id for e in events} == set(friends) and len({e.event_id for e in events}) == 3
    assert all(e.is_gift and e.gifted_by_user_id == PAYER and e.amount_minor == 0 for e in events)
    assert recipients(_payment()) == (PAYER,)


def test_expiry_waits_for_a_provider_renewal_unless_cancelled() -> None:
    state = SubState(subscription_id="s", user_id=PAYER, channel_id=CHANNEL, tier="TIER_1",
                     expires_at_ms=T0, months_total=1, provider_subscription_ref="sub_1")
    assert expire(state, T0, 3_600_000) is None and state.due_ms(3_600_000) == T0 + 3_600_000
    cancelled = cancel(state)
    assert cancelled is not None and cancelled.due_ms(3_600_000) == T0 and cancel(cancelled) is None
    result = expire(cancelled, T0, 3_600_000)
    assert result is not None and result[1].ended
    assert expire(result[1], T0 + DAY, 0) is None  # ended once


def test_payments_that_buy_nothing_are_refused() -> None:
    with pytest.raises(NotASubscriptionPayment):
        grant(_payment(tier=1500), PAYER, None, PERIOD)
    with pytest.raises(NotASubscriptionPayment):
        grant(_payment(channel_id=None), PAYER, None, PERIOD)


def test_outbox_entries_round_trip() -> None:
    event, _ = grant(_payment(), PAYER, None, PERIOD)
    entry = event_entry(event, f"{PAYER}:{CHANNEL}")
    back, at = Outgoing.from_json(entry.id, entry.to_json(T0))
    assert back == entry and at == T0


def test_the_announcement_goes_where_the_chat_fanout_listens() -> None:
    hub = ChatHub(None, "p:", ChatSettings())  # type: ignore[arg-type]
    assert announce.room_channel("p:", CHANNEL) == hub.topic(CHANNEL) and announce.CONTROL == CONTROL
    raw = announce.frame(frame_id="f", channel_id=CHANNEL, kind="submysterygift", user_id=PAYER, tier="TIER_2",
                         at_ms=T0, names={PAYER: "gifter"}, recipients=("a", "b"))
    body = json.loads(raw)
    assert "\n" not in raw and body["type"] == "SUBSCRIPTION" and body["tier"] == "2000"
    assert body["count"] == 2 and body["user"] == {"id": PAYER, "username": "gifter"}


@pytest.mark.parametrize("raw", [1000, "2000", 3000])
def test_tiers_are_twitchs(raw: Any) -> None:
    assert parse_tier({"tier": raw}) == int(raw)


@pytest.mark.parametrize("raw", [None, 1500, "1000x", True, 1.5, "", "٣٠٠٠", [1000]])
def test_unknown_tiers_are_refused_with_a_reason(raw: Any) -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_tier({"tier": raw})
    assert err.value.extra["reason"] == "unknown_tier"


def test_gift_recipients_are_distinct_and_never_more_than_eligible() -> None:
    chosen = pick_recipients(["a", "b", "c", "d", "e", "a"], 5, random.Random(1))
    assert sorted(chosen) == ["a", "b", "c", "d", "e"]
    with pytest.raises(ValidationFailed) as err:
        pick_recipients(["a", "b"], 3, random.Random(1))
    assert err.value.extra["reason"] == "not_enough_viewers" and err.value.extra["eligible"] == 2


def test_eventsub_notifies_new_subs_and_gifts_as_twitch_does() -> None:
    names = m.Names("caster", "Caster", user_login="gifter", user_name="gifter")
    started, _ = grant(_payment(), PAYER, None, PERIOD)
    trigger = m.trigger_of(started)
    assert trigger is not None and (trigger.type, trigger.broadcaster_user_id) == ("channel.subscribe", CHANNEL)
    event = m.event_object(started, names)
    assert (event["tier"], event["is_gift"], event["user_login"]) == ("1000", False, "gifter")
    renewed, _ = grant(_payment(provider_event_id="evt-2", renewal=True), PAYER,
                       grant(_payment(), PAYER, None, PERIOD)[1], PERIOD)
    assert m.trigger_of(renewed) is None  # resubs are not channel.subscribe
    gift = _payment(gift_to_user_ids=("a", "b", "c"), tier=2000)
    trigger = m.trigger_of(gift)
    assert trigger is not None and trigger.type == "channel.subscription.gift"
    event = m.event_object(gift, names)
    assert (event["total"], event["tier"], event["cumulative_total"], event["is_anonymous"]) == (3, "2000", None,
                                                                                                  False)
    assert m.trigger_of(_payment()) is None  # a sub for oneself is no gift

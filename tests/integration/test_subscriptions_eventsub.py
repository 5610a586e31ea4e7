"""EventSub's subscription types end to end: ``channel.subscribe`` and ``channel.subscription.gift`` delivered
to a receiver in the test, signed, with Twitch's payloads (the platform, receiver and helpers of
tests/integration/test_eventsub.py)."""

from __future__ import annotations

import uuid

import pytest

from schemas.records.billing import PaymentSucceeded, SubscriptionStarted
from tests.integration.test_eventsub import (  # noqa: F401 (the module's fixtures, used by name)
    Hooks,
    Receiver,
    hooks,
    new_channel,
    now_ms,
    produce,
    receiver,
    signup,
    subscribe,
    wait_status,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration


def test_new_subs_and_gifts_are_notified_as_twitch_does(hooks: Hooks, receiver: Receiver) -> None:  # noqa: F811
    _, _, token = signup(hooks.url)
    channel = new_channel(hooks.url, token)
    fan_id, fan_name, _ = signup(hooks.url)
    stranger_token = signup(hooks.url)[2]
    for type_, path in (("channel.subscribe", "/subscribe"), ("channel.subscription.gift", "/gift")):
        r = subscribe(hooks.url, stranger_token, type_, "1", {"broadcaster_user_id": channel}, receiver.url + path)
        assert r.status_code == 403, r.text  # the broadcaster's own channels only
        r = subscribe(hooks.url, token, type_, "1", {"broadcaster_user_id": channel}, receiver.url + path)
        assert r.status_code == 202, r.text
        wait_status(hooks.url, token, r.json()["data"][0]["id"], "enabled")

    friends = [signup(hooks.url)[0] for _ in range(3)]
    produce(hooks.settings, PaymentSucceeded(
        occurred_at=now_ms(), order_id=str(uuid.uuid4()), provider="sandbox", provider_event_id="sandbox:gift",
        kind="SUBSCRIPTION", user_id=fan_id, channel_id=channel, tier=2000, gift_to_user_ids=tuple(friends),
        amount_minor=3 * 999, currency="USD"), channel)
    produce(hooks.settings, SubscriptionStarted(
        occurred_at=now_ms(), subscription_id=str(uuid.uuid4()), user_id=fan_id, channel_id=channel, tier="TIER_3",
        expires_at=now_ms() + 60_000, amount_minor=2499, currency="USD"), f"{fan_id}:{channel}")

    def notified(path: str) -> list[dict[str, object]]:
        return [x.json["event"] for x in receiver.at(path) if x.type == "notification" and x.signature_ok]

    gift = eventually(lambda: notified("/gift"), 30, "the channel.subscription.gift notification")[0]
    assert (gift["user_id"], gift["user_login"], gift["broadcaster_user_id"]) == (fan_id, fan_name.lower(), channel)
    assert (gift["total"], gift["tier"], gift["cumulative_total"], gift["is_anonymous"]) == (3, "2000", None, False)
    subs = eventually(lambda: [e for e in notified("/subscribe") if e["user_id"] == fan_id], 30,
                      "the channel.subscribe notification of the fan")
    assert (subs[0]["tier"], subs[0]["is_gift"], subs[0]["user_login"]) == ("3000", False, fan_name.lower())
    # The gifts themselves became subscriptions (the subscription processor), each notified as a gift.
    gifted = eventually(lambda: [e for e in notified("/subscribe") if e["user_id"] in friends], 30,
                        "channel.subscribe for each gift")
    eventually(lambda: len({e["user_id"] for e in notified("/subscribe") if e["user_id"] in friends}) == 3, 30,
               "all three gifts")
    assert all(e["is_gift"] is True and e["tier"] == "2000" for e in gifted)

"""EventSub ``channel.cheer`` end to end: a fan buys bits (the sandbox provider) and cheers in the channel's chat;
the broadcaster's subscription gets one signed notification with Twitch's payload (``is_anonymous``, the user's
and broadcaster's ids, logins and names, the message and the bits), and a cheer the client sent twice (a retry,
same nonce) is one notification.  The gateway, processors and receiver are tests/integration/test_eventsub.py's.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.integration.bits_client import User, _settled
from tests.integration.chat_client import Client
from tests.integration.test_eventsub import (  # noqa: F401 (the module's fixtures, used by name)
    Hooks,
    Receiver,
    hooks,
    new_channel,
    receiver,
    signup,
    subscribe,
    wait_status,
)
from tests.waiting import eventually_async

pytestmark = pytest.mark.integration


async def test_channel_cheer_is_notified_as_twitch_does(hooks: Hooks, receiver: Receiver) -> None:  # noqa: F811
    owner_id, _, owner_token = await asyncio.to_thread(signup, hooks.url)
    channel = await asyncio.to_thread(new_channel, hooks.url, owner_token)
    fan_id, fan_name, fan_token = await asyncio.to_thread(signup, hooks.url)
    fan = User(fan_id, fan_name, fan_token)

    r = await asyncio.to_thread(subscribe, hooks.url, fan_token, "channel.cheer", "1",
                                {"broadcaster_user_id": channel}, f"{receiver.url}/cheer")
    assert r.status_code == 403, r.text  # the broadcaster's own channels only (Twitch's bits:read)
    r = await asyncio.to_thread(subscribe, hooks.url, owner_token, "channel.cheer", "1",
                                {"broadcaster_user_id": channel}, f"{receiver.url}/cheer")
    assert r.status_code == 202, r.text
    sub = r.json()["data"][0]
    assert sub["type"] == "channel.cheer" and sub["condition"] == {"broadcaster_user_id": channel}
    await asyncio.to_thread(wait_status, hooks.url, owner_token, sub["id"], "enabled")

    async with httpx.AsyncClient(base_url=hooks.url, timeout=30) as http:
        r = await http.post("/v1/bits/purchases", headers=fan.auth, json={"pack": "100"})
        assert r.status_code == 201 and r.json()["sandbox"] is True, r.text
        await _settled(http, fan, balance=100)
        chat = await Client.open(hooks.url.replace("http://", "ws://") + f"/v1/chat/ws?channel={channel}", fan_token)
        try:
            assert (await chat.say("cheer25 well played", nonce="cheer-once"))["type"] == "ACK"
            assert (await chat.say("cheer25 well played", nonce="cheer-once"))["type"] == "ACK"  # a retry
            await _settled(http, fan, balance=75, spent=25)

            async def sent() -> bool:  # the room's rate limit may ask for a moment; the same nonce is one cheer
                answer = await chat.say("Cheer10 again", nonce="cheer-two")
                assert answer["type"] == "ACK" or answer.get("code") == "rate_limited", answer
                return answer["type"] == "ACK"
            await eventually_async(sent, 30, "the second cheer accepted")
        finally:
            await chat.ws.close()
        await _settled(http, fan, balance=65, spent=35)

    def cheers() -> dict[str, dict[str, object]]:
        """Notifications by message id (a receiver deduplicates on it, as Twitch asks)."""
        return {x.headers["twitch-eventsub-message-id"]: x.json["event"] for x in receiver.at("/cheer")
                if x.type == "notification" and x.signature_ok}

    # The later cheer's notification comes after the earlier one's (one subscription's go in log order), so
    # once it is here, the retried message has had every chance to be notified twice.
    await eventually_async(lambda: [e for e in cheers().values() if e["bits"] == 10], 30, "the second cheer")
    assert sorted(e["bits"] for e in cheers().values()) == [10, 25]  # the retry was the same cheer
    event = next(e for e in cheers().values() if e["bits"] == 25)
    assert event == {"is_anonymous": False, "user_id": fan_id, "user_login": fan_name.lower(), "user_name": fan_name,
                     "broadcaster_user_id": channel, "broadcaster_user_login": event["broadcaster_user_login"],
                     "broadcaster_user_name": event["broadcaster_user_name"], "message": "cheer25 well played",
                     "bits": 25}
    assert str(event["broadcaster_user_login"]).startswith("c") and owner_id != fan_id
    headers = next(x.headers for x in receiver.at("/cheer") if x.type == "notification")
    assert headers["twitch-eventsub-subscription-type"] == "channel.cheer"

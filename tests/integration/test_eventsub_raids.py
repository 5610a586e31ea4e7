"""EventSub ``channel.raid`` end to end: subscriptions on either side of a raid (Twitch's
``from_broadcaster_user_id`` or ``to_broadcaster_user_id`` condition) get one signed notification when a
``RaidCompleted`` reaches the log, with both broadcasters and the viewers; a subscription on the other side
of another channel gets nothing.  The gateway, processors and receiver are tests/integration/test_eventsub.py's.
"""

from __future__ import annotations

import uuid

import pytest

from schemas.records.raid import RaidCompleted
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


def test_channel_raid_reaches_both_sides(hooks: Hooks, receiver: Receiver) -> None:  # noqa: F811
    _, _, raider = signup(hooks.url)
    _, _, star = signup(hooks.url)
    source, target = new_channel(hooks.url, raider), new_channel(hooks.url, star)

    r = subscribe(hooks.url, raider, "channel.raid", "1",
                  {"from_broadcaster_user_id": source, "to_broadcaster_user_id": target}, f"{receiver.url}/both")
    assert r.status_code == 400 and r.json()["field"] == "condition", r.text
    r = subscribe(hooks.url, raider, "channel.raid", "1", {"broadcaster_user_id": source}, f"{receiver.url}/x")
    assert r.status_code == 400, r.text

    subs = {}
    for path, token, condition in (("/raid-from", raider, {"from_broadcaster_user_id": source}),
                                   ("/raid-to", star, {"to_broadcaster_user_id": target}),
                                   ("/raid-to-source", raider, {"to_broadcaster_user_id": source})):
        r = subscribe(hooks.url, token, "channel.raid", "1", condition, f"{receiver.url}{path}")
        assert r.status_code == 202, r.text
        subs[path] = r.json()["data"][0]
        wait_status(hooks.url, token, subs[path]["id"], "enabled")
    assert subs["/raid-from"]["condition"] == {"from_broadcaster_user_id": source, "to_broadcaster_user_id": ""}
    assert subs["/raid-to"]["condition"] == {"from_broadcaster_user_id": "", "to_broadcaster_user_id": target}

    raid_id = str(uuid.uuid4())
    produce(hooks.settings, RaidCompleted(occurred_at=now_ms(), raid_id=raid_id, from_channel_id=source,
                                          to_channel_id=target, viewers=42), source)
    for path in ("/raid-from", "/raid-to"):
        note = eventually(lambda p=path: [x for x in receiver.at(p) if x.type == "notification"], 30,
                          f"the channel.raid notification at {path}")[0]
        assert note.signature_ok
        assert note.headers["twitch-eventsub-subscription-type"] == "channel.raid"
        assert note.json["subscription"]["id"] == subs[path]["id"]
        event = note.json["event"]
        assert event["from_broadcaster_user_id"] == source and event["to_broadcaster_user_id"] == target
        assert event["viewers"] == 42 and event["from_broadcaster_user_login"].startswith("c")
    assert [x for x in receiver.at("/raid-to-source") if x.type == "notification"] == []

"""channel.raid's pure parts: which side's subscriptions a completed raid reaches, and its event object."""

from __future__ import annotations

import uuid

from processors.eventsub.raids import raid_event, raid_triggers, wants
from schemas.records.raid import RaidCompleted
from views.eventsub import SubscriptionView

FROM, TO = str(uuid.uuid4()), str(uuid.uuid4())


def _sub(broadcaster: str, raiding: bool) -> SubscriptionView:
    return SubscriptionView(id=str(uuid.uuid4()), user_id=str(uuid.uuid4()), type="channel.raid", version="1",
                            broadcaster_user_id=broadcaster, moderator_user_id=None,
                            condition_user_id=broadcaster if raiding else None, callback="https://example.com/hook",
                            secret_sealed="", status="enabled", created_at_ms=0, updated_at_ms=0)


def _raid() -> RaidCompleted:
    return RaidCompleted(occurred_at=1_700_000_000_000, raid_id=str(uuid.uuid4()), from_channel_id=FROM,
                         to_channel_id=TO, viewers=7)


def test_each_side_gets_only_its_own_direction() -> None:
    raid = _raid()
    to_side, from_side = raid_triggers(raid)
    assert (to_side.broadcaster_user_id, from_side.broadcaster_user_id) == (TO, FROM)
    assert to_side.event_id == from_side.event_id == raid.event_id
    assert wants(_sub(TO, raiding=False), to_side, raid)
    assert wants(_sub(FROM, raiding=True), from_side, raid)
    assert not wants(_sub(FROM, raiding=False), from_side, raid)  # raids *to* the raiding channel
    assert not wants(_sub(TO, raiding=True), to_side, raid)  # raids *from* the raided channel


def test_conditions_and_event_follow_twitch() -> None:
    assert _sub(FROM, raiding=True).condition() == {"from_broadcaster_user_id": FROM, "to_broadcaster_user_id": ""}
    assert _sub(TO, raiding=False).condition() == {"from_broadcaster_user_id": "", "to_broadcaster_user_id": TO}
    assert raid_event(_raid(), ("raider", "Raider"), ("star", "Star")) == {
        "from_broadcaster_user_id": FROM, "from_broadcaster_user_login": "raider",
        "from_broadcaster_user_name": "Raider", "to_broadcaster_user_id": TO, "to_broadcaster_user_login": "star",
        "to_broadcaster_user_name": "Star", "viewers": 7}

"""EventSub ``channel.raid`` v1: a raid that went ahead, sent to the subscriptions of either side (pure).

Twitch's condition names one side, ``from_broadcaster_user_id`` (raids this
channel makes) or ``to_broadcaster_user_id`` (raids it receives); the view
keeps that channel as the subscription's broadcaster and marks the raiding
side with ``condition_user_id`` (views/eventsub.py).  A ``RaidCompleted``
(processors/raids/, ``raids`` topic) therefore triggers two lookups, and the
event object carries both broadcasters and the raiding channel's ``viewers``.
"""

from __future__ import annotations

from typing import Any

from processors.eventsub.messages import Trigger
from schemas.records.raid import RaidCompleted
from views.eventsub import SubscriptionView

RAID = "channel.raid"


def raid_triggers(record: RaidCompleted) -> list[Trigger]:
    """One trigger per side: the raided channel's, then the raiding channel's."""
    return [Trigger(RAID, record.to_channel_id, record.occurred_at, record.event_id),
            Trigger(RAID, record.from_channel_id, record.occurred_at, record.event_id)]


def wants(sub: SubscriptionView, trigger: Trigger, record: RaidCompleted) -> bool:
    """Whether the subscription's side is the trigger's: raids from its channel, or raids to it."""
    raiding_side = sub.condition_user_id is not None
    if trigger.broadcaster_user_id == record.from_channel_id and raiding_side:
        return True
    return trigger.broadcaster_user_id == record.to_channel_id and not raiding_side


def raid_event(record: RaidCompleted, from_names: tuple[str, str], to_names: tuple[str, str]) -> dict[str, Any]:
    """The ``event`` object: ``(login, display name)`` of each side, and the viewers sent."""
    return {"from_broadcaster_user_id": record.from_channel_id, "from_broadcaster_user_login": from_names[0],
            "from_broadcaster_user_name": from_names[1], "to_broadcaster_user_id": record.to_channel_id,
            "to_broadcaster_user_login": to_names[0], "to_broadcaster_user_name": to_names[1],
            "viewers": record.viewers}

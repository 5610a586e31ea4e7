"""The SUBSCRIPTION chat frame: a new sub, a resub (with its message) or a gift, announced in the channel's room.

The frame takes Twitch's USERNOTICE ``msg-id`` values as its ``kind``: ``sub``,
``resub`` and, for gifts, ``subgift`` (one recipient named by the gifter) or
``submysterygift`` (N random viewers).  It is published as a control frame on
the room's pub/sub channel, so every gateway with viewers in the room writes
it to them and mega-room sampling never drops it (gateways/chat/fanout.py:
``{prefix}chat:room:{channel}``, a payload starting with ``c``;
tests/unit/test_subscription_grants.py keeps the two the same).
"""

from __future__ import annotations

import json
from typing import Any

from views.subscriptions import TIER_IDS

ROOM_CHANNEL = "chat:room:"  # gateways/chat/fanout.py: ChatHub.topic
CONTROL = "c"  # gateways/chat/fanout.py: CONTROL


def room_channel(prefix: str, channel_id: str) -> str:
    return f"{prefix}{ROOM_CHANNEL}{channel_id}"


def _user(user_id: str, names: dict[str, str]) -> dict[str, Any]:
    return {"id": user_id, "username": names.get(user_id)}


def frame(*, frame_id: str, channel_id: str, kind: str, user_id: str, tier: str, at_ms: int,
          names: dict[str, str], months: int | None = None, message: str | None = None,
          recipients: tuple[str, ...] = ()) -> str:
    """One encoded SUBSCRIPTION frame (compact JSON without raw newlines, as gateways/chat/frames.py encodes)."""
    body: dict[str, Any] = {"type": "SUBSCRIPTION", "id": frame_id, "channel_id": channel_id, "kind": kind,
                            "user": _user(user_id, names), "tier": str(TIER_IDS.get(tier, 1000)),
                            "months": months, "message": message, "sent_at_ms": at_ms}
    if recipients:
        body["recipients"] = [_user(r, names) for r in recipients]
        body["count"] = len(recipients)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

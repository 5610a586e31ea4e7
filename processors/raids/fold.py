"""The raid and host views' fold, shared by the raid worker and ``glasscast rebuild-views``.

One ``raids`` or ``stream.lifecycle`` record goes into the raid state
(views/raids.py) and the hosts (views/hosting.py).  A ``RaidStarted`` of a
channel this platform does not know is another platform's on a shared log and
is left alone.
"""

from __future__ import annotations

from schemas.record import Record
from schemas.records.raid import HostEnded, HostStarted, RaidCancelled, RaidCompleted, RaidStarted
from schemas.records.stream import StreamEnded, StreamStarted
from views.hosting import Hosts
from views.raids import RaidStore
from views.store import ViewStore

RAID_RECORDS = (RaidStarted, RaidCancelled, RaidCompleted)
#: What the fold reads: the raid records, and what changes a host (a host's own records, the streams' ends
#: and starts).
FOLDED = (RaidStarted, RaidCancelled, RaidCompleted, HostStarted, HostEnded, StreamStarted, StreamEnded)
Folded = RaidStarted | RaidCancelled | RaidCompleted | HostStarted | HostEnded | StreamStarted | StreamEnded


async def fold(raids: RaidStore, hosts: Hosts, views: ViewStore, record: Record, now_ms: int) -> None:
    """Fold one record into the raid and host views (``now_ms``: what counts as history, views/raids.py)."""
    if isinstance(record, RaidStarted) and await views.get_channel(record.from_channel_id) is None:
        return
    if isinstance(record, RAID_RECORDS):
        await raids.apply(record, now_ms)
    await hosts.apply(record)

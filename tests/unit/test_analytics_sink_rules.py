"""The sink's pure parts: records to rows, and which records a batch takes (processors/analytics/): no I/O."""

from __future__ import annotations

from processors.analytics.rows import ROWS, row_for
from processors.analytics.sink import SRC_COLUMNS, Batch, Positions
from schemas.records.billing import SubscriptionStarted
from schemas.records.chat import ChatMessageSent, ChatRoleChanged, UserTimedOut
from schemas.records.social import Followed, Unfollowed
from schemas.records.stream import StreamEnded, StreamHealth, StreamStarted
from schemas.records.user import UserRegistered
from schemas.records.viewer import Heartbeat, ViewerCountUpdated
from topics.catalogue import topic_for_record
from topics.consumer import Event
from views.analytics.tables import BY_NAME, TABLES, TOPICS


def test_every_row_fits_its_table_and_comes_from_its_topic() -> None:
    samples = [
        Heartbeat(occurred_at=1, channel_id="c", session_id="s", rendition="source", buffer_health_s=1.0,
                  bitrate_kbps=1, latency_ms=None, dropped_frames=None),
        ChatMessageSent(occurred_at=1, message_id="m", channel_id="c", user_id="u", username="u", text="t",
                        badges=("subscriber",)),
        UserTimedOut(occurred_at=1, channel_id="c", user_id="u", moderator_user_id="m", duration_s=60),
        ChatRoleChanged(occurred_at=1, channel_id="c", user_id="u", changed_by_user_id="m", role="VIP",
                        granted=True),
        StreamStarted(occurred_at=1, stream_id="s", channel_id="c", ingest_host="h"),
        StreamEnded(occurred_at=2, stream_id="s", channel_id="c", started_at=1, duration_ms=1),
        StreamHealth(occurred_at=1, stream_id="s", channel_id="c", window_ms=2000, ingest_bitrate_kbps=1, fps=30.0,
                     bytes_received=1),
        ViewerCountUpdated(occurred_at=1, channel_id="c", viewers=3, window_s=60, bucket_s=15),
        Followed(occurred_at=1, follower_id="f", channel_id="c"),
        Unfollowed(occurred_at=1, follower_id="f", channel_id="c"),
        SubscriptionStarted(occurred_at=1, subscription_id="x", user_id="u", channel_id="c", expires_at=2,
                            amount_minor=499, currency="USD"),
    ]
    for record in samples:
        made = row_for(record)
        assert made is not None, record
        table, row = made
        assert len(row) + len(SRC_COLUMNS) == len(BY_NAME[table].columns), table
        assert topic_for_record(record.RECORD).name == BY_NAME[table].topic
    for cls in ROWS:  # every record with a row is on a topic the sink reads
        assert topic_for_record(cls.RECORD).name in TOPICS
    assert row_for(UserRegistered(occurred_at=1, user_id="u", username="u")) is None  # not analytics' business
    hb = row_for(samples[0])
    assert hb is not None and hb[1][2] == "" and hb[1][8] == -1 and hb[1][9] == 0  # nulls: '', -1, 0
    assert {t.columns[-2:] for t in TABLES} == {SRC_COLUMNS}


def _beat(offset: int, partition: int = 0) -> Event:
    return Event("viewer.heartbeats", partition, offset, 0, "c",
                 Heartbeat(occurred_at=offset, channel_id="c", session_id=f"s{offset}", rendition="source",
                           buffer_health_s=1.0, bitrate_kbps=1))


def test_start_is_past_the_watermark_or_the_beginning() -> None:
    positions = Positions(watermark={("viewer.heartbeats", 0): 41})
    assert positions.start("viewer.heartbeats", 0) == 42
    assert positions.start("viewer.heartbeats", 1) == -2  # OFFSET_BEGINNING


def test_a_batch_skips_what_its_table_has_and_what_it_saw() -> None:
    positions = Positions(watermark={("viewer.heartbeats", 0): 9},
                          table_max={("heartbeats", "viewer.heartbeats", 0): 12})
    batch = Batch()
    batch.add([_beat(o) for o in (8, 9, 10, 12, 13, 14)] + [_beat(3, partition=1)], positions, 5.0)
    assert [row[-1] for row in batch.rows["heartbeats"]] == [13, 14, 3]
    assert batch.count == 3 and batch.started == 5.0
    assert batch.last == {("viewer.heartbeats", 0): 14, ("viewer.heartbeats", 1): 3}
    again = Batch()
    again.add([_beat(13), _beat(14), _beat(15)], positions, 6.0)  # a redelivery in the same run
    assert [row[-1] for row in again.rows["heartbeats"]] == [15]


def test_records_without_rows_still_move_the_watermark() -> None:
    batch = Batch()
    batch.add([Event("chat.messages", 2, 5, 0, "c", UserRegistered(occurred_at=1, user_id="u", username="u"))],
              Positions(), 1.0)
    assert batch and batch.count == 0 and batch.last == {("chat.messages", 2): 5}

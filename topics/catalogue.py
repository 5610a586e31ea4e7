"""The topic catalogue: every topic Glasscast uses, its key and record types.

Topics are per aggregate and keyed by the aggregate id, so order holds per key
(docs/ARCHITECTURE.md, "Events").  Several record types share a topic; their Schema
Registry subjects follow TopicRecordNameStrategy: ``<topic>-<record full name>``.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """One topic: name, what its key is, the records it may carry, and how it is kept."""

    name: str
    key: str
    records: tuple[str, ...]
    partitions: int | None = None  # None: settings.kafka.default_partitions
    compacted: bool = False
    retention_ms: int = -1  # -1 keeps everything (the event log is the source of truth)
    doc: str = ""

    def config(self) -> dict[str, str]:
        """Broker topic configuration for create_topics."""
        return {
            "cleanup.policy": "compact" if self.compacted else "delete",
            "retention.ms": str(self.retention_ms),
        }

    def subject(self, record: str) -> str:
        """Schema Registry subject under TopicRecordNameStrategy."""
        return f"{self.name}-{record}"


def _ns(aggregate: str, *names: str) -> tuple[str, ...]:
    return tuple(f"glasscast.{aggregate}.{n}" for n in names)


CATALOGUE: tuple[TopicSpec, ...] = (
    TopicSpec("users", "user_id", _ns("user", "UserRegistered", "ProfileUpdated", "PasswordChanged",
                                           "UserDeleted"),
              doc="Account lifecycle."),
    TopicSpec("channels", "channel_id",
              _ns("channel", "ChannelCreated", "ChannelUpdated", "StreamKeyRotated"),
              doc="Channel metadata; stream keys appear only as hashes."),
    TopicSpec("stream.lifecycle", "channel_id",
              _ns("stream", "StreamConfigured", "StreamUpdated", "StreamStarted", "StreamHealth",
                  "StreamReconnected", "StreamEnded"),
              doc="Broadcast lifecycle and ingest health."),
    TopicSpec("media.gops", "stream_id", _ns("media", "GopAvailable"), retention_ms=7 * DAY_MS,
              doc="One event per GOP stored by the ingest (claim check: a blob reference)."),
    TopicSpec("media.segments", "stream_id", _ns("media", "SegmentReady"),
              doc="One event per stored HLS segment per rendition."),
    TopicSpec("media.parts", "stream_id", _ns("media", "PartReady"), retention_ms=DAY_MS,
              doc="One event per stored LL-HLS part per rendition: the live edge of the playlists."),
    TopicSpec("chat.messages", "channel_id", _ns("chat", "ChatMessageSent", "ChatMessageDeleted"),
              doc="Chat durability, moderation replay and VOD chat replay."),
    TopicSpec("chat.moderation", "channel_id",
              _ns("chat", "UserTimedOut", "UserBanned", "UserUnbanned", "ChatModeChanged", "ChatRoleChanged"),
              doc="Moderation actions per channel."),
    TopicSpec("viewer.heartbeats", "channel_id", _ns("viewer", "Heartbeat"), retention_ms=DAY_MS,
              doc="Player heartbeats; folded into HyperLogLog viewer counts."),
    TopicSpec("viewer.counts", "channel_id", _ns("viewer", "ViewerCountUpdated"), retention_ms=DAY_MS,
              doc="Viewer-count snapshots per live channel every few seconds; feed the directory and the ladder."),
    TopicSpec("social.follows", "follower_id:channel_id", _ns("social", "Followed", "Unfollowed"),
              compacted=True, doc="The follow graph; the latest event per pair wins."),
    TopicSpec("billing.subscriptions", "user_id:channel_id",
              _ns("billing", "SubscriptionStarted", "SubscriptionRenewed", "SubscriptionEnded",
                  "SubscriptionCancelRequested"),
              doc="Paid subscriptions (entitlements)."),
    TopicSpec("billing.payments", "order_id", _ns("billing", "OrderPlaced", "PaymentSucceeded", "PaymentReversed"),
              doc="Orders and what the payment provider reported about them (webhooks deduplicated by event id)."),
    TopicSpec("billing.ledger", "user_id",
              _ns("billing", "BitsPurchased", "BitsCheered", "BitsRefunded", "BitsChargedBack", "DonationMade"),
              doc="The bits ledger and donations: balances are a fold over it, never a stored number."),
    TopicSpec("raids", "channel_id",
              _ns("raid", "RaidStarted", "RaidCancelled", "RaidCompleted", "HostStarted", "HostEnded"),
              doc="Raids and host mode, keyed by the raiding or hosting channel: its audience sent elsewhere."),
    TopicSpec("clips", "clip_id", _ns("clip", "ClipCreated", "ClipRendered", "ClipViewsCounted"),
              doc="Clips: ranges over a broadcast's segments, and their MP4 remuxes."),
    TopicSpec("videos", "video_id", _ns("video", "StoryboardReady", "VideoDeleted", "VideoPurged", "VideoViewsCounted"),
              doc="Videos (ended broadcasts): scrubbing previews, deletion and the purge of their objects."),
    TopicSpec("notifications", "user_id",
              _ns("notification", "NotificationQueued", "NotificationDelivered"),
              doc="Go-live and other notifications due at once, and their deliveries."),
    TopicSpec("notifications.later", "user_id", _ns("notification", "NotificationQueued"),
              doc="The later tier of go-live fan-outs, each with its due time: read apart from `notifications`, "
                  "so a spread still pending never holds back a notification due now."),
    TopicSpec("eventsub", "subscription_id",
              _ns("eventsub", "SubscriptionCreated", "SubscriptionVerified", "SubscriptionRevoked",
                  "SubscriptionDeleted"),
              doc="EventSub webhook subscriptions; their secrets only sealed (views/eventsub.py)."),
    TopicSpec("deadletter", "source_topic", _ns("ops", "DeadLetter"), partitions=1,
              doc="Records a consumer could not decode, with their coordinates; nothing is dropped."),
)

BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in CATALOGUE}


def topic_for_record(record: str) -> TopicSpec:
    """The topic a record type goes to unless its producer names another.

    Each record type has one such topic, the first that lists it; a later one listing it too is a topic its
    producers name explicitly (``notifications.later`` carries the NotificationQueued records due later).
    """
    for spec in CATALOGUE:
        if record in spec.records:
            return spec
    raise KeyError(f"no topic carries record {record!r}")


def all_records() -> tuple[str, ...]:
    """Every record full name in the catalogue, each once."""
    return tuple(dict.fromkeys(r for spec in CATALOGUE for r in spec.records))

"""One frozen settings object for every Glasscast process.

Settings are read once, by an entry point, from ``GLASSCAST_*`` environment
variables and defaults, then passed down.  A field ``port`` of section
``gateway`` is set by ``GLASSCAST_GATEWAY_PORT``; top-level fields drop the
section (``GLASSCAST_DATA_DIR``).  Bad values fail at start-up with a message
that names the variable.

An empty ``kafka.bootstrap_servers``, ``registry.url`` or ``valkey.url`` means
"embedded": ``glasscast up`` starts that piece itself and fills the address in
before it starts the other processes.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from infra.errors import SettingsError

ENV_PREFIX = "GLASSCAST_"


class Secret:
    """A string whose ``repr`` hides it, as Starlette's ``Secret`` does."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    def __str__(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class LogSettings:
    level: str = "INFO"
    format: Literal["json", "console"] = "console"


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = ""  # empty: the embedded broker
    broker_port: int = 0  # embedded broker port; 0 picks a free one
    client_id: str = "glasscast"
    default_partitions: int = 3
    replication_factor: int = 1
    # The embedded broker serves a new consumer group after about half the
    # session timeout (docs/ARCHITECTURE.md, "Embedded platform"), so keep it low.
    session_timeout_ms: int = 6000
    # Latency-critical consumers: the embedded broker re-checks a waiting
    # fetch on a timer, so the wait bounds produce-to-consume latency.
    fetch_wait_max_ms: int = 10
    # Consumers whose work nobody waits for within a request (the ledger's fold, EventSub's dispatch: both read
    # what chat writes, at chat's rate) fetch with this longer wait.  The embedded broker's cost is per fetch
    # of every partition, however few records it returns, so under load a longer wait carries more records
    # per fetch: 10 -> 50 ms took the broker's CPU in bench/ledger.py from about 42% to 32% of a core.  It adds
    # about a quarter of itself to their produce-to-consume latency at the median, about half at p99.
    background_fetch_wait_max_ms: int = 50
    linger_ms: int = 2
    request_timeout_ms: int = 10000
    # The doorbell (topics/doorbell.py): producers ring a pub/sub channel per topic after each delivery, and
    # latency-critical consumers keep their partitions paused while idle (no fetch, so an idle platform costs
    # the broker nothing) and resume them at the ring.  doorbell_url is the pub/sub server (a redis:// URL);
    # empty: the Valkey of GLASSCAST_VALKEY_URL, filled in when the settings are loaded.  Off, or with no
    # URL, consumers fetch all the time as they did before.
    doorbell: bool = True
    doorbell_url: str = ""
    # A paused consumer still fetches once this often (each check costs the embedded broker a fetch of every
    # partition, so not too often): the latency bound of a record whose producer could not ring.  A consumer
    # whose own doorbell connection fails does not pause at all until it is back.
    idle_check_ms: int = 5000


@dataclass(frozen=True)
class RegistrySettings:
    url: str = ""  # empty: the embedded registry
    host: str = "127.0.0.1"
    port: int = 0  # embedded registry port; 0 picks a free one
    topic: str = "_schemas"
    compatibility: str = "BACKWARD"


@dataclass(frozen=True)
class ValkeySettings:
    url: str = ""  # empty: the embedded Valkey
    port: int = 0  # embedded Valkey port; 0 picks a free one
    key_prefix: str = "gc:"  # every Glasscast key in Valkey starts with this


@dataclass(frozen=True)
class GatewaySettings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""  # how clients reach the gateway; derived when empty
    cors_origins: tuple[str, ...] = ()
    # How long a command waits for its view to catch up before answering,
    # so a client can read what it just wrote.
    consistency_wait_ms: int = 3000
    max_body_bytes: int = 65536
    # Segments and init segments each gateway keeps in memory (gateways/origin_cache.py).
    # 0 keeps none; concurrent requests for one object still share a single store read.
    origin_cache_bytes: int = 256 * 1024 * 1024
    # How long a live playlist's last rendering stands in for a fresh one while Valkey does not
    # answer (gateways/last_good.py); 0 answers 503 at once.
    playlist_last_good_s: float = 30.0
    # A gateway stopped with SIGTERM tells its chat sockets to reconnect (RECONNECT, then close 1012)
    # spread over this many seconds, so that a deploy does not make every client reconnect at once
    # (gateways/drain.py); keep it well under GLASSCAST_SUPERVISOR_STOP_TIMEOUT_S.
    drain_window_s: float = 5.0
    # A raid's countdown before the raiding channel's viewers move (Twitch: 90 s; gateways/raids.py).
    raid_countdown_s: float = 90.0
    # The LL-HLS live edge each gateway folds from media.parts (gateways/live_edge.py): where a starting
    # gateway begins reading (seconds back), how many complete segments it keeps per rendition, after how
    # long without a part a stream is dropped, and how long the start waits to catch up before serving.
    live_edge_lookback_s: float = 30.0
    live_edge_segments: int = 4
    live_edge_idle_s: float = 60.0
    live_edge_ready_timeout_s: float = 10.0
    # Slow clients (gateways/http_deadlines.py): a request's head (request line and headers) must arrive within
    # header_timeout_s of the connection opening or the previous response ending, else the connection closes
    # (408 when part of a head came); its body within body_timeout_s of the head; an idle keep-alive
    # connection closes after keep_alive_s; a head over max_header_bytes is refused (431) and the connection closed.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: int = 5
    max_header_bytes: int = 65536
    # /metrics answers clients whose address is in metrics_networks (CIDRs, comma-separated; loopback by default)
    # or that send "Authorization: Bearer <metrics_token>" (when set); anyone else gets 403 (gateways/health.py).
    metrics_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    metrics_token: Secret = Secret("")
    # Proxies (addresses or CIDRs, comma-separated) whose X-Forwarded-For names the client.  Empty (the
    # embedded default): none, so a client on the gateway's own host cannot name another client address and
    # slip past the per-client login throttle and viewer-session caps.
    trusted_proxies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for var, ok, rule in (
            ("GLASSCAST_GATEWAY_HEADER_TIMEOUT_S", 0 < self.header_timeout_s <= 300, "in (0, 300]"),
            ("GLASSCAST_GATEWAY_BODY_TIMEOUT_S", 0 < self.body_timeout_s <= 3600, "in (0, 3600]"),
            ("GLASSCAST_GATEWAY_KEEP_ALIVE_S", 1 <= self.keep_alive_s <= 3600, "1 to 3600"),
            ("GLASSCAST_GATEWAY_MAX_HEADER_BYTES", 1024 <= self.max_header_bytes <= 1 << 20, "1024 to 1048576"),
            ("GLASSCAST_GATEWAY_LIVE_EDGE_LOOKBACK_S", 0 <= self.live_edge_lookback_s <= 3600, "0 to 3600"),
            ("GLASSCAST_GATEWAY_LIVE_EDGE_SEGMENTS", 1 <= self.live_edge_segments <= 100, "1 to 100"),
            ("GLASSCAST_GATEWAY_LIVE_EDGE_IDLE_S", 1 <= self.live_edge_idle_s <= 86400, "1 to 86400"),
            ("GLASSCAST_GATEWAY_LIVE_EDGE_READY_TIMEOUT_S", 0 <= self.live_edge_ready_timeout_s <= 300, "0 to 300"),
            ("GLASSCAST_GATEWAY_RAID_COUNTDOWN_S", 1 <= self.raid_countdown_s <= 600, "1 to 600"),
        ):
            if not ok:
                raise SettingsError(f"{var}: value out of range ({rule})")
        if not 0 <= self.drain_window_s <= 300:
            raise SettingsError("GLASSCAST_GATEWAY_DRAIN_WINDOW_S: value out of range (0 to 300)")
        if self.origin_cache_bytes < 0:
            raise SettingsError("GLASSCAST_GATEWAY_ORIGIN_CACHE_BYTES: value out of range (must be 0 or more)")
        if not 0 <= self.playlist_last_good_s <= 3600:
            raise SettingsError("GLASSCAST_GATEWAY_PLAYLIST_LAST_GOOD_S: value out of range (0 to 3600)")
        for network in self.metrics_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise SettingsError(f"GLASSCAST_GATEWAY_METRICS_NETWORKS: {network!r} is not a network "
                                    "(CIDR such as 10.0.0.0/8)") from None


@dataclass(frozen=True)
class AuthSettings:
    jwt_secret: Secret = Secret("")  # empty: generated once into the data dir
    jwt_issuer: str = "glasscast"
    jwt_ttl_s: int = 3600
    min_password_length: int = 8
    playback_secret: Secret = Secret("")  # empty: derived from the JWT secret
    playback_ttl_s: int = 600  # players refresh their HLS token before this
    stream_key_secret: Secret = Secret("")  # empty: derived from the JWT secret
    # Password hashing (argon2id, about 64 MiB and 100+ ms each) runs in its own pool of hash_workers threads,
    # never the pool that reads media; at most hash_queue_max more wait, and past that a login or sign-up is
    # answered 503 at once (gateways/passwords.py).
    hash_workers: int = 2
    hash_queue_max: int = 16
    # Login throttling per account and per client address, shared through Valkey (gateways/login_throttle.py):
    # after *_free_failures failed attempts, each further one doubles a wait from login_backoff_base_s up to
    # login_backoff_max_s (429 with Retry-After); a success clears the account's count; counts expire
    # login_window_s after the last attempt.
    login_account_free_failures: int = 5
    login_client_free_failures: int = 30
    login_backoff_base_s: float = 1.0
    login_backoff_max_s: float = 300.0
    login_window_s: float = 900.0
    # A refused sign-in (429 throttled, 503 hash queue full) is answered after this long (at most its
    # Retry-After), holding nothing but the socket: a client that ignores Retry-After and floods in a closed
    # loop then sends at most one request per connection per this many seconds.  0 answers at once.
    login_refusal_delay_s: float = 1.0

    def __post_init__(self) -> None:
        for var, ok, rule in (
            ("GLASSCAST_AUTH_HASH_WORKERS", 1 <= self.hash_workers <= 64, "1 to 64"),
            ("GLASSCAST_AUTH_HASH_QUEUE_MAX", 0 <= self.hash_queue_max <= 10_000, "0 to 10000"),
            ("GLASSCAST_AUTH_LOGIN_ACCOUNT_FREE_FAILURES", self.login_account_free_failures >= 0, "0 or more"),
            ("GLASSCAST_AUTH_LOGIN_CLIENT_FREE_FAILURES", self.login_client_free_failures >= 0, "0 or more"),
            ("GLASSCAST_AUTH_LOGIN_BACKOFF_BASE_S", 0 < self.login_backoff_base_s <= 3600, "in (0, 3600]"),
            ("GLASSCAST_AUTH_LOGIN_BACKOFF_MAX_S", self.login_backoff_base_s <= self.login_backoff_max_s <= 86400,
             "GLASSCAST_AUTH_LOGIN_BACKOFF_BASE_S to 86400"),
            ("GLASSCAST_AUTH_LOGIN_WINDOW_S", 1 <= self.login_window_s <= 86400, "1 to 86400"),
            ("GLASSCAST_AUTH_LOGIN_REFUSAL_DELAY_S", 0 <= self.login_refusal_delay_s <= 10, "0 to 10"),
        ):
            if not ok:
                raise SettingsError(f"{var}: value out of range (must be {rule})")


@dataclass(frozen=True)
class IngestSettings:
    host: str = "127.0.0.1"  # 0.0.0.0 to take encoders from other machines
    rtmp_port: int = 1935
    public_rtmp_url: str = ""  # derived from the host and port when empty
    app: str = "live"  # the RTMP application: rtmp://HOST:PORT/<app>
    # A publisher that drops and returns within this window continues its stream.
    reconnect_grace_s: float = 10.0
    # A live channel refuses a second publisher unless the first sent nothing for this long.
    silent_after_s: float = 5.0
    # A live stream's owner renews its lease in Valkey (every GOP, at least every second); if its
    # ingest process dies, the stream counts as parked this long after the last renewal.
    lease_s: float = 3.0
    health_interval_s: float = 2.0
    handshake_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    max_connections: int = 64
    # Admission (media/ingest/admission.py): connections from one client (IP, or IPv6 /64) that have not yet
    # published; a deadline from connect to an accepted stream key that incoming bytes do not extend; and
    # the largest RTMP message a connection may send before its key is accepted (8 MiB after).
    max_pending_per_client: int = 4
    publish_deadline_s: float = 10.0
    max_message_bytes_before_publish: int = 16384
    chunk_size: int = 4096  # our outgoing RTMP chunk size
    window_ack_size: int = 2_500_000
    gop_queue_maxsize: int = 4  # GOPs waiting for storage per stream before reads pause
    max_gop_s: float = 10.0  # a GOP longer than this is cut anyway (bounded memory)

    def __post_init__(self) -> None:
        for var, ok, rule in (
            ("GLASSCAST_INGEST_MAX_PENDING_PER_CLIENT", self.max_pending_per_client >= 1, "1 or more"),
            ("GLASSCAST_INGEST_PUBLISH_DEADLINE_S", 0 < self.publish_deadline_s <= 600, "in (0, 600]"),
            ("GLASSCAST_INGEST_MAX_MESSAGE_BYTES_BEFORE_PUBLISH",
             1024 <= self.max_message_bytes_before_publish <= 1 << 20, "1024 to 1048576"),
        ):
            if not ok:
                raise SettingsError(f"{var}: value out of range ({rule})")


@dataclass(frozen=True)
class LadderSettings:
    # tiered: by audience (passthrough under tier_small viewers, two renditions up to
    # tier_medium, the full ladder above); full: always the full ladder; passthrough: remux only.
    mode: Literal["tiered", "full", "passthrough"] = "tiered"
    tier_small: int = 10
    tier_medium: int = 100


@dataclass(frozen=True)
class TranscodeSettings:
    group_id: str = "glasscast-transcode"
    workers: int = 0  # transcode processes; 0: one per CPU
    max_in_flight: int = 0  # GOPs being transcoded at once; 0: twice the workers
    live_window: int = 6  # segments in a live media playlist
    # The workers also remux source and audio from each GOP; off where the ingest packages them itself,
    # as LL-HLS parts (media/ingest/parts.py): `glasscast up` and every ingest here does.
    remux: bool = False
    # The scaled rungs are transcoded part by part as the source parts arrive (media/transcode/part_worker.py);
    # off: whole GOPs, once each GOP has ended.
    live_parts: bool = True
    # GOPs older than this get only their remuxes (source, audio), not the scaled rungs:
    # after an outage the backlog is VOD history, and encoding it would delay every live stream.
    max_gop_age_s: float = 30.0


@dataclass(frozen=True)
class ProcessorSettings:
    app_id: str = "glasscast-views"
    auto_offset_reset: str = "earliest"


@dataclass(frozen=True)
class ArchiveSettings:
    enabled: bool = True
    fsync: bool = True
    flush_interval_ms: int = 20
    drain_timeout_s: float = 30.0
    # The keeper snapshots every consumer group's committed offsets this often (and once more when it
    # drains); a restart puts a group back at most this far behind (topics/offsets_archive.py).
    offsets_interval_ms: int = 1000
    # The archiver's fetch wait when the doorbell is off (with it, the archiver sleeps while idle and fetches
    # with GLASSCAST_KAFKA_FETCH_WAIT_MAX_MS while records flow).  A background reader without a doorbell waits
    # long (the embedded broker re-checks a waiting fetch about every half of this, and each check costs it
    # CPU); its lag, about half of this, is what a crash of the broker itself can lose (infra/embedded/archiver.py).
    fetch_wait_max_ms: int = 400

    def __post_init__(self) -> None:
        if self.offsets_interval_ms < 1:
            raise SettingsError("GLASSCAST_ARCHIVE_OFFSETS_INTERVAL_MS: value out of range (must be at least 1)")
        if not 1 <= self.fetch_wait_max_ms <= 2000:
            raise SettingsError("GLASSCAST_ARCHIVE_FETCH_WAIT_MAX_MS: value out of range (1 to 2000)")


@dataclass(frozen=True)
class SupervisorSettings:
    # `glasscast up` restarts a child that exits, after a back-off that starts at backoff_initial_s and
    # doubles with each restart in the window (up to backoff_max_s).  A child that needs more than
    # max_restarts restarts within restart_window_s stops the platform (infra/restarts.py).
    max_restarts: int = 5
    restart_window_s: float = 60.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    # How long a child has to exit after SIGTERM before it gets SIGKILL (the keeper gets the archive
    # drain timeout on top), when `glasscast up` stops and when it was killed (infra/undertaker.py).
    stop_timeout_s: float = 15.0

    def __post_init__(self) -> None:
        for var, ok, rule in (
            ("GLASSCAST_SUPERVISOR_MAX_RESTARTS", self.max_restarts >= 0, "0 or more"),
            ("GLASSCAST_SUPERVISOR_STOP_TIMEOUT_S", self.stop_timeout_s > 0, "positive"),
            ("GLASSCAST_SUPERVISOR_RESTART_WINDOW_S", self.restart_window_s > 0, "positive"),
            ("GLASSCAST_SUPERVISOR_BACKOFF_INITIAL_S", self.backoff_initial_s >= 0, "0 or more"),
            ("GLASSCAST_SUPERVISOR_BACKOFF_MAX_S", self.backoff_max_s >= self.backoff_initial_s,
             "at least GLASSCAST_SUPERVISOR_BACKOFF_INITIAL_S"),
        ):
            if not ok:
                raise SettingsError(f"{var}: value out of range (must be {rule})")


@dataclass(frozen=True)
class ViewerSettings:
    # Players beat every heartbeat_interval_s (below).  A session counts while one of its
    # beats lies in the merged buckets: it is counted for window_s - bucket_s to window_s after
    # its last beat, so window_s - bucket_s must exceed the beat interval (views/viewers.py).
    bucket_s: int = 15
    window_s: int = 60
    snapshot_interval_s: float = 5.0  # a ViewerCountUpdated per live channel this often
    batch_size: int = 2000  # heartbeats per Valkey pipeline
    batch_within_s: float = 0.25  # a partial batch is written after this long
    # Heartbeats count only with a session the playback endpoint issued (gateways/viewer_sessions.py).
    # heartbeat_interval_s is how often players beat (sent with the playback answer); a gateway accepts one
    # beat per session per interval, less a fifth for timer jitter, and answers 429 to the rest.  One client
    # (an IPv4 address or an IPv6 /64) holds at most sessions_per_client sessions per channel, and gets at
    # most session_issues_per_minute playback answers a minute (then 429 with Retry-After).
    heartbeat_interval_s: float = 10.0
    sessions_per_client: int = 8
    session_issues_per_minute: int = 60

    def __post_init__(self) -> None:
        for var, ok, rule in (
            ("GLASSCAST_VIEWERS_BUCKET_S", self.bucket_s >= 1, "at least 1"),
            ("GLASSCAST_VIEWERS_WINDOW_S", self.bucket_s >= 1 and self.window_s >= 2 * self.bucket_s
             and self.window_s % self.bucket_s == 0,
             "a multiple of GLASSCAST_VIEWERS_BUCKET_S, at least two buckets"),
            ("GLASSCAST_VIEWERS_SNAPSHOT_INTERVAL_S", self.snapshot_interval_s > 0, "positive"),
            ("GLASSCAST_VIEWERS_BATCH_SIZE", self.batch_size >= 1, "at least 1"),
            ("GLASSCAST_VIEWERS_BATCH_WITHIN_S", self.batch_within_s > 0, "positive"),
            ("GLASSCAST_VIEWERS_HEARTBEAT_INTERVAL_S",
             0 < self.heartbeat_interval_s < self.window_s - self.bucket_s,
             "positive, under GLASSCAST_VIEWERS_WINDOW_S - GLASSCAST_VIEWERS_BUCKET_S"),
            ("GLASSCAST_VIEWERS_SESSIONS_PER_CLIENT", 1 <= self.sessions_per_client <= 100_000, "1 to 100000"),
            ("GLASSCAST_VIEWERS_SESSION_ISSUES_PER_MINUTE", 1 <= self.session_issues_per_minute <= 1_000_000,
             "1 to 1000000"),
        ):
            if not ok:
                raise SettingsError(f"{var}: value out of range (must be {rule})")


@dataclass(frozen=True)
class ChatSettings:
    max_message_length: int = 500  # characters, as Twitch
    max_frame_bytes: int = 8192  # a WebSocket text frame larger than this is refused
    recent_messages: int = 50  # sent to a client on connect
    # Sliding-window rate limit per user and room: at most N messages in any window_s.
    rate_window_s: float = 1.0
    user_messages_per_window: int = 1
    moderator_messages_per_window: int = 5
    # Fan-out: a room's messages are coalesced for up to coalesce_ms into one frame, written to
    # every socket.  A socket with more than send_buffer_bytes unsent skips messages; one that
    # stays that far behind for slow_client_drop_s is disconnected.
    coalesce_ms: float = 5.0
    send_buffer_bytes: int = 256 * 1024
    slow_client_drop_s: float = 10.0
    # Mega rooms: above this many messages/s in a room, each viewer gets a sample of at most
    # this many per second (0: everything); moderators and the broadcaster always get everything.
    sample_max_per_s: int = 0
    # A message is shown only once the log has it: past this wait its sender is told it was not sent.
    log_timeout_ms: int = 5000
    ml_filter: bool = True  # the local profanity classifier (alt-profanity-check)
    ml_threshold: float = 0.9  # refuse messages the classifier scores at or above this
    banned_words_max: int = 500  # per channel
    history_backend: Literal["sqlite", "cassandra"] = "sqlite"
    cassandra_hosts: tuple[str, ...] = ()  # contact points, host or host:port
    cassandra_keyspace: str = "glasscast"
    cassandra_replication_factor: int = 1

    def __post_init__(self) -> None:
        for var, ok, rule in (
            ("GLASSCAST_CHAT_MAX_MESSAGE_LENGTH", self.max_message_length >= 1, "at least 1"),
            ("GLASSCAST_CHAT_RECENT_MESSAGES", 0 <= self.recent_messages <= 1000, "0 to 1000"),
            ("GLASSCAST_CHAT_RATE_WINDOW_S", self.rate_window_s > 0, "positive"),
            ("GLASSCAST_CHAT_USER_MESSAGES_PER_WINDOW", self.user_messages_per_window >= 1, "at least 1"),
            ("GLASSCAST_CHAT_MODERATOR_MESSAGES_PER_WINDOW", self.moderator_messages_per_window >= 1, "at least 1"),
            ("GLASSCAST_CHAT_SEND_BUFFER_BYTES", self.send_buffer_bytes >= 1024, "at least 1024"),
            ("GLASSCAST_CHAT_COALESCE_MS", 0 <= self.coalesce_ms <= 1000, "0 to 1000"),
            ("GLASSCAST_CHAT_SAMPLE_MAX_PER_S", self.sample_max_per_s >= 0, "0 or more"),
            ("GLASSCAST_CHAT_LOG_TIMEOUT_MS", 100 <= self.log_timeout_ms <= 60_000, "100 to 60000"),
            ("GLASSCAST_CHAT_ML_THRESHOLD", 0 < self.ml_threshold <= 1, "in (0, 1]"),
        ):
            if not ok:
                raise SettingsError(f"{var}: value out of range (must be {rule})")


@dataclass(frozen=True)
class EventSubSettings:
    # EventSub webhooks (processors/eventsub/, docs/ARCHITECTURE.md "EventSub").  Callbacks must be https and
    # resolve to public addresses; allow_private_callbacks also takes http and loopback/private/link-local ones
    # (tests, a lab).  A callback has verification_timeout_s to echo the challenge and delivery_timeout_s to
    # answer a notification; a notification is tried max_attempts times, waiting retry_initial_s, doubling up to
    # retry_max_s; after revoke_after_failures failed attempts in a row the subscription is revoked.
    allow_private_callbacks: bool = False
    max_subscriptions_per_user: int = 100
    verification_timeout_s: float = 10.0
    delivery_timeout_s: float = 5.0
    max_attempts: int = 5
    retry_initial_s: float = 1.0
    retry_max_s: float = 60.0
    revoke_after_failures: int = 10
    max_in_flight: int = 32  # deliveries under way at once
    secret_key: Secret = Secret("")  # seals webhook secrets on the log; empty: derived from the JWT secret

    def __post_init__(self) -> None:
        for var, ok, rule in (
            ("GLASSCAST_EVENTSUB_MAX_SUBSCRIPTIONS_PER_USER", 1 <= self.max_subscriptions_per_user <= 10_000,
             "1 to 10000"),
            ("GLASSCAST_EVENTSUB_VERIFICATION_TIMEOUT_S", 0 < self.verification_timeout_s <= 60, "in (0, 60]"),
            ("GLASSCAST_EVENTSUB_DELIVERY_TIMEOUT_S", 0 < self.delivery_timeout_s <= 60, "in (0, 60]"),
            ("GLASSCAST_EVENTSUB_MAX_ATTEMPTS", 1 <= self.max_attempts <= 20, "1 to 20"),
            ("GLASSCAST_EVENTSUB_RETRY_INITIAL_S", 0 < self.retry_initial_s <= 600, "in (0, 600]"),
            ("GLASSCAST_EVENTSUB_RETRY_MAX_S", self.retry_initial_s <= self.retry_max_s <= 3600,
             "GLASSCAST_EVENTSUB_RETRY_INITIAL_S to 3600"),
            ("GLASSCAST_EVENTSUB_REVOKE_AFTER_FAILURES", 1 <= self.revoke_after_failures <= 1000, "1 to 1000"),
            ("GLASSCAST_EVENTSUB_MAX_IN_FLIGHT", 1 <= self.max_in_flight <= 1000, "1 to 1000"),
        ):
            if not ok:
                raise SettingsError(f"{var}: value out of range (must be {rule})")


@dataclass(frozen=True)
class NotificationSettings:
    # Go-live notifications (processors/notifications/, docs/ARCHITECTURE.md "Notifications").  Followers who
    # watched or chatted the channel within engaged_window_s are notified at once; the rest at a delay spread
    # deterministically over delay_min_s..delay_max_s, so a big channel does not stampede.  A channel that went
    # live again within cooldown_s of its last notified start notifies nobody; a StreamStarted older than
    # max_start_age_s when read (a replay of old history) notifies nobody either.
    engaged_window_s: float = 7 * 86400.0
    delay_min_s: float = 60.0
    delay_max_s: float = 120.0
    cooldown_s: float = 600.0
    max_start_age_s: float = 300.0
    plan_batch: int = 5000  # followers read and produced per step of a fan-out
    max_pending: int = 50_000  # queued notifications a deliverer holds while they are not yet due
    feed_max: int = 200  # notifications kept in a user's in-app feed
    sockets_per_user: int = 8  # open notification sockets (tabs) of one account on one gateway
    # E-mail over SMTP; an empty smtp_host sends none.
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "Glasscast <notifications@localhost>"
    smtp_starttls: bool = False
    smtp_user: str = ""
    smtp_password: Secret = Secret("")
    smtp_timeout_s: float = 10.0
    smtp_attempts: int = 3  # then the e-mail is given up (logged); the in-app notification stands

    def __post_init__(self) -> None:
        for var, ok, rule in (
            ("GLASSCAST_NOTIFICATIONS_DELAY_MIN_S", self.delay_min_s >= 0, "0 or more"),
            ("GLASSCAST_NOTIFICATIONS_DELAY_MAX_S", self.delay_max_s >= self.delay_min_s,
             "at least GLASSCAST_NOTIFICATIONS_DELAY_MIN_S"),
            ("GLASSCAST_NOTIFICATIONS_ENGAGED_WINDOW_S", self.engaged_window_s > 0, "positive"),
            ("GLASSCAST_NOTIFICATIONS_COOLDOWN_S", self.cooldown_s >= 0, "0 or more"),
            ("GLASSCAST_NOTIFICATIONS_MAX_START_AGE_S", self.max_start_age_s > 0, "positive"),
            ("GLASSCAST_NOTIFICATIONS_PLAN_BATCH", 1 <= self.plan_batch <= 100_000, "1 to 100000"),
            ("GLASSCAST_NOTIFICATIONS_MAX_PENDING", 1 <= self.max_pending <= 1_000_000, "1 to 1000000"),
            ("GLASSCAST_NOTIFICATIONS_FEED_MAX", 1 <= self.feed_max <= 10_000, "1 to 10000"),
            ("GLASSCAST_NOTIFICATIONS_SOCKETS_PER_USER", 1 <= self.sockets_per_user <= 1000, "1 to 1000"),
            ("GLASSCAST_NOTIFICATIONS_SMTP_PORT", 0 < self.smtp_port < 65536, "1 to 65535"),
            ("GLASSCAST_NOTIFICATIONS_SMTP_TIMEOUT_S", self.smtp_timeout_s > 0, "positive"),
            ("GLASSCAST_NOTIFICATIONS_SMTP_ATTEMPTS", 1 <= self.smtp_attempts <= 10, "1 to 10"),
        ):
            if not ok:
                raise SettingsError(f"{var}: value out of range (must be {rule})")


@dataclass(frozen=True)
class VodSettings:
    # Videos and clips (media/vod/, docs/ARCHITECTURE.md "Videos and clips").  A video is kept retention_days
    # after its broadcast ends unless its channel sets its own (PATCH /v1/channels/{id} vod_retention_days);
    # the media workers sweep expired ones every sweep_interval_s.  compact_after_s after a broadcast ends,
    # the copies only live playback needs (LL-HLS parts, the ingest's GOPs) are deleted; segments stay.
    # Clips are 5..60 s (default 30); each user may make clips_per_minute.  A storyboard waits up to
    # storyboard_wait_s after the end for the last thumbnails.
    retention_days: int = 60
    sweep_interval_s: float = 60.0
    compact_after_s: float = 600.0  # after its end, a video's LL-HLS parts and GOPs (live-only copies) go
    storyboard_wait_s: float = 30.0
    clips_per_minute: int = 10
    clip_default_s: int = 30

    def __post_init__(self) -> None:
        for var, ok, rule in (
            ("GLASSCAST_VOD_RETENTION_DAYS", 1 <= self.retention_days <= MAX_RETENTION_DAYS,
             f"1 to {MAX_RETENTION_DAYS}"),
            ("GLASSCAST_VOD_SWEEP_INTERVAL_S", self.sweep_interval_s > 0, "positive"),
            ("GLASSCAST_VOD_COMPACT_AFTER_S", self.compact_after_s >= 0, "0 or more"),
            ("GLASSCAST_VOD_STORYBOARD_WAIT_S", self.storyboard_wait_s >= 0, "0 or more"),
            ("GLASSCAST_VOD_CLIPS_PER_MINUTE", 1 <= self.clips_per_minute <= 1000, "1 to 1000"),
            ("GLASSCAST_VOD_CLIP_DEFAULT_S", MIN_CLIP_S <= self.clip_default_s <= MAX_CLIP_S,
             f"{MIN_CLIP_S} to {MAX_CLIP_S}"),
        ):
            if not ok:
                raise SettingsError(f"{var}: value out of range (must be {rule})")


MAX_RETENTION_DAYS = 3650
MIN_CLIP_S, MAX_CLIP_S = 5, 60


@dataclass(frozen=True)
class SubscriptionSettings:
    # Paid subscriptions (gateways/subscriptions.py, processors/subscriptions/).  A paid period lasts period_s
    # (30 days; short in tests and demos).  The expiry timer looks every expiry_check_s for periods that ran out
    # and, on the one worker holding its lease, ends them; a subscription the provider renews on its own (a
    # Stripe subscription not cancelled) is given renewal_grace_s more for the renewal's payment to arrive.
    # Prices are GLASSCAST_PAYMENTS_SUBSCRIPTION_PRICES.  gift_viewer_window_s: how recently a signed-in viewer
    # must have watched or chatted to be picked for a random gift; gift_count_max: gifts in one order.
    period_s: float = 30 * 86400.0
    expiry_check_s: float = 5.0
    renewal_grace_s: float = 3600.0
    gift_viewer_window_s: float = 600.0
    gift_count_max: int = 100

    def __post_init__(self) -> None:
        for var, ok, rule in (
            ("GLASSCAST_SUBSCRIPTIONS_PERIOD_S", self.period_s >= 1, "at least 1"),
            ("GLASSCAST_SUBSCRIPTIONS_EXPIRY_CHECK_S", 0 < self.expiry_check_s <= 3600, "in (0, 3600]"),
            ("GLASSCAST_SUBSCRIPTIONS_RENEWAL_GRACE_S", self.renewal_grace_s >= 0, "0 or more"),
            ("GLASSCAST_SUBSCRIPTIONS_GIFT_VIEWER_WINDOW_S", self.gift_viewer_window_s > 0, "positive"),
            ("GLASSCAST_SUBSCRIPTIONS_GIFT_COUNT_MAX", 1 <= self.gift_count_max <= 1000, "1 to 1000"),
        ):
            if not ok:
                raise SettingsError(f"{var}: value out of range (must be {rule})")


@dataclass(frozen=True)
class BlobSettings:
    # Where GOPs, segments, parts, thumbnails and avatars are stored (media/blob_stores.py).
    # file: under the data directory (<data_dir>/blobs, <data_dir>/origin); s3: one bucket, each area a
    # key prefix (<prefix>blobs/, <prefix>origin/), on S3 or an S3-compatible server (endpoint_url: MinIO).
    # Credentials come from boto3's standard chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE).
    backend: Literal["file", "s3"] = "file"
    bucket: str = ""
    prefix: str = ""  # "" or a folder such as "glasscast/" (ends with "/")
    endpoint_url: str = ""  # "" means AWS itself
    region: str = ""  # "" means boto3's default (AWS_DEFAULT_REGION, the profile's)

    def __post_init__(self) -> None:
        if self.backend == "s3" and not self.bucket:
            raise SettingsError("GLASSCAST_BLOB_BUCKET: required with GLASSCAST_BLOB_BACKEND=s3")
        if self.prefix and (not self.prefix.endswith("/") or self.prefix.startswith("/") or "//" in self.prefix):
            raise SettingsError(f"GLASSCAST_BLOB_PREFIX={self.prefix!r}: expected '' or a folder ending with '/'")


@dataclass(frozen=True)
class PaymentSettings:
    # Payments (gateways/payments/): "sandbox" completes every checkout at once and says so; "stripe" uses
    # Checkout Sessions and webhooks.  Packs and prices are "<bits or tier>:<amount in minor units>";
    # stripe_prices optionally names a Stripe price id per item ("bits_100=price_...", "tier_1000=price_..."),
    # else the session carries the amount.  stripe_api_base points the SDK elsewhere (a stand-in in tests).
    provider: Literal["sandbox", "stripe"] = "sandbox"
    currency: str = "USD"
    bit_packs: tuple[str, ...] = ("100:140", "500:700", "1000:1000", "1500:1995", "5000:6440", "10000:12600",
                                  "25000:30800")
    subscription_prices: tuple[str, ...] = ("1000:499", "2000:999", "3000:2499")
    donation_min_minor: int = 100
    donation_max_minor: int = 1_000_000
    max_cheer_bits: int = 100_000  # bits one chat message may cheer
    hold_ttl_s: int = 30  # how long a cheer's hold outlives a gateway that died before logging it
    stripe_secret_key: Secret = Secret("")
    stripe_webhook_secret: Secret = Secret("")
    stripe_prices: tuple[str, ...] = ()
    stripe_api_base: str = "https://api.stripe.com"
    stripe_webhook_tolerance_s: int = 300  # how old a signed webhook may be (Stripe's own default)

    def __post_init__(self) -> None:
        if len(self.currency) != 3 or not self.currency.isalpha():
            raise SettingsError(f"GLASSCAST_PAYMENTS_CURRENCY={self.currency!r}: expected an ISO 4217 code")
        for var, items in (("GLASSCAST_PAYMENTS_BIT_PACKS", self.bit_packs),
                           ("GLASSCAST_PAYMENTS_SUBSCRIPTION_PRICES", self.subscription_prices)):
            for item in items:
                name, _, amount = item.partition(":")
                if not (name.isdigit() and amount.isdigit() and int(name) > 0 and int(amount) > 0):
                    raise SettingsError(f"{var}: {item!r} is not '<count or tier>:<amount in minor units>'")
        if not 1 <= self.donation_min_minor <= self.donation_max_minor:
            raise SettingsError("GLASSCAST_PAYMENTS_DONATION_MIN_MINOR: must be 1 to DONATION_MAX_MINOR")
        if self.hold_ttl_s < 10 or self.max_cheer_bits < 1:
            raise SettingsError("GLASSCAST_PAYMENTS_HOLD_TTL_S (>= 10) or MAX_CHEER_BITS (>= 1) out of range")


@dataclass(frozen=True)
class AnalyticsSettings:
    # Analytics (views/analytics/, processors/analytics/; docs/ARCHITECTURE.md "Analytics").  backend chdb: the
    # embedded ClickHouse engine, owned by one process (chDB locks its data directory, <data_dir>/analytics), the
    # analytics process `glasscast up` runs; every other process reaches it at url
    # (http://glasscast:PASSWORD@127.0.0.1:PORT, filled in by `glasscast up`; empty: open chDB in this process).
    # backend clickhouse: a ClickHouse server at url (http://USER:PASSWORD@HOST:8123), through clickhouse-connect.
    # The sink (consumer group group_id) loads a batch when it has batch_max_rows rows or batch_max_ms passed.
    # Raw heartbeats and chat rows are kept retention_days (a TTL); the per-minute aggregates stay.
    # Each signed-in user may ask for reports_per_minute analytics reports a minute, every gateway together.
    backend: Literal["chdb", "clickhouse"] = "chdb"
    url: str = ""
    database: str = "glasscast"
    port: int = 0  # the embedded analytics process's HTTP port on 127.0.0.1; 0 picks a free one
    group_id: str = "glasscast-analytics"
    batch_max_rows: int = 50_000
    batch_max_ms: int = 500
    retention_days: int = 30
    query_timeout_s: float = 30.0
    reports_per_minute: int = 120

    def __post_init__(self) -> None:
        for var, ok, rule in (
            ("GLASSCAST_ANALYTICS_REPORTS_PER_MINUTE", 1 <= self.reports_per_minute <= 1_000_000, "1 to 1000000"),
            ("GLASSCAST_ANALYTICS_BATCH_MAX_ROWS", 1 <= self.batch_max_rows <= 10_000_000, "1 to 10000000"),
            ("GLASSCAST_ANALYTICS_BATCH_MAX_MS", 1 <= self.batch_max_ms <= 60_000, "1 to 60000"),
            ("GLASSCAST_ANALYTICS_RETENTION_DAYS", 1 <= self.retention_days <= MAX_RETENTION_DAYS,
             f"1 to {MAX_RETENTION_DAYS}"),
            ("GLASSCAST_ANALYTICS_QUERY_TIMEOUT_S", 0 < self.query_timeout_s <= 3600, "in (0, 3600]"),
            ("GLASSCAST_ANALYTICS_PORT", 0 <= self.port < 65536, "0 to 65535"),
            ("GLASSCAST_ANALYTICS_DATABASE", self.database.isidentifier(), "a plain name"),
        ):
            if not ok:
                raise SettingsError(f"{var}: value out of range (must be {rule})")
        if self.backend == "clickhouse" and not self.url:
            raise SettingsError("GLASSCAST_ANALYTICS_URL: required with GLASSCAST_ANALYTICS_BACKEND=clickhouse")


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    log: LogSettings = field(default_factory=LogSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    valkey: ValkeySettings = field(default_factory=ValkeySettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    processors: ProcessorSettings = field(default_factory=ProcessorSettings)
    ladder: LadderSettings = field(default_factory=LadderSettings)
    transcode: TranscodeSettings = field(default_factory=TranscodeSettings)
    archive: ArchiveSettings = field(default_factory=ArchiveSettings)
    supervisor: SupervisorSettings = field(default_factory=SupervisorSettings)
    viewers: ViewerSettings = field(default_factory=ViewerSettings)
    chat: ChatSettings = field(default_factory=ChatSettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    eventsub: EventSubSettings = field(default_factory=EventSubSettings)
    blob: BlobSettings = field(default_factory=BlobSettings)
    vod: VodSettings = field(default_factory=VodSettings)
    subscriptions: SubscriptionSettings = field(default_factory=SubscriptionSettings)
    payments: PaymentSettings = field(default_factory=PaymentSettings)
    analytics: AnalyticsSettings = field(default_factory=AnalyticsSettings)

    @property
    def rtmp_url(self) -> str:
        """The URL creators put into OBS (Settings > Stream > Server)."""
        if self.ingest.public_rtmp_url:
            return self.ingest.public_rtmp_url
        host = "localhost" if self.ingest.host in ("0.0.0.0", "127.0.0.1", "") else self.ingest.host
        return f"rtmp://{host}:{self.ingest.rtmp_port}/live"

    @property
    def gateway_url(self) -> str:
        """The base URL of the edge gateway."""
        if self.gateway.public_url:
            return self.gateway.public_url.rstrip("/")
        host = "localhost" if self.gateway.host in ("0.0.0.0", "127.0.0.1", "") else self.gateway.host
        return f"http://{host}:{self.gateway.port}"

    def with_section(self, name: str, **changes: Any) -> Settings:
        """A copy with some fields of one section changed."""
        return replace(self, **{name: replace(getattr(self, name), **changes)})


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in fields(Settings) if dataclasses.is_dataclass(hints[f.name])}


def env_names() -> dict[str, tuple[str, str | None]]:
    """Every environment variable Settings reads -> (field, section or None)."""
    names: dict[str, tuple[str, str | None]] = {}
    sections = _sections()
    for f in fields(Settings):
        if f.name in sections:
            for sub in fields(sections[f.name]):
                names[f"{ENV_PREFIX}{f.name}_{sub.name}".upper()] = (sub.name, f.name)
        else:
            names[f"{ENV_PREFIX}{f.name}".upper()] = (f.name, None)
    return names


def _coerce(var: str, raw: str, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if hint is str:
        return raw
    if hint is Secret:
        return Secret(raw)
    if hint is Path:
        return Path(raw)
    if hint is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError(f"{var}={raw!r}: expected a boolean (true/false)")
    if hint in (int, float):
        try:
            return hint(raw)
        except ValueError:
            raise SettingsError(f"{var}={raw!r}: expected {hint.__name__}") from None
    if origin is Literal:
        allowed = typing.get_args(hint)
        if raw not in allowed:
            raise SettingsError(f"{var}={raw!r}: expected one of {', '.join(allowed)}")
        return raw
    if origin is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if origin in (typing.Union, types.UnionType):
        return _coerce(var, raw, next(a for a in typing.get_args(hint) if a is not type(None)))
    raise SettingsError(f"{var}: unsupported setting type {hint!r}")


def _validate(settings: Settings) -> None:
    for var, ok in (
        ("GLASSCAST_GATEWAY_PORT", 0 <= settings.gateway.port < 65536),
        ("GLASSCAST_INGEST_RTMP_PORT", 0 <= settings.ingest.rtmp_port < 65536),
        ("GLASSCAST_KAFKA_BROKER_PORT", 0 <= settings.kafka.broker_port < 65536),
        ("GLASSCAST_VALKEY_PORT", 0 <= settings.valkey.port < 65536),
        ("GLASSCAST_REGISTRY_PORT", 0 <= settings.registry.port < 65536),
        ("GLASSCAST_KAFKA_DEFAULT_PARTITIONS", settings.kafka.default_partitions >= 1),
        ("GLASSCAST_AUTH_JWT_TTL_S", settings.auth.jwt_ttl_s > 0),
        ("GLASSCAST_KAFKA_FETCH_WAIT_MAX_MS", settings.kafka.fetch_wait_max_ms >= 1),
        ("GLASSCAST_KAFKA_BACKGROUND_FETCH_WAIT_MAX_MS", 1 <= settings.kafka.background_fetch_wait_max_ms <= 2000),
        ("GLASSCAST_KAFKA_IDLE_CHECK_MS", 10 <= settings.kafka.idle_check_ms <= 60_000),
        ("GLASSCAST_INGEST_MAX_CONNECTIONS", settings.ingest.max_connections >= 1),
        ("GLASSCAST_INGEST_CHUNK_SIZE", 128 <= settings.ingest.chunk_size <= 65536),
        ("GLASSCAST_INGEST_GOP_QUEUE_MAXSIZE", settings.ingest.gop_queue_maxsize >= 1),
        ("GLASSCAST_INGEST_RECONNECT_GRACE_S", settings.ingest.reconnect_grace_s >= 0),
        ("GLASSCAST_INGEST_LEASE_S", settings.ingest.lease_s > 0),
    ):
        if not ok:
            raise SettingsError(f"{var}: value out of range")
    if settings.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise SettingsError(f"GLASSCAST_LOG_LEVEL={settings.log.level!r}: expected DEBUG, INFO, WARNING or ERROR")


def load_settings(environ: Mapping[str, str], **overrides: Any) -> Settings:
    """Build Settings from an environment mapping; unknown GLASSCAST_ names are errors."""
    known = env_names()
    unknown = sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in known)
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]} (known: see `glasscast settings`)")
    top_hints = typing.get_type_hints(Settings)
    sections = _sections()
    top: dict[str, Any] = {}
    per_section: dict[str, dict[str, Any]] = {name: {} for name in sections}
    for var, (name, section) in known.items():
        if var not in environ:
            continue
        if section is None:
            top[name] = _coerce(var, environ[var], top_hints[name])
        else:
            hint = typing.get_type_hints(sections[section])[name]
            per_section[section][name] = _coerce(var, environ[var], hint)
    settings = Settings(
        **top, **{name: sections[name](**values) for name, values in per_section.items()}
    )
    settings = replace(settings, **overrides) if overrides else settings
    _validate(settings)
    return with_doorbell(settings)


def with_doorbell(settings: Settings) -> Settings:
    """``settings`` with the doorbell's pub/sub URL filled in from the Valkey URL, when it is on and unset."""
    kafka = settings.kafka
    if not kafka.doorbell or kafka.doorbell_url or not settings.valkey.url:
        return settings
    return settings.with_section("kafka", doorbell_url=settings.valkey.url)


def child_env(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without its GLASSCAST_ variables, plus those reproducing ``settings``."""
    return {k: v for k, v in environ.items() if not k.startswith(ENV_PREFIX)} | to_env(settings)


def to_env(settings: Settings) -> dict[str, str]:
    """The environment that reproduces these settings in a child process."""
    env: dict[str, str] = {}
    for var, (name, section) in env_names().items():
        value = getattr(settings, name) if section is None else getattr(getattr(settings, section), name)
        if isinstance(value, tuple):
            env[var] = ",".join(value)
        elif isinstance(value, bool):
            env[var] = "true" if value else "false"
        else:
            env[var] = str(value)
    return env

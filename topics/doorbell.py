"""The doorbell: idle consumers fetch nothing, and a producer's ring wakes them at once.

The embedded broker does not wake a waiting fetch when data arrives; it
re-checks on a timer (docs/ARCHITECTURE.md, "Embedded platform").  A
latency-critical consumer therefore fetches with a short wait, which costs the
broker CPU on every fetch even when nothing happens.  The doorbell removes
that cost while the platform is idle:

* **Producers ring.**  ``EventProducer`` hands every topic it delivered a
  record to (after the broker's acknowledgement, so the record is there) to a
  ``Ringer``, whose thread PUBLISHes ``<client id>:doorbell:<topic>`` on the
  pub/sub server (Valkey).  Rings are coalesced per topic, at most one per
  ``RING_EVERY_S``: a record delivered meanwhile is covered by the next ring.
* **Consumers sleep.**  A latency-critical consumer listens on the channels
  of its topics.  ``IdleGate`` (pure: the time is passed in) decides when: it
  keeps the consumer's partitions resumed for ``LINGER_S`` after its last
  record, ring or (re)assignment, then pauses them (no fetch at all).  A ring
  resumes them at once.  A ring that arrives while they are resumed extends
  the linger, so a record acknowledged just before the pause is still fetched.
* **Bounded when a ring is lost.**  Every ``kafka.idle_check_ms`` a paused
  consumer resumes for one fetch (until every partition reports its end) and
  pauses again if nothing came: a producer that could not ring delays its
  records by at most that.  While the consumer's own doorbell connection is
  down it never pauses (it fetches as it did without a doorbell), and after it
  is back it stays resumed for a linger, for what was rung meanwhile.

Pausing only stops fetches: positions, commits and order are untouched, and
the records are fetched when the partitions resume.  ``topics/consumer.py``
drives the gate for ``EventConsumer`` (confluent-kafka, the consumer's own
thread: this confluent-kafka serialises every call on a consumer with its
``poll``, so nothing else may touch it), ``processors/transport.py`` for the
Faust consumer (aiokafka).  With ``kafka.doorbell`` off or no
``kafka.doorbell_url`` there is no doorbell and consumers fetch all the time.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from infra.settings import KafkaSettings

log = logging.getLogger("glasscast.topics.doorbell")

RING_EVERY_S = 0.02  # at most one ring per topic this often per producer; later deliveries wait for the next
LINGER_S = 2.0  # a woken consumer keeps fetching this long after its last record or ring
PROBE_MAX_S = 0.5  # an idle check that sees no end of partition resumes for at most this long
RETRY_S = 1.0  # a doorbell connection that failed is tried again after this
SOCKET_TIMEOUT_S = 0.5  # one pub/sub command; a Valkey that stops answering costs a ring, never a hang


def enabled(kafka: KafkaSettings) -> bool:
    """Whether producers ring and consumers sleep for these settings."""
    return kafka.doorbell and bool(kafka.doorbell_url)


def channel(kafka: KafkaSettings, topic: str) -> str:
    """The pub/sub channel that rings for ``topic``."""
    return f"{kafka.client_id}:doorbell:{topic}"


def _client(url: str) -> redis.Redis:
    # No retries inside redis-py: a failure is handled here (a lost ring, or a consumer that stays awake).
    return redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S,
                                retry=Retry(NoBackoff(), 0), health_check_interval=0)


class Ringer:
    """The producer side: a thread that rings each delivered-to topic, coalesced (see the module docstring)."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self._client = _client(kafka.doorbell_url)
        self._pending: set[str] = set()
        self._cond = threading.Condition()
        self._closing = False
        self._healthy = True
        self._retry_at = 0.0
        self.rings = 0  # PUBLISHes sent (tests, metrics)
        self._thread = threading.Thread(target=self._run, name="doorbell-ringer", daemon=True)
        self._thread.start()

    def ring(self, topic: str) -> None:
        """Ring ``topic`` soon (any thread; never blocks on the network)."""
        if topic in self._pending:
            return  # already due: the coming ring covers this delivery too
        with self._cond:
            self._pending.add(topic)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                topics, self._pending = self._pending, set()
            self._publish(topics)
            time.sleep(RING_EVERY_S)

    def _publish(self, topics: set[str]) -> None:
        if time.monotonic() < self._retry_at:
            return  # the server is away: consumers find records at their next idle check
        try:
            pipe = self._client.pipeline(transaction=False)
            for topic in topics:
                pipe.publish(channel(self.kafka, topic), b"")
            pipe.execute()
            self.rings += len(topics)
            if not self._healthy:
                log.info("doorbell: ringing again")
                self._healthy = True
        except (redis.RedisError, OSError) as exc:
            if self._healthy:
                log.warning("doorbell: cannot ring (%s); consumers fall back to their idle check", exc)
            self._healthy = False
            self._retry_at = time.monotonic() + RETRY_S

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout=2)
        self._client.close()


@dataclass
class IdleGate:
    """When a consumer's partitions may stay paused: pure, the time is passed in."""

    linger_s: float
    check_every_s: float
    paused: bool = False
    probing: bool = False  # resumed by an idle check, not by something that happened
    awake_until: float = 0.0
    next_check: float = 0.0

    def wake(self, now: float) -> None:
        """A record, a ring, an assignment or a doorbell (re)connection: stay resumed for a linger."""
        self.probing = False
        self.awake_until = max(self.awake_until, now + self.linger_s)

    def should_pause(self, now: float) -> bool:
        return not self.paused and now >= self.awake_until

    def paused_at(self, now: float) -> None:
        self.paused, self.probing = True, False
        self.next_check = now + self.check_every_s

    def resumed(self, now: float, probe: bool) -> None:
        """Resumed: by an idle check (``probe``: until every partition reports its end) or by a wake."""
        self.paused = False
        if probe:
            self.probing = True
            self.awake_until = now + PROBE_MAX_S
        else:
            self.wake(now)

    def probe_done(self, now: float) -> None:
        """Every partition reported its end during an idle check and nothing came: pause again."""
        if self.probing:
            self.probing = False
            self.awake_until = min(self.awake_until, now)

    def check_due(self, now: float) -> bool:
        return self.paused and now >= self.next_check


def new_gate(kafka: KafkaSettings, now: float) -> IdleGate:
    """A gate that starts resumed (a new consumer catches up first)."""
    gate = IdleGate(LINGER_S, kafka.idle_check_ms / 1000)
    gate.wake(now)
    return gate


class Doorbell:
    """The consumer side for a blocking consumer: a subscription read by the consumer's own thread.

    ``topics`` None listens to every topic's doorbell (a pattern); ``rung`` collects the topics rung.
    """

    def __init__(self, kafka: KafkaSettings, topics: Iterable[str] | None, now: float | None = None) -> None:
        self.pattern = channel(kafka, "*") if topics is None else None
        self.channels = [] if topics is None else sorted({channel(kafka, t) for t in topics})
        self._prefix_len = len(channel(kafka, ""))
        self.rung: set[str] = set()
        self.gate = new_gate(kafka, time.monotonic() if now is None else now)
        self._client = _client(kafka.doorbell_url)
        self._pubsub: redis.client.PubSub | None = None
        self._retry_at = 0.0
        self._warned = False

    @property
    def healthy(self) -> bool:
        return self._pubsub is not None

    def _connect(self) -> bool:
        now = time.monotonic()
        if now < self._retry_at:
            return False
        # Annotated, not called directly: redis types pubsub() in some releases and not in others.
        make: Callable[[], redis.client.PubSub] = self._client.pubsub
        pubsub = make()
        try:
            if self.pattern is not None:
                pubsub.psubscribe(self.pattern)
            else:
                pubsub.subscribe(*self.channels)
            confirmed = 0
            deadline = now + SOCKET_TIMEOUT_S
            while confirmed < max(1, len(self.channels)):  # subscribed only once the server says so
                left = deadline - time.monotonic()
                if left <= 0:
                    raise redis.TimeoutError("no subscribe confirmation")
                msg = pubsub.get_message(timeout=left)
                if msg is not None and msg.get("type") in ("subscribe", "psubscribe"):
                    confirmed += 1
        except (redis.RedisError, OSError) as exc:
            pubsub.close()
            self._retry_at = now + RETRY_S
            if not self._warned:
                log.warning("doorbell: not listening (%s); fetching without pauses until it answers", exc)
                self._warned = True
            return False
        if self._warned:
            log.info("doorbell: listening again")
            self._warned = False
        self._pubsub = pubsub
        # What was rung before the subscription (or while it was down) was missed: fetch for a linger.
        self.gate.wake(time.monotonic())
        return True

    def _drop(self, exc: BaseException) -> None:
        if self._pubsub is not None:
            self._pubsub.close()
        self._pubsub = None
        self._retry_at = time.monotonic() + RETRY_S
        log.warning("doorbell: connection lost (%s); fetching without pauses until it is back", exc)
        self._warned = True

    def wait(self, timeout_s: float) -> bool | None:
        """Block up to ``timeout_s`` for a ring: True (rung), False (nothing) or None (the doorbell is down)."""
        if self._pubsub is None and not self._connect():
            return None
        assert self._pubsub is not None
        rung = False
        try:
            sock = getattr(self._pubsub.connection, "_sock", None)
            if sock is not None and timeout_s > 0:  # the cheap wait: every ring was read, so the socket tells
                readable, _, _ = select.select([sock], [], [], timeout_s)
                if not readable:
                    return False
            msg = self._pubsub.get_message(timeout=max(0.0, timeout_s))
            while msg is not None:  # take every ring that is there: one wake covers them all
                if msg.get("type") in ("message", "pmessage"):
                    rung = True
                    name = msg.get("channel")
                    name = name.decode() if isinstance(name, bytes) else str(name)
                    self.rung.add(name[self._prefix_len:])
                msg = self._pubsub.get_message(timeout=0)
        except (redis.RedisError, OSError, ValueError) as exc:
            self._drop(exc)
            return None
        return rung

    def quiet(self, now: float) -> bool:
        """Whether the consumer may pause now: listening, and no ring waiting (a waiting ring wakes it)."""
        rung = self.wait(0)
        if rung:
            self.gate.wake(now)
        return rung is False

    def close(self) -> None:
        if self._pubsub is not None:
            self._pubsub.close()
        self._client.close()


async def _aclose(pubsub: aioredis.client.PubSub) -> None:
    # Annotated, not called directly: redis types aclose() in some releases and not in others.
    close: Callable[[], Awaitable[None]] = pubsub.aclose
    await close()


class AsyncDoorbell:
    """The consumer side for an asyncio consumer (aiokafka): the same subscription on redis.asyncio."""

    def __init__(self, kafka: KafkaSettings, topics: Iterable[str]) -> None:
        self.kafka = kafka
        self.channels = sorted({channel(kafka, t) for t in topics})
        self._client = aioredis.Redis.from_url(
            kafka.doorbell_url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S,
            retry=AsyncRetry(NoBackoff(), 0), health_check_interval=0)
        self._pubsub: aioredis.client.PubSub | None = None
        self._warned = False

    @property
    def healthy(self) -> bool:
        return self._pubsub is not None

    async def connect(self, topics: Iterable[str] | None = None) -> bool:
        """Subscribe (to ``topics`` when given); False when the server does not answer."""
        if topics is not None:
            self.channels = sorted({channel(self.kafka, t) for t in topics})
        await self.drop()
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(*self.channels)
            confirmed = 0
            deadline = time.monotonic() + SOCKET_TIMEOUT_S
            while confirmed < len(self.channels):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise redis.TimeoutError("no subscribe confirmation")
                msg = await pubsub.get_message(timeout=left)
                if msg is not None and msg.get("type") == "subscribe":
                    confirmed += 1
        except (redis.RedisError, OSError) as exc:
            await _aclose(pubsub)
            if not self._warned:
                log.warning("doorbell: not listening (%s); fetching without pauses until it answers", exc)
                self._warned = True
            return False
        if self._warned:
            log.info("doorbell: listening again")
            self._warned = False
        self._pubsub = pubsub
        return True

    async def drop(self) -> None:
        if self._pubsub is not None:
            pubsub, self._pubsub = self._pubsub, None
            try:
                await _aclose(pubsub)
            except (redis.RedisError, OSError):
                pass

    async def wait(self, timeout_s: float) -> bool | None:
        """Wait up to ``timeout_s`` for a ring: True (rung), False (nothing) or None (the doorbell is down)."""
        if self._pubsub is None:
            return None
        rung = False
        try:
            msg = await self._pubsub.get_message(timeout=max(0.0, timeout_s))
            while msg is not None:
                rung = rung or msg.get("type") == "message"
                msg = await self._pubsub.get_message(timeout=0)
        except (redis.RedisError, OSError, ValueError) as exc:
            log.warning("doorbell: connection lost (%s); fetching without pauses until it is back", exc)
            self._warned = True
            await self.drop()
            return None
        return rung

    async def close(self) -> None:
        await self.drop()
        await self._client.aclose()

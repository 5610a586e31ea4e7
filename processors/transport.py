"""A Faust Kafka transport whose consumer fetches with a short wait.

Faust's aiokafka driver hard-codes ``fetch_max_wait_ms=1500``; the embedded
broker only re-checks a waiting fetch on its timer (docs/ARCHITECTURE.md,
"Embedded platform"), so views would lag events by up to 1.5 s.  This transport applies the app's
``fetch_max_wait_ms`` (from ``settings.kafka.fetch_wait_max_ms``) before
aiokafka builds its fetcher.  Registered as the ``glasscast://`` broker scheme.
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka

SCHEME = "glasscast"
DEFAULT_FETCH_MAX_WAIT_MS = 10


class LowLatencyConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka hands this to its Fetcher in start(), which runs after this.
        consumer._fetch_max_wait_ms = getattr(self.app, "fetch_max_wait_ms", DEFAULT_FETCH_MAX_WAIT_MS)
        return consumer


class LowLatencyConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> LowLatencyConsumerThread:
        return LowLatencyConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = LowLatencyConsumer


def register() -> None:
    """Make ``glasscast://host:port`` a Faust broker URL (idempotent)."""
    TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"

"""The Faust app that materialises views from the log.

Agents are thin loops: decode, fold into the view in Valkey, maybe dead-letter
(STYLE.md, "Processors").  ``build_processors(settings)`` is the one entry
point; ``glasscast run processors`` runs the worker it returns.
"""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator

import faust
import redis.asyncio as aioredis

from infra.settings import Settings
from processors.codec import Decoded, Undecodable, register_codec
from processors.transport import SCHEME, register as register_transport
from processors.views.fold import Applied
from processors.views.store import VIEW_TOPICS, ViewStore
from topics.consumer import dead_letter_value
from topics.producer import EventProducer
from topics.serde import AvroSerde

log = logging.getLogger("glasscast.processors")

CODEC = "glasscast_avro"


class ProcessorsApp(faust.App):
    """The Faust app plus the resources its agents share."""

    fetch_max_wait_ms: int = 10
    views: ViewStore
    producer: EventProducer


def build_processors(settings: Settings, serde: AvroSerde) -> ProcessorsApp:
    """The Faust app with every view agent, configured from ``settings``."""
    register_transport()
    register_codec(CODEC, serde)
    session_s = settings.kafka.session_timeout_ms / 1000
    app = ProcessorsApp(
        settings.processors.app_id,
        broker=f"{SCHEME}://{settings.kafka.bootstrap_servers}",
        store="memory://",
        web_enabled=False,
        autodiscover=False,
        topic_allow_declare=False,  # topics/ creates the catalogue's topics
        topic_disable_leader=True,
        consumer_auto_offset_reset=settings.processors.auto_offset_reset,
        broker_session_timeout=session_s,
        broker_heartbeat_interval=max(0.5, session_s / 3),
        broker_request_timeout=max(30.0, session_s * 2),
        broker_rebalance_timeout=max(10.0, session_s * 2),
        broker_commit_every=100,
        broker_commit_interval=1.0,
        datadir=str(settings.data_dir / "processors"),
        logging_config=None,
        loghandlers=[],
    )
    app.fetch_max_wait_ms = settings.kafka.fetch_wait_max_ms
    app.views = ViewStore(aioredis.Redis.from_url(settings.valkey.url), settings.valkey.key_prefix)
    app.producer = EventProducer(settings.kafka, serde)
    view_topic = app.topic(*VIEW_TOPICS, key_serializer="raw", value_serializer=CODEC)

    @app.agent(view_topic)
    async def materialise_views(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        async for event in stream.events():
            msg = event.message
            value = event.value
            if isinstance(value, Undecodable):
                log.warning("undecodable record %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, value.error)
                app.producer.produce("glasscast.ops.DeadLetter", msg.topic, dead_letter_value(
                    msg.topic, msg.partition, msg.offset, int((msg.timestamp or 0) * 1000),
                    msg.key, value.raw, value.error, settings.processors.app_id))
                continue
            if isinstance(value, Decoded):
                await app.views.apply(Applied(value.record, msg.offset, value.value))
            yield None

    return app

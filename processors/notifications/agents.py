"""Registers the notification agents and the delivery loop on the processors app."""

from __future__ import annotations

import faust

from infra.settings import Settings
from processors.notifications.deliverer import Deliverer
from processors.notifications.index import NotifyIndex
from processors.notifications.planner import add_planning_agents
from topics.producer import EventProducer
from views.store import ViewStore


def add_notification_agents(app: faust.App, settings: Settings, views: ViewStore, dead_letters: EventProducer,
                            codec: str) -> None:
    """Add the planning agents and the deliverer (a task the worker owns) to ``app``."""
    index = NotifyIndex(views.r, settings.valkey.key_prefix)
    add_planning_agents(app, settings, views, index, dead_letters.serde, codec)
    deliverer = Deliverer(settings, dead_letters.serde, views, index)

    async def deliver_notifications() -> None:
        await deliverer.run()

    app.task(deliver_notifications)

"""The embedded backbone a benchmark runs on: a Tansu broker, a Valkey and the Schema Registry endpoint.

``embedded_backbone(tmp)`` starts them in ``tmp`` and yields Settings that
point at them (a bench key prefix, a JWT secret and a free gateway port
included), plus the Valkey process for benches that watch its CPU; it stops
everything on the way out.  ``started_backbone(tmp)`` yields the same as a
``Backbone``, the broker's process included.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from infra.embedded.process import free_port
from infra.embedded.tansu import TansuBroker
from infra.embedded.threaded import serve_app
from infra.embedded.valkey import ValkeyProcess
from infra.settings import Secret, Settings


@dataclass(frozen=True)
class Backbone:
    """The running backbone: Settings that point at it, and its processes (for benches that watch their CPU)."""

    settings: Settings
    valkey: ValkeyProcess
    broker: TansuBroker


@contextlib.contextmanager
def embedded_backbone(tmp: Path) -> Iterator[tuple[Settings, ValkeyProcess]]:
    with started_backbone(tmp) as backbone:
        yield backbone.settings, backbone.valkey


@contextlib.contextmanager
def started_backbone(tmp: Path) -> Iterator[Backbone]:
    from infra.embedded.registry.app import create_registry_app

    broker = TansuBroker(tmp / "broker.log")
    valkey = ValkeyProcess(tmp / "valkey", persist=False)
    broker.start()
    valkey.start()
    try:
        s = Settings(data_dir=tmp / "data").with_section("kafka", bootstrap_servers=broker.bootstrap_servers)
        s = s.with_section("valkey", url=valkey.url, key_prefix="bench:")
        s = s.with_section("auth", jwt_secret=Secret("bench-secret-" + "x" * 32))
        s = s.with_section("gateway", host="127.0.0.1", port=free_port())
        with serve_app(create_registry_app(s)) as url:
            yield Backbone(s.with_section("registry", url=url), valkey, broker)
    finally:
        valkey.stop()
        broker.stop()

"""The embedded backbone a benchmark runs on: a Tansu broker, a Valkey and the Schema Registry endpoint.

``embedded_backbone(tmp)`` starts them in ``tmp`` and yields Settings that
point at them (a bench key prefix, a JWT secret and a free gateway port
included), plus the Valkey process for benches that watch its CPU; it stops
everything on the way out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from infra.embedded.process import free_port
from infra.embedded.tansu import TansuBroker
from infra.embedded.threaded import serve_app
from infra.embedded.valkey import ValkeyProcess
from infra.settings import Secret, Settings


@contextlib.contextmanager
def embedded_backbone(tmp: Path) -> Iterator[tuple[Settings, ValkeyProcess]]:
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
            yield s.with_section("registry", url=url), valkey
    finally:
        valkey.stop()
        broker.stop()

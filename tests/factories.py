"""One way to build test settings: the session's broker, Valkey and registry, plus a fresh namespace.

Every fixture that runs a piece of the platform starts from ``platform_settings``:
it points Kafka, Valkey and the registry at the session services, gives the run
its own Valkey key prefix, JWT secret, processors app id (a fresh consumer
group) and gateway port, then applies the sections the test changes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.embedded.process import free_port
from infra.settings import Secret, Settings


@dataclass(frozen=True)
class Backbone:
    """Where the session's embedded services listen."""

    bootstrap_servers: str
    valkey_url: str
    registry_url: str


def platform_settings(backbone: Backbone, data_dir: Path, tag: str | None = None,
                      **sections: dict[str, Any]) -> Settings:
    """Settings for one test platform; ``sections`` are ``with_section`` changes applied last."""
    tag = tag or uuid.uuid4().hex[:8]
    s = Settings(data_dir=data_dir)
    s = s.with_section("kafka", bootstrap_servers=backbone.bootstrap_servers)
    s = s.with_section("valkey", url=backbone.valkey_url, key_prefix=f"t{tag}:")
    s = s.with_section("registry", url=backbone.registry_url)
    s = s.with_section("auth", jwt_secret=Secret(f"test-secret-{tag}-" + "x" * 32))
    s = s.with_section("gateway", host="127.0.0.1", port=free_port())
    s = s.with_section("processors", app_id=f"views-{tag}")
    for name, changes in sections.items():
        s = s.with_section(name, **changes)
    return s

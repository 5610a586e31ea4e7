"""Session services and per-test factories.

The same embedded broker (Tansu) and Valkey that ``glasscast up`` runs are
started once per session on free 127.0.0.1 ports.  A service that fails to
start fails the run; nothing here skips.
"""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from infra.embedded.tansu import TansuBroker
from infra.embedded.valkey import ValkeyProcess
from infra.settings import Settings


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def broker(services_dir: Path) -> Iterator[TansuBroker]:
    b = TansuBroker(services_dir / "broker.log")
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def valkey(services_dir: Path) -> Iterator[ValkeyProcess]:
    v = ValkeyProcess(services_dir / "valkey", persist=False)
    v.start()
    yield v
    v.stop()


_counter = itertools.count()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Unique names for topics, groups and key prefixes, so tests never share state."""

    def make(prefix: str) -> str:
        return f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def settings_factory(tmp_path: Path, broker: TansuBroker, valkey: ValkeyProcess,
                     registry: str) -> Callable[..., Settings]:
    """Settings pointing at the session services, with a fresh data dir and key prefix."""

    def make(**sections: dict[str, Any]) -> Settings:
        s = Settings(data_dir=tmp_path / "data")
        s = s.with_section("kafka", bootstrap_servers=broker.bootstrap_servers)
        s = s.with_section("registry", url=registry)
        s = s.with_section("valkey", url=valkey.url, key_prefix=f"t{uuid.uuid4().hex[:8]}:")
        for name, changes in sections.items():
            s = s.with_section(name, **changes)
        return s

    return make


@pytest.fixture(scope="session")
def registry(broker: TansuBroker, services_dir: Path) -> Iterator[str]:
    """The embedded Schema Registry app on a real socket, for the session."""
    from infra.embedded.registry.app import create_registry_app
    from tests.servers import serve_app

    s = Settings(data_dir=services_dir / "registry").with_section(
        "kafka", bootstrap_servers=broker.bootstrap_servers)
    with serve_app(create_registry_app(s)) as url:
        yield url


@pytest.fixture(scope="module")
def platform(broker: TansuBroker, valkey: ValkeyProcess, registry: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """Gateway (in-thread uvicorn) + processors (a real `glasscast run processors` child)."""
    from tests.servers import run_service, serve_app
    from gateways.app import create_app
    from infra.embedded.process import free_port
    from infra.settings import Secret

    tag = uuid.uuid4().hex[:8]
    data = tmp_path_factory.mktemp(f"platform-{tag}")
    port = free_port()
    s = Settings(data_dir=data)
    s = s.with_section("kafka", bootstrap_servers=broker.bootstrap_servers)
    s = s.with_section("valkey", url=valkey.url, key_prefix=f"p{tag}:")
    s = s.with_section("registry", url=registry)
    s = s.with_section("auth", jwt_secret=Secret(f"test-secret-{tag}-" + "x" * 32))
    s = s.with_section("gateway", port=port)
    s = s.with_section("processors", app_id=f"views-{tag}")
    with run_service(s, "processors", data / "processors.log") as proc:
        wait_processors_assigned(s, proc, data / "processors.log")
        with serve_app(create_app(s), port) as url:
            yield Platform(settings=s, url=url)


class Platform:
    def __init__(self, settings: Settings, url: str) -> None:
        self.settings = settings
        self.url = url


def wait_processors_assigned(settings: Settings, proc: Any, log: Path, timeout_s: float = 60) -> None:
    """Wait until a processors worker reports its partition assignment (it writes a Valkey key)."""
    import time

    import redis

    from views.readiness import ready_key

    client = redis.Redis.from_url(settings.valkey.url)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"processors exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if client.exists(ready_key(settings)):
                return
            time.sleep(0.1)
    finally:
        client.close()
    raise RuntimeError(f"processors not assigned after {timeout_s} s:\n{log.read_text()[-3000:]}")

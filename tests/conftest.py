"""Session services and per-test factories.

The same embedded broker (Tansu) and Valkey that ``glasscast up`` runs are
started once per session on free 127.0.0.1 ports.  A service that fails to
start fails the run; nothing here skips.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.embedded.tansu import TansuBroker
from infra.embedded.valkey import ValkeyProcess
from infra.settings import Settings
from tests.factories import Backbone, platform_settings
from tests.waiting import eventually


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


@pytest.fixture(scope="session")
def backbone(broker: TansuBroker, valkey: ValkeyProcess, registry: str) -> Backbone:
    """Where the session's broker, Valkey and registry listen (for ``platform_settings``)."""
    return Backbone(broker.bootstrap_servers, valkey.url, registry)


@pytest.fixture
def settings_factory(tmp_path: Path, backbone: Backbone) -> Callable[..., Settings]:
    """Settings pointing at the session services, with a fresh data dir and key prefix."""

    def make(**sections: dict[str, Any]) -> Settings:
        return platform_settings(backbone, tmp_path / "data", **sections)

    return make


@pytest.fixture(scope="session")
def registry(broker: TansuBroker, services_dir: Path) -> Iterator[str]:
    """The embedded Schema Registry app on a real socket, for the session; like the one ``glasscast up`` runs,
    it requires the password its URL carries (as the session's Valkey does: ``ValkeyProcess.url``)."""
    with _registry(broker, services_dir) as url:
        yield url


@contextlib.contextmanager
def _registry(broker: TansuBroker, services_dir: Path) -> Iterator[str]:
    from infra.embedded.credentials import REGISTRY_USER, embedded_secret, with_password
    from infra.embedded.process import free_port
    from infra.embedded.registry.app import create_registry_app
    from tests.servers import serve_app

    port = free_port()
    url = with_password(f"http://127.0.0.1:{port}", embedded_secret(services_dir, "registry"), REGISTRY_USER)
    s = Settings(data_dir=services_dir / "registry").with_section(
        "kafka", bootstrap_servers=broker.bootstrap_servers).with_section("registry", url=url)
    with serve_app(create_registry_app(s), port):
        yield url


@contextlib.contextmanager
def own_backbone(services_dir: Path, valkey: ValkeyProcess) -> Iterator[Backbone]:
    """A broker and registry of its own (the session's Valkey, under its own key prefixes), for a module whose
    platform must not read what other modules' platforms left on the session's topics."""
    services_dir.mkdir(parents=True, exist_ok=True)
    b = TansuBroker(services_dir / "broker.log")
    b.start()
    try:
        with _registry(b, services_dir) as url:
            yield Backbone(b.bootstrap_servers, valkey.url, url)
    finally:
        b.stop()


@pytest.fixture(scope="module")
def platform(backbone: Backbone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """Gateway (in-thread uvicorn) + processors (a real `glasscast run processors` child)."""
    from gateways.app import create_app
    from tests.servers import run_service, serve_app

    data = tmp_path_factory.mktemp("platform")
    s = platform_settings(backbone, data)
    with run_service(s, "processors", data / "processors.log") as proc:
        wait_processors_assigned(s, proc, data / "processors.log")
        with serve_app(create_app(s), s.gateway.port) as url:
            yield Platform(settings=s, url=url)


class Platform:
    def __init__(self, settings: Settings, url: str) -> None:
        self.settings = settings
        self.url = url


def wait_processors_assigned(settings: Settings, proc: Any, log: Path, timeout_s: float = 60) -> None:
    """Wait until a processors worker reports its partition assignment (it writes a Valkey key)."""
    import redis

    from views.readiness import ready_key

    client = redis.Redis.from_url(settings.valkey.url)

    def assigned() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"processors exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        return bool(client.exists(ready_key(settings)))

    try:
        eventually(assigned, timeout_s, f"the processors' partition assignment (log: {log})")
    finally:
        client.close()

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
def settings_factory(tmp_path: Path, broker: TansuBroker, valkey: ValkeyProcess) -> Callable[..., Settings]:
    """Settings pointing at the session services, with a fresh data dir and view prefix."""

    def make(**sections: dict[str, Any]) -> Settings:
        s = Settings(data_dir=tmp_path / "data")
        s = s.with_section("kafka", bootstrap_servers=broker.bootstrap_servers)
        s = s.with_section("valkey", url=valkey.url, view_prefix=f"t{uuid.uuid4().hex[:8]}:")
        for name, changes in sections.items():
            s = s.with_section(name, **changes)
        return s

    return make

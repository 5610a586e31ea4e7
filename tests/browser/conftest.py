"""The browser suite's platform: `glasscast up` as a child process with the full ladder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.launcher import GlasscastUp


@pytest.fixture(scope="session")
def live_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GlasscastUp]:
    """The whole platform (`glasscast up`), every stream transcoded to the full ladder whatever its audience;
    started once for the browser suite (each test uses its own users and channels)."""
    data = tmp_path_factory.mktemp("browser-platform") / "data"
    with GlasscastUp(data, {"GLASSCAST_LADDER_MODE": "full"}) as up:
        yield up

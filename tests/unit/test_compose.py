"""infra/docker-compose.yml cannot run here (no Docker engine): check that it parses, has every
service a real deployment needs, and sets only GLASSCAST_ variables that are real settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from infra.cli import SERVICES, _parser
from infra.settings import env_names

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "docker-compose.yml"


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def test_compose_parses_and_has_every_service() -> None:
    services = _compose()["services"]
    for needed in ("kafka", "schema-registry", "redis", "cassandra", "object-store", "edge",
                   "gateway", "processors", "media-worker", "ingest", "clickhouse", "analytics"):
        assert needed in services, needed
    assert "KAFKA_PROCESS_ROLES" in services["kafka"]["environment"]  # KRaft, no ZooKeeper
    for name in ("gateway", "processors", "media-worker", "ingest", "analytics"):
        svc = services[name]
        assert svc["build"]["dockerfile"] == "Dockerfile" and svc["image"] == "glasscast:latest"
        args = _parser().parse_args(svc["command"])
        assert args.command == "run" and args.service in SERVICES
    assert (ROOT / "Dockerfile").exists()
    edge = services["edge"]["volumes"][0].split(":")[0]
    assert (COMPOSE.parent / edge).exists()


def test_every_glasscast_variable_is_a_real_setting() -> None:
    known = env_names()
    seen = set()
    for name, svc in _compose()["services"].items():
        for var in (svc.get("environment") or {}):
            if var.startswith("GLASSCAST_"):
                assert var in known, f"{name} sets {var}, which is not a setting"
                seen.add(var)
    assert {"GLASSCAST_KAFKA_BOOTSTRAP_SERVERS", "GLASSCAST_REGISTRY_URL", "GLASSCAST_VALKEY_URL"} <= seen


def test_the_image_carries_every_package_and_the_web_assets() -> None:
    """The Dockerfile copies every package pyproject installs, and the web app's npm packages."""
    import re
    import tomllib

    dockerfile = (ROOT / "Dockerfile").read_text()
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = set(re.findall(r"^COPY (\w+) \1$", dockerfile, re.MULTILINE))
    assert {p.rstrip("*") for p in include} <= copied
    assert "COPY --from=web /web/node_modules gateways/web/node_modules" in dockerfile
    assert "pip install --no-cache-dir -e ." in dockerfile

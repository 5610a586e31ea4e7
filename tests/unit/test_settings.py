from __future__ import annotations

from pathlib import Path

import pytest

from infra.errors import SettingsError
from infra.settings import Secret, Settings, env_names, load_settings, to_env


def test_defaults_and_overrides() -> None:
    s = load_settings({"GLASSCAST_GATEWAY_PORT": "9000", "GLASSCAST_DATA_DIR": "/tmp/gc",
                       "GLASSCAST_ARCHIVE_FSYNC": "false", "GLASSCAST_GATEWAY_CORS_ORIGINS": "http://a, http://b",
                       "GLASSCAST_AUTH_JWT_SECRET": "s3cret", "PATH": "/bin"})
    assert s.gateway.port == 9000 and s.data_dir == Path("/tmp/gc") and s.archive.fsync is False
    assert s.gateway.cors_origins == ("http://a", "http://b")
    assert str(s.auth.jwt_secret) == "s3cret" and "s3cret" not in repr(s)
    assert s.kafka.fetch_wait_max_ms == 10 and s.gateway_url == "http://localhost:9000"


def test_round_trip_through_env() -> None:
    s = Settings().with_section("auth", jwt_secret=Secret("x")).with_section("gateway", port=1234)
    assert load_settings(to_env(s)) == s


@pytest.mark.parametrize("env, needle", [
    ({"GLASSCAST_GATEWAY_PORT": "eighty"}, "GLASSCAST_GATEWAY_PORT='eighty': expected int"),
    ({"GLASSCAST_GATEWAY_PORT": "70000"}, "GLASSCAST_GATEWAY_PORT: value out of range"),
    ({"GLASSCAST_ARCHIVE_FSYNC": "maybe"}, "GLASSCAST_ARCHIVE_FSYNC='maybe': expected a boolean"),
    ({"GLASSCAST_LOG_FORMAT": "xml"}, "expected one of json, console"),
    ({"GLASSCAST_GATEWAY_PROT": "1"}, "unknown setting GLASSCAST_GATEWAY_PROT"),
])
def test_bad_values_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    assert needle in str(info.value)


def test_every_field_has_a_variable() -> None:
    names = env_names()
    assert "GLASSCAST_DATA_DIR" in names and "GLASSCAST_KAFKA_BOOTSTRAP_SERVERS" in names
    assert names["GLASSCAST_VALKEY_URL"] == ("url", "valkey")


def test_x_forwarded_for_is_trusted_only_from_named_proxies() -> None:
    from gateways.http_deadlines import http_options
    from infra.settings import GatewaySettings

    # uvicorn would trust it from 127.0.0.1: a local client could name any address and dodge per-client limits.
    assert http_options(GatewaySettings())["proxy_headers"] is False
    behind = http_options(GatewaySettings(trusted_proxies=("10.0.0.0/8", "192.168.1.5")))
    assert behind["proxy_headers"] is True and behind["forwarded_allow_ips"] == "10.0.0.0/8,192.168.1.5"

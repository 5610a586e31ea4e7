"""`glasscast up` watches every process it starts: kill -9 Valkey, then the broker keeper, and each comes
back on its old address (a new pid in `glasscast status`, one restart, the gateway ready again, the data
written before the kill still there) without anything else being restarted; and neither SIGTERM nor
SIGKILL of `glasscast up` leaves a process of the platform behind (infra/proctree.py walks /proc)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.embedded.keeper import read_ready
from infra.launcher import GlasscastUp
from infra.proctree import kill_platform, platform_processes
from media.testpattern import ffmpeg_push
from tests.waiting import Timeout, eventually

pytestmark = pytest.mark.integration

DRAIN_TIMEOUT_S = 10  # the keeper's archive drain after its supervisor is gone, bounded
STOP_TIMEOUT_S = 5  # then a child still running after SIGTERM gets SIGKILL


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"
    kill_platform(tmp_path / "data")  # a failed test must not leave processes behind


def _platform(data_dir: Path) -> GlasscastUp:
    return GlasscastUp(data_dir, {"GLASSCAST_ARCHIVE_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S),
                                  "GLASSCAST_SUPERVISOR_STOP_TIMEOUT_S": str(STOP_TIMEOUT_S)})


def _create_channel(client: httpx.Client, name: str) -> tuple[str, str]:
    """A new user's new channel: its id and stream key."""
    r = client.post("/v1/users", json={"username": name, "password": "correct horse"})
    assert r.status_code == 201, r.text
    token = client.post("/v1/auth/login", json={"username": name, "password": "correct horse"}).json()
    r = client.post("/v1/channels", headers={"Authorization": f"Bearer {token['access_token']}"},
                    json={"name": name, "title": f"{name} live", "category": "Games"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"]), str(r.json()["stream_key"])


def _kill_and_wait_for_restart(up: GlasscastUp, name: str, victim: int = 0) -> dict[str, Any]:
    """kill -9 one supervised process (or ``victim``, which it depends on); its entry in `glasscast status`
    once a new incarnation runs."""
    before = up.status()["processes"]
    os.kill(victim or before[name]["pid"], signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        now = up.status()["processes"]
        entry: dict[str, Any] = now[name]
        return now if entry["alive"] and entry["pid"] != before[name]["pid"] else None

    after = eventually(restarted, 30, f"{name} to be restarted", every_s=0.2)
    others = {n: (p["pid"], p["restarts"]) for n, p in after.items() if n != name}
    assert others == {n: (p["pid"], p["restarts"]) for n, p in before.items() if n != name}, \
        f"restarted on account of {name}"
    entry: dict[str, Any] = after[name]
    return entry


def _nothing_left(data_dir: Path, timeout_s: float, what: str) -> None:
    try:
        eventually(lambda: not platform_processes(data_dir), timeout_s, what, every_s=0.2)
    except Timeout as exc:
        left = [(p.pid, p.ppid, p.command[:120]) for p in platform_processes(data_dir)]
        raise AssertionError(f"{exc}; left behind (pid, ppid, command): {left}") from None


def _ready(client: httpx.Client) -> bool:
    return client.get("/readyz", timeout=5).status_code == 200


def test_valkey_and_the_broker_keeper_are_restarted_and_sigterm_leaves_nothing(data_dir: Path) -> None:
    up = _platform(data_dir).start()
    try:
        status = up.status()
        assert status["running"] and all(p["alive"] and p["restarts"] == 0 and p["last_exit"] is None
                                          for p in status["processes"].values()), status
        assert {"undertaker", "broker-keeper", "valkey", "registry", "analytics", "gateway", "processors", "ingest",
                "media-worker"} == set(status["processes"])
        with httpx.Client(base_url=up.url, timeout=30) as client:
            channel, _ = _create_channel(client, "before_kills")
            first_offset = json.loads(up.cli("tail", "channels", "--from-beginning", "--json", "--exit-at-end")
                                      )["offset"]

            valkey = _kill_and_wait_for_restart(up, "valkey")
            assert valkey["restarts"] == 1 and valkey["last_exit"] == "signal SIGKILL", valkey
            assert up.status()["valkey"] == status["valkey"]  # same port: clients reconnect by themselves
            eventually(lambda: _ready(client), 60, "/readyz after the Valkey restart", every_s=0.2,
                       ignore=(httpx.HTTPError,))
            assert client.get(f"/v1/channels/{channel}").json()["title"] == "before_kills live"  # from the AOF

            first_tansu_pid = read_ready(data_dir)["tansu_pid"]
            keeper = _kill_and_wait_for_restart(up, "broker-keeper")
            assert keeper["restarts"] == 1 and keeper["last_exit"] == "signal SIGKILL", keeper
            ready = eventually(lambda: read_ready(data_dir, keeper["pid"]), 60, "the new keeper's broker")
            assert ready["bootstrap_servers"] == status["kafka"]  # the same address
            # Tansu outlived its keeper and the new keeper adopted it: nothing to rehydrate, nothing lost.
            assert ready["rehydrated"] == {"adopted": 1} and ready["tansu_pid"] == first_tansu_pid, ready
            eventually(lambda: _ready(client), 60, "/readyz after the broker restart", every_s=0.2,
                       ignore=(httpx.HTTPError,))
            assert client.get(f"/v1/channels/{channel}").json()["title"] == "before_kills live"
            # The new broker has the log back from the archive, at the same offsets.
            created = [json.loads(line) for line in up.cli("tail", "channels", "--from-beginning", "--json",
                                                           "--exit-at-end").splitlines()]
            assert [(e["key"], e["offset"]) for e in created] == [(channel, first_offset)]

            # The broker itself (Tansu, the keeper's child) dies: the keeper fails on it and is restarted.
            keeper = _kill_and_wait_for_restart(up, "broker-keeper", victim=ready["tansu_pid"])
            assert keeper["restarts"] == 2 and keeper["last_exit"] == "exit code 1", keeper
            third = eventually(lambda: read_ready(data_dir, keeper["pid"]), 60, "the third keeper's broker")
            # A new Tansu, rehydrated behind the gate (the log comes back at the same offsets, below).
            assert third["tansu_pid"] != ready["tansu_pid"] and third["rehydrated"]["records"] >= 1, third
            assert third["bootstrap_servers"] == status["kafka"]
            eventually(lambda: _ready(client), 60, "/readyz after the second broker restart", every_s=0.2,
                       ignore=(httpx.HTTPError,))
            assert json.loads(up.cli("tail", "channels", "--from-beginning", "--json", "--exit-at-end")
                              )["key"] == channel

        final = up.status()["processes"]
        assert {n: p["restarts"] for n, p in final.items()} == \
            {n: {"valkey": 1, "broker-keeper": 2}.get(n, 0) for n in final}
        assert all(p["alive"] for p in final.values()), final

        assert up.stop(signal.SIGTERM) == 0
        _nothing_left(data_dir, 10, "every process to be gone after SIGTERM")  # stop() waited for them
    finally:
        up.stop(signal.SIGKILL)
        up.cleanup()


def test_sigkill_of_glasscast_up_leaves_nothing_once_the_keeper_has_drained(data_dir: Path) -> None:
    up = _platform(data_dir).start()
    try:
        # Go live for a moment, so that the media worker has its transcode pool (a forkserver and its
        # processes) when `glasscast up` dies.
        with httpx.Client(base_url=up.url, timeout=30) as client:
            _, key = _create_channel(client, "goes_live")
        media_worker = up.status()["processes"]["media-worker"]["pid"]
        push = ffmpeg_push(up.rtmp_url, key, 3, size="320x240",
                           log=data_dir.parent / "ffmpeg.log")
        try:
            eventually(lambda: [p for p in platform_processes(data_dir) if p.ppid == media_worker], 60,
                       "the media worker's transcode pool", every_s=0.2)
        finally:
            push.kill()
            push.wait()
        commands = " ".join(p.command for p in platform_processes(data_dir))
        for part in ("infra.cli up", "infra.undertaker", "infra.embedded.keeper", "tansu", "valkey-server",
                     "run gateway", "run processors", "run ingest", "run media-worker", "run registry"):
            assert part in commands, (part, commands)
        up.stop(signal.SIGKILL)
        # Children get SIGTERM from the kernel, the keeper drains; the undertaker SIGKILLs what hangs.
        _nothing_left(data_dir, STOP_TIMEOUT_S + DRAIN_TIMEOUT_S + 20, "every process to be gone")
    finally:
        up.cleanup()

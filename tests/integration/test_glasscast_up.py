"""`glasscast up` as a newcomer runs it: the whole platform from one command, the analyst tools
against it, and a SIGKILLed platform coming back with every acknowledged event."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import httpx
import pytest

from infra.embedded.process import free_port, pid_alive
from infra.launcher import GlasscastUp
from infra.proctree import kill_platform
from infra.runstate import read_state
from media.testpattern import ffmpeg_push
from tests.waiting import eventually

pytestmark = pytest.mark.integration


def Up(data_dir: Path, http_port: int, rtmp_port: int) -> GlasscastUp:
    """`glasscast up` on these ports, up and ready (infra/launcher.py)."""
    return GlasscastUp(data_dir, http_port=http_port, rtmp_port=rtmp_port).start()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"
    kill_platform(tmp_path / "data")  # a failed test must not leave processes behind


def _flow(url: str) -> dict[str, Any]:
    """Register, log in, create a channel; the channel as GET shows it, plus its stream key."""
    with httpx.Client(base_url=url, timeout=30) as client:
        start = time.perf_counter()
        r = client.post("/v1/users", json={"username": "speedy_runner", "password": "correct horse"})
        assert r.status_code == 201, r.text
        token = client.post("/v1/auth/login", json={"username": "speedy_runner", "password": "correct horse"}
                            ).json()["access_token"]
        r = client.post("/v1/channels", headers={"Authorization": f"Bearer {token}"},
                        json={"name": "speedy", "title": "Any% practice", "category": "Games"})
        assert r.status_code == 201, r.text
        channel = client.get(f"/v1/channels/{r.json()['id']}").json()
        channel["flow_seconds"] = time.perf_counter() - start
        channel["stream_key"] = r.json()["stream_key"]
        return channel  # type: ignore[no-any-return]


def test_up_tools_sigkill_and_restart(data_dir: Path) -> None:
    port, rtmp_port = free_port(), free_port()
    up = Up(data_dir, port, rtmp_port)
    try:
        channel = _flow(up.url)
        assert channel["name"] == "speedy" and channel["title"] == "Any% practice"

        status = json.loads(up.cli("status"))
        assert status["running"] and all(p["alive"] for p in status["processes"].values())
        assert {"broker-keeper", "valkey", "registry", "gateway", "processors", "ingest"} <= set(status["processes"])

        # Go live through the platform's own ingest with the key the API handed out.
        push = ffmpeg_push(up.rtmp_url, channel["stream_key"], 4, size="320x240", log=data_dir.parent / "ffmpeg.log")
        assert push.wait(60) == 0, (data_dir.parent / "ffmpeg.log").read_text()

        def lifecycle() -> list[str] | None:
            lines = up.cli("tail", "stream.lifecycle", "--from-beginning", "--json", "--exit-at-end").splitlines()
            kinds = [json.loads(line)["type"] for line in lines]
            return kinds if "StreamEnded" in kinds else None

        kinds = eventually(lifecycle, 30, "StreamEnded on stream.lifecycle", every_s=0)
        assert kinds[0] == "StreamStarted" and kinds[-1] == "StreamEnded", kinds
        gops = [json.loads(line) for line in up.cli("tail", "media.gops", "--from-beginning", "--json",
                                                    "--exit-at-end").splitlines()]
        assert [g["value"]["seq"] for g in gops] == [0, 1]
        assert (data_dir / "blobs" / gops[0]["value"]["blob_ref"].removeprefix("file:")).exists()
        # A media worker made the segments (no audience: the tiered ladder passes the source through).
        stream_id = gops[0]["value"]["stream_id"]
        with httpx.Client(base_url=up.url) as client:
            hls_deadline = time.monotonic() + 60  # one budget for both waits
            eventually(lambda: client.get(f"/v1/streams/{stream_id}/playback").status_code == 200,
                       60, "the stream to materialise", every_s=0.2)
            q = {"token": client.get(f"/v1/streams/{stream_id}/playback").json()["token"]}
            eventually(lambda: client.get(f"/hls/{stream_id}/source/vod.m3u8", params=q).text.count("#EXTINF") >= 2,
                       max(hls_deadline - time.monotonic(), 0.1), "the segments to be listed", every_s=0.2)
            playlists = {p: client.get(f"/hls/{stream_id}/{p}", params=q).text
                         for p in ("master.m3u8", "source/vod.m3u8")}
        assert '"avc1.' in playlists["master.m3u8"] and "#EXT-X-ENDLIST" in playlists["source/vod.m3u8"]

        listing = up.cli("topics", "list")
        for topic in ("users", "channels", "stream.lifecycle", "_schemas"):
            assert f"\n{topic} " in listing
        lines = up.cli("tail", "channels", "--from-beginning", "--json", "--exit-at-end").splitlines()
        events = [json.loads(line) for line in lines]
        assert len(events) == 1
        assert {"topic", "partition", "offset", "timestamp", "key", "type", "value"} <= set(events[0])
        assert events[0]["type"] == "ChannelCreated" and events[0]["key"] == channel["id"]
        assert events[0]["value"]["name"] == "speedy" and len(events[0]["value"]["stream_key_hash"]) == 64

        out = data_dir.parent / "users.avro"
        assert "exported 1 events" in up.cli("export", "users", "--out", str(out))
        with open(out, "rb") as fh:
            rows = list(fastavro.reader(fh))
        assert rows[0]["type"] == "glasscast.user.UserRegistered" and rows[0]["value"]["username"] == "speedy_runner"

        assert "replayed" in up.cli("rebuild-views")
        with httpx.Client(base_url=up.url) as client:
            assert client.get(f"/v1/channels/{channel['id']}").json()["title"] == "Any% practice"
            # The rebuilt views render the same playlists.
            assert {p: client.get(f"/hls/{stream_id}/{p}", params=q).text for p in playlists} == playlists

        # SIGKILL the supervisor: the keeper archives what the broker acknowledged, then stops.
        state = read_state(data_dir)
        assert state is not None
        keeper_pid = state.processes["broker-keeper"].pid
        up.stop(signal.SIGKILL)
        eventually(lambda: not pid_alive(keeper_pid), 60, "the keeper to archive and exit")
        assert not pid_alive(keeper_pid)
    finally:
        up.stop()

    again = Up(data_dir, port, rtmp_port)
    try:
        with httpx.Client(base_url=again.url) as client:
            restored = client.get(f"/v1/channels/{channel['id']}").json()
            assert {k: restored[k] for k in ("id", "name", "title", "category")} == \
                   {k: channel[k] for k in ("id", "name", "title", "category")}
            r = client.post("/v1/auth/login", json={"username": "speedy_runner", "password": "correct horse"})
            assert r.status_code == 200
            r = client.post("/v1/users", json={"username": "speedy_runner", "password": "another one"})
            assert r.status_code == 409
        lines = again.cli("tail", "channels", "--from-beginning", "--json", "--exit-at-end").splitlines()
        assert [json.loads(line)["offset"] for line in lines] == [events[0]["offset"]]
    finally:
        assert again.stop(signal.SIGTERM) == 0
    assert read_state(data_dir) is None
    assert "stopped." in again.log.read_text()

"""The edge: HLS segment requests/s from ONE gateway process against nginx on the same files, heartbeats/s,
and time to first frame in a browser.

Starts an embedded broker, registry and Valkey, puts one live stream into the
stream view and a real fMP4 segment (about 1 MB: ffmpeg's testsrc2 at 720p,
4 Mbit/s, through ``transcode_gop``'s passthrough remux) into the origin
store, and runs the real gateway (``glasscast run gateway``, one uvicorn
process) as a child.  ``wrk`` drives it over loopback with keep-alive
connections for ``--seconds`` after a short warm-up:

  * segments: the same signed URL (``?token=``) again and again, so after the
    first read every answer comes from the gateway's origin cache;
  * heartbeats: bench/heartbeats.py's request mix (its wrk script and helpers);
  * the reference: nginx (``apt-get install nginx`` when missing) with one
    worker process, ``sendfile`` on, serving the origin directory on a free
    127.0.0.1 port, driven by the same wrk command line; reported as the
    ratio gateway / nginx (aim: at least 0.5).

Then time to first frame: ``glasscast up`` as a child, a channel created
through the API, the ffmpeg CLI publishing 720p30 to it, and once segments
are listed, bench/browser.py's ``first_frame_ms`` opens the channel
page in headless Chromium ``--first-frame-runs`` times (median reported).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

import bench.heartbeats as hb  # noqa: E402
from bench.backbone import embedded_backbone  # noqa: E402
from gateways.playback_token import PlaybackClaims, derive_secret, sign  # noqa: E402
from infra.embedded.process import free_port, port_open  # noqa: E402
from infra.settings import Settings, child_env  # noqa: E402
from media.blob_stores import open_store  # noqa: E402
from topics.admin import ensure_topics  # noqa: E402
from views.store import ViewStore  # noqa: E402

SEGMENT_RATIO_AIM = 0.5
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
{user}
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    types {{ video/iso.segment m4s; video/mp4 mp4; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /hls/ {{ add_header Cache-Control "public, max-age=31536000, immutable"; }}
    }}
}}
"""


def make_segment(tmp: Path) -> tuple[bytes, bytes]:
    """(init segment, media segment): one 2 s GOP of 720p30 at 4 Mbit/s + AAC, remuxed as the worker does."""
    from media.ingest import flv
    from media.ingest.gop import GopSplitter, MediaTag, gop_to_flv
    from media.transcode import plan_ladder, transcode_gop

    source = tmp / "source.flv"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "4.5", "-c:v", "libx264",
         "-preset", "veryfast", "-b:v", "4M", "-minrate", "4M", "-maxrate", "4M", "-bufsize", "8M",
         "-x264-params", "keyint=60:min-keyint=60:scenecut=0:nal-hrd=cbr", "-pix_fmt", "yuv420p", "-threads", "1",
         "-c:a", "aac", "-b:a", "128k", "-f", "flv", str(source)], check=True)
    splitter = GopSplitter()
    for tag_type, timestamp_ms, body in flv.iter_file_tags(source.read_bytes()):
        if tag_type in (flv.TAG_AUDIO, flv.TAG_VIDEO):
            tag = MediaTag.from_payload("video" if tag_type == flv.TAG_VIDEO else "audio", timestamp_ms, body)
            for gop in splitter.push(tag):
                out = transcode_gop(gop_to_flv(gop), plan_ladder("passthrough", 0, 1280, 720, 30.0), 0,
                                    gop.start_ms, gop.duration_ms)[0]
                return out.init, out.segment
    raise RuntimeError("ffmpeg's source has no complete GOP")


async def channel_of(settings: Settings, stream_id: str) -> str:
    client = aioredis.Redis.from_url(settings.valkey.url)
    try:
        stream = await ViewStore(client, settings.valkey.key_prefix).get_stream(stream_id)
    finally:
        await client.aclose()
    assert stream is not None
    return stream.channel_id


def descendants(pid: int) -> list[int]:
    """``pid`` and every process under it (Linux /proc)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            children = (task / "children").read_text().split() if (task / "children").exists() else []
            queue += [int(c) for c in children]
    return found


def measure_tree(url: str, proc: subprocess.Popen[bytes], script: Path, seconds: float, connections: int,
                 threads: int) -> dict[str, Any]:
    """One wrk run, with the CPU of the server's whole process tree as a percent of one core."""
    pids = descendants(proc.pid)
    cpu0, loop0 = sum(hb.cpu_s(p) for p in pids), hb.cpu_s(proc.pid, proc.pid)
    result = hb.wrk(url, script, seconds, connections, threads)
    result["cpu_percent_of_core"] = round(100 * (sum(hb.cpu_s(p) for p in pids) - cpu0) / result["seconds"], 1)
    # The main thread: the gateway's event loop (for nginx, the idle master process).
    loop_s = hb.cpu_s(proc.pid, proc.pid) - loop0
    result["loop_cpu_us_per_request"] = round(1e6 * loop_s / max(1, result["requests"]), 1)
    return result


def ensure_nginx() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "nginx"], check=True, capture_output=True)
        found = shutil.which("nginx", path="/usr/sbin:/usr/bin")
    if found is None:
        raise RuntimeError("nginx is not installed and apt-get did not install it")
    return found


def run_nginx(tmp: Path, root: Path, port: int) -> subprocess.Popen[bytes]:
    conf = tmp / "nginx.conf"
    # As root, workers would switch to nobody and could not enter the private temp directory.
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_CONF.format(tmp=tmp, root=root, port=port, user=user))
    return subprocess.Popen([ensure_nginx(), "-c", str(conf), "-p", str(tmp)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _served(url: str, body: bytes) -> None:
    r = httpx.get(url, timeout=10)
    if r.status_code != 200 or r.content != body:
        raise RuntimeError(f"{url} answered {r.status_code} with {len(r.content)} bytes, not the segment")


def throughput(settings: Settings, tmp: Path, seconds: float, connections: int, threads: int,
               rounds: int) -> dict[str, Any]:
    # Heartbeats need issued sessions, each beating at most once per interval (bench/heartbeats.py).
    settings = settings.with_section("viewers", heartbeat_interval_s=hb.BENCH_HEARTBEAT_INTERVAL_S)
    ensure_topics(settings.kafka)
    stream_id = asyncio.run(hb.go_live(settings))
    channel_id = asyncio.run(channel_of(settings, stream_id))
    init, segment = make_segment(tmp)
    origin = open_store(settings, "origin")  # the file store: nginx serves its folder below
    origin.put(f"hls/{stream_id}/source/init.mp4", init)
    origin.put(f"hls/{stream_id}/source/00000000.m4s", segment)
    secret = derive_secret(str(settings.auth.jwt_secret), str(settings.auth.playback_secret))
    token = sign(secret, PlaybackClaims(channel_id, int(time.time()) + 3600))
    path = f"/hls/{stream_id}/source/00000000.m4s?token={token}"
    get_script = tmp / "get.lua"
    get_script.write_text("-- plain GET of the URL on the command line\n")

    env = child_env(settings, os.environ)
    with open(tmp / "gateway.log", "ab") as log:
        gateway = subprocess.Popen([sys.executable, "-m", "infra.cli", "run", "gateway"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    nginx_port = free_port()
    nginx = run_nginx(tmp, settings.data_dir / "origin", nginx_port)
    beats, ours, theirs = [], [], []
    try:
        base, nginx_base = f"http://127.0.0.1:{settings.gateway.port}", f"http://127.0.0.1:{nginx_port}"
        hb.wait_http(f"{base}/healthz", gateway)
        hb.wait_http(nginx_base + path, nginx)
        _served(base + path, segment)
        _served(nginx_base + path, segment)
        beat_url = f"{base}/v1/streams/{stream_id}/heartbeat"
        beat_script, _, _ = hb.steady_beats(beat_url, settings, channel_id, tmp, min(3.0, seconds), connections)
        for _ in range(rounds):
            time.sleep(hb.BENCH_HEARTBEAT_INTERVAL_S)  # each round starts the sessions over: none beats too soon
            beats.append(hb.measure(beat_url, gateway, beat_script, seconds, connections))
        for url in (base + path, nginx_base + path):
            hb.wrk(url, get_script, min(3.0, seconds), connections, threads)
        # Alternating rounds: a change in the machine's other load hits both servers alike.
        for _ in range(rounds):
            ours.append(measure_tree(base + path, gateway, get_script, seconds, connections, threads))
            theirs.append(measure_tree(nginx_base + path, nginx, get_script, seconds, connections, threads))
    finally:
        hb.stop(gateway)
        hb.stop(nginx)
    ratios = [o["accepted_per_s"] / t["accepted_per_s"] for o, t in zip(ours, theirs) if t["accepted_per_s"]]
    ratio = round(statistics.median(ratios), 3) if ratios else None

    def median(runs: list[dict[str, Any]], key: str) -> Any:
        values = [r[key] for r in runs if r[key] is not None]
        return round(statistics.median(values), 2) if values else None

    return {
        "segment_bytes": len(segment), "connections": connections, "wrk_threads": threads,
        "seconds_per_round": seconds, "rounds": rounds,
        "segments_per_s": median(ours, "accepted_per_s"), "segments_p50_ms": median(ours, "p50_ms"),
        "segments_p99_ms": median(ours, "p99_ms"), "segments_non_2xx": sum(o["non_2xx"] for o in ours),
        "segments_mbit_per_s": round(median(ours, "accepted_per_s") * len(segment) * 8 / 1e6),
        "gateway_cpu_percent_of_core": median(ours, "cpu_percent_of_core"),
        "segments_loop_cpu_us_per_request": median(ours, "loop_cpu_us_per_request"),
        "nginx_segments_per_s": median(theirs, "accepted_per_s"), "nginx_p50_ms": median(theirs, "p50_ms"),
        "nginx_p99_ms": median(theirs, "p99_ms"), "nginx_non_2xx": sum(t["non_2xx"] for t in theirs),
        "nginx_workers": 1, "nginx_cpu_percent_of_core": median(theirs, "cpu_percent_of_core"),
        "segments_ratio_to_nginx": ratio, "segments_ratio_rounds": [round(r, 3) for r in ratios],
        "segments_ratio_aim": SEGMENT_RATIO_AIM, "segments_meet_aim": ratio is not None and ratio >= SEGMENT_RATIO_AIM,
        "heartbeats_per_s": median(beats, "accepted_per_s"),
        "heartbeats_rounds_per_s": [b["accepted_per_s"] for b in beats],
        "heartbeats_p50_ms": median(beats, "p50_ms"), "heartbeats_p99_ms": median(beats, "p99_ms"),
        "heartbeats_non_2xx": sum(b["non_2xx"] for b in beats),
        "heartbeats_gateway_cpu_percent_of_core": median(beats, "cpu_percent_of_core"),
        "heartbeats_loop_cpu_us_per_request": median(beats, "loop_cpu_us_per_request"),
        "heartbeats_one_core_per_s": median(beats, "one_core_per_s"),
        "heartbeats_aim_per_s": hb.AIM_PER_S,
        "heartbeats_meet_aim": median(beats, "accepted_per_s") >= hb.AIM_PER_S,
    }


async def _until(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.3)
    raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}")


async def first_frame(tmp: Path, runs: int, timeout_s: float) -> dict[str, Any]:
    """Median ms from opening /c/{name} to its first video frame, on a stream that is already live."""
    try:
        from bench.browser import first_frame_ms
    except ImportError as exc:
        return {"first_frame_ms": None, "first_frame_note": f"bench/browser.py not importable: {exc}"}
    from infra.launcher import GlasscastUp
    from media.testpattern import ffmpeg_push

    name = f"edge_{uuid.uuid4().hex[:8]}"
    (tmp / "up").mkdir()
    with GlasscastUp(tmp / "up" / "data") as up:
        async with httpx.AsyncClient(base_url=up.url, timeout=30) as http:
            user = {"username": name, "password": "correct horse battery"}
            (await http.post("/v1/users", json=user)).raise_for_status()
            login = (await http.post("/v1/auth/login", json=user)).json()
            r = await http.post("/v1/channels", json={"name": name, "title": "edge bench", "category": "Testing"},
                                headers={"Authorization": f"Bearer {login['access_token']}"})
            r.raise_for_status()
            # /readyz answers before the supervisor has started the processors and the ingest.
            await _until(lambda: asyncio.to_thread(port_open, "127.0.0.1", up.rtmp_port), 180, "the RTMP ingest")
            push = ffmpeg_push(up.rtmp_url, r.json()["stream_key"], 60 + runs * (timeout_s + 10),
                               size="1280x720", log=tmp / "ffmpeg.log")
            try:
                async def listed() -> bool:
                    live = (await http.get(f"/v1/channels/{name}")).json().get("live_stream_id")
                    if not live:
                        return False
                    playback = (await http.get(f"/v1/streams/{live}/playback")).json()
                    # The playlist URLs name the public host (localhost); ask the gateway itself.
                    master_url = up.url + httpx.URL(playback["hls"]["master"]).raw_path.decode()
                    master = await http.get(master_url)
                    if master.status_code != 200:
                        return False
                    first = next(line for line in master.text.splitlines() if line and not line.startswith("#"))
                    media = await http.get(httpx.URL(master_url).join(first))
                    return media.status_code == 200 and media.text.count("#EXTINF") >= 2

                await _until(listed, 90, "two segments in the live playlist")
                times = [await first_frame_ms(up.url, name, timeout_s) for _ in range(runs)]
            finally:
                push.kill()
                push.wait()
    return {"first_frame_ms": round(statistics.median(times)), "first_frame_runs_ms": [round(t) for t in times]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one wrk round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per figure (medians reported)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads for the segment runs (both servers)")
    parser.add_argument("--first-frame-runs", type=int, default=3)
    parser.add_argument("--first-frame-timeout-s", type=float, default=30.0)
    parser.add_argument("--no-browser", action="store_true", help="skip time to first frame")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        with embedded_backbone(tmp) as (s, _):
            result = throughput(s, tmp, args.seconds, args.connections, args.wrk_threads, args.rounds)
        if args.no_browser:
            result |= {"first_frame_ms": None, "first_frame_note": "skipped (--no-browser)"}
        else:
            try:
                result |= asyncio.run(first_frame(tmp, args.first_frame_runs, args.first_frame_timeout_s))
            except Exception as exc:  # the throughput figures stand on their own
                result |= {"first_frame_ms": None, "first_frame_note": f"{type(exc).__name__}: {exc}"}
    result |= {"bench": "edge", "gateway_processes": 1, "uvicorn_http": "httptools" if hb._has("httptools") else "h11",
               "uvicorn_loop": "uvloop" if hb._has("uvloop") else "asyncio", "cpus": os.cpu_count()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()

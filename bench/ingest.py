"""RTMP ingest cost: CPU per 6 Mbps stream, GOP latency, and how many publishers one process sustains.

The ingest runs in this process (one asyncio loop, as `glasscast run ingest`
does) on its own embedded broker, registry and Valkey.  Publishers are ffmpeg
CLIs pushing a pre-encoded 6 Mbps 1080p30 H.264 + AAC file with ``-re -c copy``,
so the encoders cost almost nothing and the measured CPU is the ingest's.

  * one stream for ``--seconds``: ingest CPU as a percent of one core, and
    keyframe-arrival to GopAvailable-acknowledged latency p50/p99;
  * a ramp of 2, 4, 8, ... concurrent publishers until one falls behind
    (GOP latency p99 over ``--max-latency-ms``, the ingest loop over 90 % of a
    core, or a publisher needing more than 10 % longer than real time).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.backbone import embedded_backbone  # noqa: E402
from gateways.auth import new_stream_key  # noqa: E402
from infra.embedded.process import free_port  # noqa: E402
from infra.settings import Settings  # noqa: E402
from media.ingest.server import IngestServer  # noqa: E402
from media.ingest.service import open_ingest  # noqa: E402
from schemas.records.channel import ChannelCreated  # noqa: E402
from views.channels import hash_stream_key  # noqa: E402
from views.fold import Applied  # noqa: E402

BITRATE = "6M"
GOP_S = 2
RAMP = (2, 4, 8, 16, 24, 32, 48, 64)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def make_source(path: Path, seconds: int) -> None:
    """A CBR 6 Mbps 1080p30 H.264 (2 s GOP) + AAC file; noise keeps the bitrate honest."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", str(seconds), "-vf", "noise=alls=12:allf=t", "-c:v", "libx264", "-preset", "ultrafast",
         "-b:v", BITRATE, "-minrate", BITRATE, "-maxrate", BITRATE, "-bufsize", BITRATE,
         "-x264-params", "nal-hrd=cbr:keyint=60:min-keyint=60:scenecut=0", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "160k", "-f", "flv", str(path)], check=True)


def publisher(url: str, source: Path, seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
                             "-stream_loop", "-1", "-i", str(source), "-t", str(seconds), "-c", "copy",
                             "-f", "flv", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def new_channel(server: IngestServer) -> str:
    """A channel straight into the channel view (as the processors build it); its stream key."""
    key = new_stream_key()
    channel_id = str(uuid.uuid4())
    await server.ctx.views.apply(Applied(0, ChannelCreated(
        occurred_at=int(time.time() * 1000), channel_id=channel_id, owner_user_id=str(uuid.uuid4()),
        name=f"bench_{channel_id[:8]}", title="bench", category=None, tags=(),
        stream_key_hash=hash_stream_key(key))))
    return key


async def run_streams(server: IngestServer, source: Path, count: int, seconds: float) -> dict[str, Any]:
    """``count`` publishers for ``seconds``: ingest CPU, GOP latency, whether anyone lagged."""
    keys = [await new_channel(server) for _ in range(count)]
    server.ctx.gop_latency_ms.clear()
    await asyncio.sleep(0.5)
    url = f"rtmp://127.0.0.1:{server.port}/{server.settings.ingest.app}"
    cpu0, wall0 = time.process_time(), time.monotonic()
    procs = [publisher(f"{url}/{key}", source, seconds) for key in keys]
    finished: dict[int, float] = {}
    while len(finished) < len(procs):
        for i, p in enumerate(procs):
            if i not in finished and p.poll() is not None:
                finished[i] = time.monotonic() - wall0
        await asyncio.sleep(0.1)
        if time.monotonic() - wall0 > seconds * 2 + 30:
            for p in procs:
                p.kill()
            break
    # The last GOPs are stored when each publisher unpublishes; give them a moment.
    await asyncio.sleep(1.0)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    lat = list(server.ctx.gop_latency_ms)
    return {
        "publishers": count, "cpu_percent": round(100 * cpu / wall, 2),
        "cpu_percent_per_stream": round(100 * cpu / wall / count, 2),
        "gops": len(lat), "latency_p50_ms": round(percentile(lat, 0.5), 1) if lat else None,
        "latency_p99_ms": round(percentile(lat, 0.99), 1) if lat else None,
        "slowest_publisher_s": round(max(finished.values()), 2) if finished else None,
        "failed_publishers": sum(1 for p in procs if p.returncode != 0),
    }


def lagging(result: dict[str, Any], seconds: float, max_latency_ms: float) -> bool:
    """Behind: a publisher failed, GOPs are missing, GOPs wait too long, or the loop is saturated.

    (Publishers' own run time is reported, not judged: with dozens of ffmpeg
    processes starting at once on two cores, their start-up is the noise.)
    """
    expected_gops = result["publishers"] * int(seconds // GOP_S)
    return (result["failed_publishers"] > 0 or result["gops"] < expected_gops
            or result["latency_p99_ms"] is None or result["latency_p99_ms"] > max_latency_ms
            or result["cpu_percent"] > 90)


async def bench(settings: Settings, source: Path, seconds: float, ramp_seconds: float, max_publishers: int,
                max_latency_ms: float) -> dict[str, Any]:
    async with open_ingest(settings) as server:
        single = await run_streams(server, source, 1, seconds)
        ramp = []
        sustained = 1 if not lagging(single, seconds, max_latency_ms) else 0
        for count in (n for n in RAMP if n <= max_publishers):
            result = await run_streams(server, source, count, ramp_seconds)
            ramp.append(result)
            if lagging(result, ramp_seconds, max_latency_ms):
                break
            sustained = count
    per_stream = single["cpu_percent_per_stream"]
    # Per-stream cost falls with more streams (fixed loop and producer overheads are shared).
    at_scale = next((r for r in reversed(ramp) if r["publishers"] == sustained), single)
    return {
        "bench": "ingest", "bitrate": BITRATE, "source": "1920x1080p30 H.264 CBR + AAC, ffmpeg -re -c copy",
        "cpu_percent_of_core_per_stream": per_stream,
        "latency_p50_ms": single["latency_p50_ms"], "latency_p99_ms": single["latency_p99_ms"],
        "single": single, "ramp": ramp, "max_sustained_publishers": sustained,
        "ramp_limit": max_publishers,
        "projected_publishers_per_core": round(90 / at_scale["cpu_percent_per_stream"])
        if at_scale["cpu_percent_per_stream"] else None,
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--ramp-seconds", type=float, default=12.0)
    parser.add_argument("--max-publishers", type=int, default=64)
    parser.add_argument("--max-latency-ms", type=float, default=500.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        source = tmp / "source.flv"
        make_source(source, 20)
        with embedded_backbone(tmp) as (s, _):
            s = s.with_section("ingest", host="127.0.0.1", rtmp_port=free_port(), max_connections=256,
                               max_pending_per_client=256)
            result = asyncio.run(bench(s, source, args.seconds, args.ramp_seconds, args.max_publishers,
                                       args.max_latency_ms))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

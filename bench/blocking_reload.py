"""Blocking playlist reloads: what 5,000 held LL-HLS requests cost one gateway process.

Starts an embedded broker, registry and Valkey, puts one live stream into the
stream view, and runs the real gateway (``glasscast run gateway``, one
uvicorn process) as a child.  The bench plays the ingest: it stores part
blobs in the origin and produces ``PartReady`` on ``media.parts`` (segments
of 20 parts of 200 ms, PART-TARGET 223 ms, so the target duration is 4 s and
a request may be held 12 s before its 503).  Then:

1. baseline: ``--samples`` sequential requests each for ``/healthz`` and for
   the (non-blocking) media playlist, over a keep-alive connection: p50/p99;
2. hold: ``--held`` raw asyncio connections each send a blocking reload for
   the next part (``_HLS_msn``/``_HLS_part``), until the gateway's
   ``glasscast_hls_held_requests`` gauge counts them all; the same latency
   samples are taken again while they are held, with the gateway's RSS and
   CPU over that window;
3. wake: ``--rounds`` times, the awaited part is produced and every held
   request must come back 200 with it: the time from the produce call to
   each answer (first, p50, last) and the gateway's CPU for the round; each
   connection then asks for the next part and is held again.

Bounded in count (``--held``, ``--samples``, ``--rounds``) and time (every
wait has a deadline).  Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

import bench.heartbeats as hb  # noqa: E402
from bench.backbone import embedded_backbone  # noqa: E402
from bench.edge import channel_of  # noqa: E402
from gateways.playback_token import PlaybackClaims, derive_secret, sign  # noqa: E402
from infra.settings import Settings, child_env  # noqa: E402
from media.blob_stores import open_store  # noqa: E402
from schemas.records.media import PartReady  # noqa: E402
from topics.admin import ensure_topics  # noqa: E402
from topics.producer import EventProducer  # noqa: E402
from topics.runtime import make_serde  # noqa: E402

PARTS, PART_MS, PART_TARGET_MS = 20, 200, 223  # 4 s segments: a 12 s hold limit leaves room to open 5,000 sockets
OPEN_BATCH = 250  # connections opened at once (under the listen backlog)
HELD_GAUGE = re.compile(r"^glasscast_hls_held_requests ([0-9.e+]+)$", re.M)


class Publisher:
    """The ingest's side: part blobs in the origin, PartReady on media.parts."""

    def __init__(self, settings: Settings, stream_id: str, channel_id: str) -> None:
        self.serde = make_serde(settings)
        self.producer = EventProducer(settings.kafka, self.serde)
        self.origin = open_store(settings, "origin")
        self.stream_id, self.channel_id = stream_id, channel_id

    async def part(self, seq: int, index: int) -> None:
        last = index == PARTS - 1
        data = os.urandom(2000)
        self.origin.put(f"hls/{self.stream_id}/source/{seq:08d}.{index}.m4s", data)
        if last:
            self.origin.put(f"hls/{self.stream_id}/source/{seq:08d}.m4s", data * PARTS)
        await self.producer.send(PartReady(
            occurred_at=int(time.time() * 1000), stream_id=self.stream_id, channel_id=self.channel_id,
            rendition="source", seq=seq, part=index, uri=f"{seq:08d}.{index}.m4s", duration_ms=PART_MS,
            independent=index == 0, byte_size=len(data),
            program_date_time=int(time.time() * 1000), part_target_ms=PART_TARGET_MS, segment_complete=last,
            segment_uri=f"{seq:08d}.m4s" if last else None, segment_duration_ms=PARTS * PART_MS if last else None,
            init_uri="init.mp4", codecs="avc1.64001f,mp4a.40.2", width=1280, height=720, fps=30.0), self.stream_id)

    def close(self) -> None:
        self.producer.close(10)
        self.serde.close()


class HeldClient:
    """One player's connection: a blocking reload sent, its answer read (HTTP/1.1 keep-alive, raw)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> HeldClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(self, path: str) -> None:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: gateway\r\n\r\n".encode())

    async def answer(self) -> tuple[int, bytes, float]:
        """(status, body, when it was complete: perf_counter)."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(re.search(rb"(?i)content-length: *([0-9]+)", head)[1])  # type: ignore[index]
        body = await self.reader.readexactly(length)
        return status, body, time.perf_counter()

    def close(self) -> None:
        self.writer.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


async def latencies(http: httpx.AsyncClient, url: str, samples: int) -> dict[str, Any]:
    times, errors = [], 0
    for _ in range(samples):
        start = time.perf_counter()
        r = await http.get(url)
        times.append((time.perf_counter() - start) * 1000)
        errors += r.status_code != 200
    return {"p50_ms": pct(times, 0.5), "p99_ms": pct(times, 0.99), "max_ms": round(max(times), 2), "errors": errors}


async def held_now(http: httpx.AsyncClient) -> int:
    match = HELD_GAUGE.search((await http.get("/metrics")).text)
    return int(float(match[1])) if match else 0


async def until(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.1)


async def scenario(settings: Settings, gateway: subprocess.Popen[bytes], held: int, samples: int,
                   rounds: int) -> dict[str, Any]:
    stream_id = await hb.go_live(settings)
    channel_id = await channel_of(settings, stream_id)
    token = sign(derive_secret(str(settings.auth.jwt_secret), str(settings.auth.playback_secret)),
                 PlaybackClaims(channel_id, int(time.time()) + 3600))
    base, port = f"http://127.0.0.1:{settings.gateway.port}", settings.gateway.port
    playlist = f"/hls/{stream_id}/source/index.m3u8?token={token}"
    publisher = Publisher(settings, stream_id, channel_id)
    clients: list[HeldClient] = []
    try:
        for seq in range(2):  # two complete segments (straight from the edge: no segment index needed)
            for i in range(PARTS):
                await publisher.part(seq, i)
        await publisher.part(2, 0)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            async def listed() -> bool:
                r = await http.get(playlist)
                return r.status_code == 200 and "00000002.0.m4s" in r.text

            await until(listed, 30, "the open segment in the playlist")
            figures = {"healthz": "/healthz", "playlist": playlist}
            baseline = {name: await latencies(http, url, samples) for name, url in figures.items()}
            rss_idle = rss_mb(gateway.pid)

            for start in range(0, held, OPEN_BATCH):
                clients += await asyncio.gather(*(HeldClient.open(port) for _ in range(min(OPEN_BATCH,
                                                                                           held - start))))
            sent_at = time.monotonic()
            for c in clients:
                c.send(f"{playlist}&_HLS_msn=2&_HLS_part=1")
            await until(lambda: _reached(http, held), 60, f"{held} held requests")
            cpu0, t0 = hb.cpu_s(gateway.pid), time.perf_counter()
            holding = {name: await latencies(http, url, samples) for name, url in figures.items()}
            hold_cpu_pct = round(100 * (hb.cpu_s(gateway.pid) - cpu0) / (time.perf_counter() - t0), 1)
            rss_held = rss_mb(gateway.pid)
            hold_s = round(time.monotonic() - sent_at, 2)

            wakes: list[dict[str, Any]] = []
            for r in range(rounds):
                part = 1 + r
                reading = [asyncio.ensure_future(c.answer()) for c in clients]  # readers first: not timed
                await asyncio.sleep(0.2)
                cpu0 = hb.cpu_s(gateway.pid)
                published = time.perf_counter()
                await publisher.part(2, part)
                answers = await asyncio.wait_for(asyncio.gather(*reading), 60)
                cpu_s = hb.cpu_s(gateway.pid) - cpu0
                after = [(done - published) * 1000 for _, _, done in answers]
                wanted = f"00000002.{part}.m4s".encode()
                wakes.append({"answered": len(answers), "ok": sum(s == 200 and wanted in b for s, b, _ in answers),
                              "first_ms": pct(after, 0), "p50_ms": pct(after, 0.5), "last_ms": round(max(after), 1),
                              "gateway_cpu_ms": round(cpu_s * 1000)})
                if r + 1 < rounds:
                    for c in clients:
                        c.send(f"{playlist}&_HLS_msn=2&_HLS_part={part + 1}")
                    await until(lambda: _reached(http, held), 60, f"{held} held requests again")
            reached = held
    finally:
        for c in clients:
            c.close()
        publisher.close()

    def ratio(name: str) -> float | None:
        a, b = baseline[name]["p50_ms"], holding[name]["p50_ms"]
        return round(b / a, 2) if a and b else None

    return {
        "held": held, "held_reached": reached, "held_within_s": hold_s, "samples": samples,
        "baseline": baseline, "holding": holding,
        "healthz_p50_ratio": ratio("healthz"), "playlist_p50_ratio": ratio("playlist"),
        "gateway_rss_mb_idle": rss_idle, "gateway_rss_mb_holding": rss_held,
        "held_kb_per_request": round((rss_held - rss_idle) * 1024 / held, 1),
        "gateway_cpu_percent_of_core_while_holding": hold_cpu_pct,
        "wakes": wakes,
        "wake_p50_ms_median": _median([w["p50_ms"] for w in wakes]),
        "wake_last_ms_median": _median([w["last_ms"] for w in wakes]),
        "wake_all_ok": all(w["ok"] == held for w in wakes),
        "part_target_ms": PART_TARGET_MS, "target_duration_s": PARTS * PART_MS // 1000,
    }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


async def _reached(http: httpx.AsyncClient, held: int) -> bool:
    return await held_now(http) >= held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--held", type=int, default=5000, help="concurrent blocking reloads")
    parser.add_argument("--samples", type=int, default=200, help="latency samples per figure")
    parser.add_argument("--rounds", type=int, default=3, help="parts produced to wake every held request")
    args = parser.parse_args()
    load_before = round(os.getloadavg()[0], 2)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.held + 1000
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(wanted, soft)), hard))
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        with embedded_backbone(tmp) as (s, _):
            ensure_topics(s.kafka)
            env = child_env(s, os.environ)
            with open(tmp / "gateway.log", "ab") as log:
                gateway = subprocess.Popen([sys.executable, "-m", "infra.cli", "run", "gateway"], env=env,
                                           stdout=log, stderr=subprocess.STDOUT)
            try:
                hb.wait_http(f"http://127.0.0.1:{s.gateway.port}/healthz", gateway)
                result = asyncio.run(asyncio.wait_for(scenario(s, gateway, args.held, args.samples, args.rounds),
                                                      600))
            finally:
                hb.stop(gateway)
    result |= {"bench": "blocking_reload", "gateway_processes": 1, "cpus": os.cpu_count(),
               "load_avg_1m_before": load_before,  # the machine is shared: other load slows every figure
               "uvicorn_http": "httptools" if hb._has("httptools") else "h11",
               "uvicorn_loop": "uvloop" if hb._has("uvloop") else "asyncio"}
    print(json.dumps(result))


if __name__ == "__main__":
    main()

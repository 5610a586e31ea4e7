"""Heartbeat intake: accepted ``POST /v1/streams/{id}/heartbeat`` per second by ONE gateway process.

Starts an embedded broker, registry and Valkey, puts one live stream into the
stream view, and runs the real gateway (``glasscast run gateway``, one uvicorn
process) as a child.  ``wrk`` (``apt-get install wrk``) drives it over
loopback for ``--seconds`` with ``--connections`` keep-alive connections, after
a short warm-up.  Every beat is one the gateway must accept: viewer sessions,
each with a playback token as the playback endpoint issues it (signed here with
the platform's secret, since one client may only hold a few sessions), sent
round-robin; the gateway takes one beat per session per
``GLASSCAST_VIEWERS_HEARTBEAT_INTERVAL_S``, set to 1 s here, and there are as
many sessions as go round in 1.4 s at the rate the warm-up measured.  Reported:

  * accepted heartbeats/s (204 answers) and wrk's p50/p99 latency, with the
    token of each session's previous beat (``accepted_per_s``: a player keeps
    its token for minutes, so the gateway's session gate vouches for it), and
    with a new token on every beat (``verify_every_beat_per_s``: every beat pays
    the HMAC check, the worst case);
  * what the session check adds to a beat, in this process (``check_cost_us``):
    ``session_check_us`` with the token of the session's last beat,
    ``session_check_new_token_us`` with a new one, next to ``route_fields_us``,
    the parse and validation the route did before sessions existed; against
    ``loop_cpu_us_per_request`` these say what share of a request the check
    costs, steadier than two wrk runs on a machine other work shares;
  * the gateway's CPU as a percent of one core, and its event-loop thread's
    CPU per request with the rate that implies on a core of its own
    (``one_core_per_s``: steadier than requests/s on a machine other work shares);
  * how many Heartbeat records reached ``viewer.heartbeats`` (every 204 must);
  * then one ``glasscast run processors`` reads that backlog into HyperLogLog:
    heartbeats/s through the viewer agents (from committed offsets, so a lower bound);
  * the reference: the same wrk run against a bare Starlette route that reads
    the body and answers 204 on the same uvicorn, i.e. the ceiling of the
    framework and server on this machine.
Prints one JSON line.  The aim (the issue): at least 10,000 heartbeats/s per process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from confluent_kafka import Consumer, TopicPartition  # noqa: E402

from bench.backbone import embedded_backbone  # noqa: E402
from gateways import validation as v  # noqa: E402
from gateways.heartbeat_intake import SessionGate  # noqa: E402
from gateways.heartbeats import admit_session, beat_token, heartbeat_fields  # noqa: E402
from gateways.playback_token import PlaybackClaims, derive_secret, sign  # noqa: E402
from gateways.viewer_sessions import session_id, session_key  # noqa: E402
from infra.embedded.process import free_port  # noqa: E402
from infra.settings import Settings, child_env  # noqa: E402
from schemas.records.stream import StreamStarted  # noqa: E402
from topics.admin import ensure_topics  # noqa: E402
from views.fold import Applied  # noqa: E402
from views.store import ViewStore  # noqa: E402

AIM_PER_S = 10_000
TOPIC = "viewer.heartbeats"
# The gateway's beat interval for the bench.  The sessions go round every CYCLE_INTERVALS intervals at the
# rate the warm-up measured: slower than one interval less its slack (0.8), so no beat is too soon, and
# faster than the two intervals the gateway's session gate surely remembers, so beats find their token there.
BENCH_HEARTBEAT_INTERVAL_S = 1.0
CYCLE_INTERVALS = 1.4
PROBE_SESSIONS = 20_000  # the warm-up's own sessions, before the rate is known

# One request per call, the sessions' bodies (one a line, read from BODIES) round-robin.
WRK_SCRIPT = """
local bodies = {}
for line in io.lines("BODIES") do bodies[#bodies + 1] = line end
local counter = 0
local headers = {["Content-Type"] = "application/json"}
function request()
  counter = counter % #bodies + 1
  return wrk.format("POST", nil, headers, bodies[counter])
end
"""

BARE_APP = textwrap.dedent("""
    import sys, uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def beat(request):
        await request.body()
        return Response(status_code=204)

    app = Starlette(routes=[Route("/v1/streams/{stream_id:uuid}/heartbeat", beat, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None, access_log=False)
""")


def _ms(text: str) -> float:
    value, unit = float(re.match(r"[\d.]+", text).group()), re.sub(r"[\d.]+", "", text)  # type: ignore[union-attr]
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def wrk(url: str, script: Path, seconds: float, connections: int, threads: int = 1) -> dict[str, Any]:
    """One wrk run: requests, non-2xx answers, requests/s and latency percentiles."""
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    elapsed = _ms(re.search(r"requests in ([\d.]+\w+),", out).group(1)) / 1000  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    pct = {p: _ms(v) for p, v in re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)", out, re.M)}
    non2xx = int(bad.group(1)) if bad else 0
    return {"requests": total, "non_2xx": non2xx, "socket_errors": errors.group(1) if errors else None,
            "seconds": round(elapsed, 2), "accepted_per_s": round((total - non2xx) / elapsed),
            "p50_ms": pct.get("50"), "p99_ms": pct.get("99")}


def cpu_s(pid: int, tid: int | None = None) -> float:
    """User + system CPU seconds of a process, or of one of its threads (Linux /proc)."""
    stat = Path(f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def topic_records(bootstrap: str) -> int:
    """Records on the heartbeat topic (sum of high watermarks)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:6]}"})
    try:
        parts = consumer.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1] for p in parts)
    finally:
        consumer.close()


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


async def go_live(settings: Settings) -> str:
    """A live stream straight into the stream view, as the processors build it from StreamStarted."""
    client = aioredis.Redis.from_url(settings.valkey.url)
    stream_id = str(uuid.uuid4())
    try:
        await ViewStore(client, settings.valkey.key_prefix).apply(Applied(1, StreamStarted(
            occurred_at=int(time.time() * 1000), stream_id=stream_id, channel_id=str(uuid.uuid4()),
            title="bench", category=None, ingest_host="bench")))
    finally:
        await client.aclose()
    return stream_id


def playback_secret(settings: Settings) -> bytes:
    return derive_secret(str(settings.auth.jwt_secret), str(settings.auth.playback_secret))


def beat_bodies(settings: Settings, channel_id: str, sessions: int, tokens: range = range(1),
                client: str = "bench") -> list[str]:
    """Heartbeat bodies for ``sessions`` issued sessions, once per token (tokens differ in their expiry).

    With one token, each session sends the token of its previous beat; with two, it alternates them,
    so that no beat carries its session's previous token.  Another ``client`` gets other sessions.
    """
    secret, expires = playback_secret(settings), int(time.time()) + 3600
    session_ids = [session_id(session_key(secret), channel_id, client, i) for i in range(sessions)]
    return [json.dumps({"session_id": sid, "token": sign(secret, PlaybackClaims(channel_id, expires + k, sid, True)),
                        "rendition": "720p30", "buffer_health_s": 4.5, "bitrate_kbps": 3000},
                       separators=(",", ":"))
            for k in tokens for sid in session_ids]


def beat_script(tmp: Path, name: str, bodies: list[str]) -> Path:
    """A wrk script that sends ``bodies`` round-robin (written next to it)."""
    data, script = tmp / f"{name}.bodies", tmp / f"{name}.lua"
    data.write_text("\n".join(bodies) + "\n")
    script.write_text(WRK_SCRIPT.replace("BODIES", str(data)))
    return script


def check_cost_us(settings: Settings, channel_id: str, sessions: int = 20_000) -> dict[str, float]:
    """Microseconds per beat of what the heartbeat route adds to read and check a session, in this process.

    Over ``sessions`` issued sessions, as the route runs it (gateways/heartbeats.py): the beat's JSON parsed and
    its fields validated without the session (the route's work before sessions existed), then with the token
    read, the session checked against its last beat and remembered; once with the token of the session's
    previous beat (vouched for: no HMAC) and once with a new token on every beat (HMAC and payload check).
    """
    secret, interval_s, now = playback_secret(settings), float(BENCH_HEARTBEAT_INTERVAL_S), int(time.time())
    ids = [session_id(session_key(secret), channel_id, "bench", i) for i in range(sessions)]

    def bodies(expires: int, token: bool) -> list[bytes]:
        return [json.dumps({"session_id": sid, "rendition": "720p30", "buffer_health_s": 4.5, "bitrate_kbps": 3000,
                            **({"token": sign(secret, PlaybackClaims(channel_id, expires, sid, True))}
                               if token else {})}).encode() for sid in ids]

    plain, first, renewed = bodies(now + 3600, False), bodies(now + 3600, True), bodies(now + 3601, True)
    gate = SessionGate()

    def fields_only(batch: list[bytes]) -> float:
        started = time.process_time()
        for body in batch:
            heartbeat_fields(v.parse_object(body))
        return time.process_time() - started

    def checked(batch: list[bytes], at_s: float) -> float:
        started = time.process_time()
        for body in batch:
            data = v.parse_object(body)
            fields = heartbeat_fields(data)
            admitted = admit_session(gate, secret, interval_s, fields["session_id"], beat_token(data), channel_id,
                                     at_s, time.time())
            gate.admit(fields["session_id"], admitted, interval_s)
        return time.process_time() - started

    base_s = min(fields_only(plain) for _ in range(3))
    checked(first, 0.0)  # the sessions' first beats: the gate learns their tokens
    vouched_s = min(checked(first, 2.0 * i * interval_s) for i in range(1, 4))
    fresh_s = checked(renewed, 10.0 * interval_s)
    per_beat = 1e6 / sessions
    return {"route_fields_us": round(base_s * per_beat, 2),
            "session_check_us": round((vouched_s - base_s) * per_beat, 2),
            "session_check_new_token_us": round((fresh_s - base_s) * per_beat, 2)}


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def settled_records(bootstrap: str, timeout_s: float = 30.0) -> int:
    """Records on the heartbeat topic once the producer's last batches have landed."""
    deadline, last = time.monotonic() + timeout_s, -1
    while time.monotonic() < deadline:
        now = topic_records(bootstrap)
        if now == last:
            break
        last = now
        time.sleep(1.0)
    return last


def measure(url: str, proc: subprocess.Popen[bytes], script: Path, seconds: float, connections: int) -> dict[str, Any]:
    """One wrk run with the server's CPU, and the event-loop thread's CPU per request.

    The event loop runs on the main thread, and a uvicorn process can use no
    more than one core for it: its CPU per request gives the rate the process
    would sustain with a core to itself, a figure that other load on the
    machine disturbs far less than requests/s.
    """
    cpu0, loop0 = cpu_s(proc.pid), cpu_s(proc.pid, proc.pid)
    result = wrk(url, script, seconds, connections)
    result["cpu_percent_of_core"] = round(100 * (cpu_s(proc.pid) - cpu0) / result["seconds"], 1)
    loop_us = 1e6 * (cpu_s(proc.pid, proc.pid) - loop0) / max(1, result["requests"])
    result["loop_cpu_us_per_request"] = round(loop_us, 1)
    result["one_core_per_s"] = round(1e6 / loop_us) if loop_us > 0 else None
    return result


def committed(bootstrap: str, group: str) -> int:
    """Heartbeat records the consumer group has committed past (sum over partitions)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = consumer.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions
        offsets = consumer.committed([TopicPartition(TOPIC, p) for p in parts], timeout=10)
        return sum(max(0, tp.offset) for tp in offsets)
    finally:
        consumer.close()


def drain(settings: Settings, tmp: Path, records: int, timeout_s: float = 120.0) -> dict[str, Any]:
    """One ``glasscast run processors`` reads the heartbeat backlog: records/s into HyperLogLog."""
    import redis

    from views.readiness import ready_key

    s = settings.with_section("processors", app_id=f"bench-views-{uuid.uuid4().hex[:6]}")
    env = child_env(s, os.environ)
    with open(tmp / "processors.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "infra.cli", "run", "processors"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    client = redis.Redis.from_url(s.valkey.url)
    try:
        deadline = time.monotonic() + timeout_s
        while not client.exists(ready_key(s)):
            if proc.poll() is not None or time.monotonic() > deadline:
                return {"processor_per_s": None, "processor_note": "processors did not start"}
            time.sleep(0.05)
        start, cpu0 = time.monotonic(), cpu_s(proc.pid)
        done = 0
        while done < records and time.monotonic() < deadline:
            time.sleep(0.5)
            done = committed(s.kafka.bootstrap_servers, s.processors.app_id)
        elapsed = time.monotonic() - start
        if done < records:
            return {"processor_per_s": None,
                    "processor_note": f"{done} of {records} heartbeats committed in {timeout_s} s "
                                      "(are the viewer agents wired into build_processors?)"}
        # Offsets are committed about once a second, so the rate is a lower bound.
        return {"processor_per_s": round(records / elapsed), "processor_records": records,
                "processor_cpu_percent_of_core": round(100 * (cpu_s(proc.pid) - cpu0) / elapsed, 1)}
    finally:
        client.close()
        stop(proc)


def steady_beats(url: str, settings: Settings, channel_id: str, tmp: Path, seconds: float,
                 connections: int) -> tuple[Path, Path, int]:
    """Warm the gateway up, then size the sessions to its rate: (steady script, new-token script, sessions).

    The warm-up fills the stream cache, the connections and the producer and measures the rate; the
    steady sessions then each beat once, so that a measured run finds every token in the session gate.
    The new-token script's sessions are others, so that it leaves the steady ones' tokens alone.
    """
    probe = beat_script(tmp, "heartbeat-probe", beat_bodies(settings, channel_id, PROBE_SESSIONS, client="probe"))
    rate = max(1, wrk(url, probe, seconds, connections)["accepted_per_s"])
    sessions = max(1000, round(CYCLE_INTERVALS * BENCH_HEARTBEAT_INTERVAL_S * rate))
    steady = beat_script(tmp, "heartbeat", beat_bodies(settings, channel_id, sessions))
    fresh = beat_script(tmp, "heartbeat-new-token",
                        beat_bodies(settings, channel_id, sessions, range(1, 3), client="fresh"))
    wrk(url, steady, 1 + sessions / rate, connections)
    time.sleep(BENCH_HEARTBEAT_INTERVAL_S)
    return steady, fresh, sessions


async def channel_of(settings: Settings, stream_id: str) -> str:
    client = aioredis.Redis.from_url(settings.valkey.url)
    try:
        stream = await ViewStore(client, settings.valkey.key_prefix).get_stream(stream_id)
    finally:
        await client.aclose()
    assert stream is not None
    return stream.channel_id


def bench(settings: Settings, tmp: Path, seconds: float, connections: int) -> dict[str, Any]:
    settings = settings.with_section("viewers", heartbeat_interval_s=BENCH_HEARTBEAT_INTERVAL_S)
    ensure_topics(settings.kafka)
    stream_id = asyncio.run(go_live(settings))
    channel_id = asyncio.run(channel_of(settings, stream_id))
    path = f"/v1/streams/{stream_id}/heartbeat"
    bootstrap = settings.kafka.bootstrap_servers
    env = child_env(settings, os.environ)
    with open(tmp / "gateway.log", "ab") as log:
        gateway = subprocess.Popen([sys.executable, "-m", "infra.cli", "run", "gateway"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{settings.gateway.port}"
        wait_http(f"{base}/healthz", gateway)
        script, fresh_script, sessions = steady_beats(base + path, settings, channel_id, tmp, min(3.0, seconds),
                                                      connections)
        before = settled_records(bootstrap)
        ours = measure(base + path, gateway, script, seconds, connections)
        records = settled_records(bootstrap) - before
        fresh = measure(base + path, gateway, fresh_script, seconds, connections)
    finally:
        stop(gateway)
    processor = drain(settings, tmp, settled_records(bootstrap))
    port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)])
    # The same request bodies as ours, so the reference parses as many bytes.
    try:
        wait_http(f"http://127.0.0.1:{port}/", bare)
        wrk(f"http://127.0.0.1:{port}{path}", script, min(3.0, seconds), connections)
        reference = measure(f"http://127.0.0.1:{port}{path}", bare, script, seconds, connections)
    finally:
        stop(bare)
    accepted = ours["requests"] - ours["non_2xx"]
    return {
        "bench": "heartbeats", "gateway_processes": 1, "connections": connections, "seconds": ours["seconds"],
        "accepted_per_s": ours["accepted_per_s"], "p50_ms": ours["p50_ms"], "p99_ms": ours["p99_ms"],
        "accepted": accepted, "non_2xx": ours["non_2xx"], "socket_errors": ours["socket_errors"],
        "records_on_topic": records, "gateway_cpu_percent_of_core": ours["cpu_percent_of_core"],
        "loop_cpu_us_per_request": ours["loop_cpu_us_per_request"], "one_core_per_s": ours["one_core_per_s"],
        "aim_per_s": AIM_PER_S, "meets_aim": ours["accepted_per_s"] >= AIM_PER_S,
        "sessions": sessions, "verify_every_beat_per_s": fresh["accepted_per_s"],
        "verify_every_beat_non_2xx": fresh["non_2xx"],
        "verify_every_beat_loop_cpu_us_per_request": fresh["loop_cpu_us_per_request"],
        "verify_every_beat_one_core_per_s": fresh["one_core_per_s"],
        **check_cost_us(settings, channel_id),
        "bare_starlette_per_s": reference["accepted_per_s"], "bare_p50_ms": reference["p50_ms"],
        "bare_p99_ms": reference["p99_ms"], "bare_cpu_percent_of_core": reference["cpu_percent_of_core"],
        "bare_loop_cpu_us_per_request": reference["loop_cpu_us_per_request"],
        "bare_one_core_per_s": reference["one_core_per_s"],
        "ratio_to_bare": round(ours["accepted_per_s"] / reference["accepted_per_s"], 3),
        **processor,
        "uvicorn_http": "httptools" if _has("httptools") else "h11",
        "uvicorn_loop": "uvloop" if _has("uvloop") else "asyncio", "cpus": os.cpu_count(),
    }


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        with embedded_backbone(tmp) as (s, _):
            result = bench(s, tmp, args.seconds, args.connections)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

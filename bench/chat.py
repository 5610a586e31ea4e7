"""Chat fan-out: deliveries/s and delivery latency of ONE gateway process, against a Node ``ws`` broadcast server.

Starts an embedded broker, registry and Valkey, the processors (``glasscast
run processors``) and the real gateway (``glasscast run gateway``, one
uvicorn process) as children, creates through the REST API a channel and
``--senders`` user accounts, then stops the processors (``--keep-processors``
leaves them running; the send path does not need them).  The gateway runs
with the ML filter off (``GLASSCAST_CHAT_ML_FILTER=false``) and a per-user
rate limit high enough for the senders; everything else (coalescing, slow
consumer limits, the Valkey checks, the ``ChatMessageSent`` produce) is as
configured by default.

The load generator is Node (bench/chat_load.js, the same code for every
server, one process per server): ``--clients`` WebSockets in one room, the
first ``--senders`` of them logged in; the senders send ``--rate`` messages/s
in total, each text stamped with its send time; every client splits frames on
"\n" and counts its deliveries and their latency (send -> receive, one
clock).  ``ws`` is installed at bench time with ``npm install ws@WS_VERSION
--prefix <tmp>`` (not a project dependency).  The reference server
(bench/chat_load.js ``serve``) broadcasts each frame it receives, as
received, to every socket of the room with ``ws``'s usual loop, one frame per
message; a second reference coalesces messages for the gateway's
``coalesce_ms`` like the gateway (``--no-coalesced-reference`` skips it).  On
the references the senders send an object shaped and sized like the
gateway's MESSAGE, so every server delivers the same bytes.

Every server is started and its clients connected first; then the steps take
turns between the servers, so that each figure is compared with the others
measured at about the same time (the machine is shared and noisy):

  * the target: ``--rate`` messages/s (default 20 into 5,000 clients: 100,000
    deliveries/s) for ``--seconds`` after a 2 s warm-up, ``--repeat`` times
    per server, medians reported: deliveries/s, p50/p99 (aim: p99 under
    250 ms), server CPU as a percent of one core (``/proc``);
  * with ``--saturate``: from ``--saturate-from`` messages/s, times
    ``--saturate-factor`` each step, every server at each rate, until for
    that server deliveries/s stop growing (two steps under 5 % above its
    best), p99 passes 1 s, fewer than 98 % of the deliveries arrive, or the
    generator cannot send the rate; reported: the most deliveries/s of each
    server and the ratios gateway / reference (aim: at least 1).

Each step also reports the generator's own CPU and event-loop delay, and the
whole machine's busy CPU, to show whether the generator or a neighbour was
the limit.  Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from bench.backbone import embedded_backbone  # noqa: E402
from bench.heartbeats import cpu_s, stop, wait_http  # noqa: E402
from infra.embedded.process import free_port, port_open  # noqa: E402
from infra.settings import Settings, child_env  # noqa: E402

WS_VERSION = "8.23.0"
LOAD_JS = Path(__file__).resolve().with_name("chat_load.js")
AIM_P99_MS = 250.0
WARMUP_S = 2.0
DRAIN_S = 10.0
P99_LIMIT_MS = 1000.0
MIN_COMPLETENESS = 0.98


def raise_nofile(need: int) -> int:
    """Raise this process's open-file limit (the children inherit it) to at least ``need`` where allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            soft, hard = need, need
    target = max(need, soft) if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def install_ws(tmp: Path) -> Path:
    """``ws`` into a throw-away prefix; the NODE_PATH that finds it."""
    prefix = tmp / "node"
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-save", "--silent", "--prefix", str(prefix),
                    f"ws@{WS_VERSION}"], check=True, stdout=subprocess.DEVNULL)
    return prefix / "node_modules"


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return total - idle, total


class LoadGen:
    """bench/chat_load.js ``load``: connects once, then runs steps on command."""

    def __init__(self, node_path: Path, tmp: Path, name: str, url: str, sender_urls: list[str], mode: str,
                 args: argparse.Namespace, sender_tokens: list[str] | None = None) -> None:
        config = tmp / f"load-{name}.json"
        config.write_text(json.dumps({"url": url, "clients": args.clients, "senderUrls": sender_urls,
                                      "senderTokens": sender_tokens or [], "mode": mode,
                                      "textChars": args.text_chars, "connectConcurrency": args.connect_concurrency,
                                      "receivers": args.receivers}))
        self.proc = subprocess.Popen(["node", str(LOAD_JS), "load", str(config)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1,
                                     env=os.environ | {"NODE_PATH": str(node_path)})

    def _line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"load generator exited with {self.proc.wait()}")
        event: dict[str, Any] = json.loads(line)
        return event

    def ready(self) -> dict[str, Any]:
        return self._line()

    def step(self, rate: float, seconds: float, pids: dict[str, int]) -> dict[str, Any]:
        """One step; CPU of ``pids`` and of the machine over the measured window are added to its figures."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": "step", "rate": rate, "warmup": WARMUP_S, "seconds": seconds,
                                          "drain": DRAIN_S}) + "\n")
        self.proc.stdin.flush()
        cpu0: dict[str, float] = {}
        busy0 = (0, 0)
        start = end = 0.0
        cpu1: dict[str, float] = {}
        busy1 = (0, 0)
        while True:
            event = self._line()
            if event["event"] == "window_start":
                start, busy0 = time.monotonic(), machine_busy()
                cpu0 = {name: cpu_s(pid) for name, pid in pids.items()}
            elif event["event"] == "window_end":
                end, busy1 = time.monotonic(), machine_busy()
                cpu1 = {name: cpu_s(pid) for name, pid in pids.items()}
            elif event["event"] == "step":
                break
        wall = end - start
        for name in pids:
            event[f"{name}_cpu_percent_of_core"] = round(100 * (cpu1[name] - cpu0[name]) / wall, 1)
        event["machine_busy_percent"] = round(100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 1)
        return event

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.write('{"cmd":"quit"}\n')
                self.proc.stdin.flush()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Server:
    """A server under test and the load generator connected to it."""

    name: str
    loadgen: LoadGen
    pids: dict[str, int]

    def step(self, rate: float, seconds: float) -> dict[str, Any]:
        return self.loadgen.step(rate, seconds, self.pids)


@contextlib.contextmanager
def child(argv: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        stop(proc)


@contextlib.contextmanager
def connected(loadgen: LoadGen, clients: int) -> Iterator[LoadGen]:
    try:
        ready = loadgen.ready()
        if ready["connect_failures"]:
            raise RuntimeError(f"{ready['connect_failures']} of {clients} clients could not connect: "
                               f"{ready['connect_error']}")
        yield loadgen
    finally:
        loadgen.close()


def wait_ready_key(settings: Settings, proc: subprocess.Popen[bytes], timeout_s: float = 90.0) -> None:
    import redis

    from views.readiness import ready_key

    client = redis.Redis.from_url(settings.valkey.url)
    deadline = time.monotonic() + timeout_s
    try:
        while not client.exists(ready_key(settings)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the processors did not start (see processors.log)")
            time.sleep(0.1)
    finally:
        client.close()


async def accounts(base: str, senders: int) -> tuple[str, list[str]]:
    """A channel and ``senders`` logged-in users through the REST API: (channel id, their tokens)."""
    tag = uuid.uuid4().hex[:6]
    password = "correct horse battery staple"
    gate = asyncio.Semaphore(4)

    async with httpx.AsyncClient(base_url=base, timeout=60) as api:
        async def user(name: str) -> str:
            async with gate:
                r = await api.post("/v1/users", json={"username": name, "password": password})
                r.raise_for_status()
                r = await api.post("/v1/auth/login", json={"username": name, "password": password})
                r.raise_for_status()
                return str(r.json()["access_token"])

        owner = await user(f"bench_caster_{tag}")
        r = await api.post("/v1/channels", headers={"Authorization": f"Bearer {owner}"},
                           json={"name": f"bench_room_{tag}", "title": "chat bench"})
        r.raise_for_status()
        channel_id = str(r.json()["id"])
        tokens = await asyncio.gather(*(user(f"bench_s{i}_{tag}") for i in range(senders)))
        deadline = time.monotonic() + 30
        while (await api.get(f"/v1/channels/{channel_id}")).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the channel never appeared in the channel view")
            await asyncio.sleep(0.1)
    return channel_id, list(tokens)


@contextlib.contextmanager
def gateway_server(settings: Settings, tmp: Path, node_path: Path, args: argparse.Namespace,
                   valkey_pid: int) -> Iterator[Server]:
    """The processors and one gateway; accounts through the API; the load generator connected."""
    env = child_env(settings, os.environ)
    cli = [sys.executable, "-m", "infra.cli", "run"]
    base = f"http://127.0.0.1:{settings.gateway.port}"
    with child(cli + ["processors"], env, tmp / "processors.log") as processors:
        wait_ready_key(settings, processors)
        with child(cli + ["gateway"], env, tmp / "gateway.log") as gateway:
            wait_http(f"{base}/healthz", gateway)
            channel_id, tokens = asyncio.run(accounts(base, args.senders))
            if not args.keep_processors:
                stop(processors)
            url = f"ws://127.0.0.1:{settings.gateway.port}/v1/chat/ws?channel={channel_id}"
            # Senders sign in with an auth frame (bench/chat_load.js), never a token in the URL.
            loadgen = LoadGen(node_path, tmp, "gateway", url, [url] * len(tokens), "gateway", args, tokens)
            pids = {"server": gateway.pid, "valkey": valkey_pid}
            if args.keep_processors:
                pids["processors"] = processors.pid
            with connected(loadgen, args.clients):
                yield Server("gateway", loadgen, pids)


@contextlib.contextmanager
def reference_server(name: str, tmp: Path, node_path: Path, args: argparse.Namespace,
                     coalesce_ms: float) -> Iterator[Server]:
    """bench/chat_load.js ``serve`` on a free port, and the load generator connected."""
    port = free_port()
    env = os.environ | {"NODE_PATH": str(node_path)}
    argv = ["node", str(LOAD_JS), "serve", json.dumps({"port": port, "coalesceMs": coalesce_ms})]
    with child(argv, env, tmp / f"{name}.log") as server:
        deadline = time.monotonic() + 20
        while not port_open("127.0.0.1", port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the reference server did not start")
            time.sleep(0.05)
        url = f"ws://127.0.0.1:{port}/?channel=bench"
        loadgen = LoadGen(node_path, tmp, name, url, [url] * args.senders, "reference", args)
        with connected(loadgen, args.clients):
            yield Server(name, loadgen, {"server": server.pid})


SUMMARY_KEYS = ("messages_in_per_s", "deliveries_per_s", "frames_per_s", "mbytes_per_s", "p50_ms", "p90_ms",
                "p99_ms", "max_ms", "ack_p50_ms", "ack_p99_ms", "server_cpu_percent_of_core",
                "valkey_cpu_percent_of_core", "processors_cpu_percent_of_core", "loadgen_cpu_percent_of_core",
                "loadgen_system_cpu_percent_of_core", "loadgen_loop_delay_p99_ms", "machine_busy_percent")


def summary(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of each figure over repeated steps; the lowest completeness; notices added up."""
    out: dict[str, Any] = {}
    for key in SUMMARY_KEYS:
        values = [s[key] for s in steps if s.get(key) is not None]
        if values:
            out[key] = round(statistics.median(values), 1)
    out["completeness"] = min(s["completeness"] or 0 for s in steps)
    notices: dict[str, int] = {}
    for s in steps:
        for code, n in s["notices"].items():
            notices[code] = notices.get(code, 0) + n
    out["notices"] = notices
    out["disconnects"] = max(s.get("disconnects", 0) for s in steps)
    if len(steps) > 1:
        out["runs"] = [{"deliveries_per_s": s["deliveries_per_s"], "p99_ms": s["p99_ms"],
                        "server_cpu_percent_of_core": s["server_cpu_percent_of_core"],
                        "machine_busy_percent": s["machine_busy_percent"]} for s in steps]
    return out


def _compact(step: dict[str, Any]) -> dict[str, Any]:
    keys = ("rate_target", "messages_in_per_s", "deliveries_per_s", "frames_per_s", "p50_ms", "p99_ms",
            "ack_p50_ms", "ack_p99_ms", "completeness", "server_cpu_percent_of_core", "valkey_cpu_percent_of_core",
            "loadgen_cpu_percent_of_core", "loadgen_loop_delay_p99_ms", "machine_busy_percent", "notices")
    return {k: step[k] for k in keys if k in step and step[k] not in ({}, None)}


class Ladder:
    """One server's saturation steps and whether (and why) it stopped."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.flat = 0
        self.stopped: str | None = None

    def add(self, rate: float, step: dict[str, Any]) -> None:
        self.steps.append(step)
        dps = step["deliveries_per_s"]
        if self.best is not None and dps < 1.05 * self.best["deliveries_per_s"]:
            self.flat += 1
        else:
            self.flat = 0
        if self.best is None or dps > self.best["deliveries_per_s"]:
            self.best = step
        if step["p99_ms"] is None or step["p99_ms"] > P99_LIMIT_MS:
            self.stopped = "p99_over_1s"
        elif (step["completeness"] or 0) < MIN_COMPLETENESS:
            self.stopped = "deliveries_missing"
        elif step["messages_in_per_s"] < 0.9 * rate:
            self.stopped = "generator_could_not_send_the_rate"
        elif self.flat >= 2:
            self.stopped = "deliveries_stopped_growing"

    def result(self) -> dict[str, Any]:
        assert self.best is not None
        under = [s for s in self.steps if s["p99_ms"] is not None and s["p99_ms"] <= P99_LIMIT_MS]
        best_under = max(under, key=lambda s: s["deliveries_per_s"]) if under else None
        return {"max_deliveries_per_s": self.best["deliveries_per_s"],
                "at_messages_in_per_s": self.best["messages_in_per_s"], "p99_ms_at_max": self.best["p99_ms"],
                "max_deliveries_per_s_p99_under_1s": best_under["deliveries_per_s"] if best_under else None,
                "stopped": self.stopped, "steps": [_compact(s) for s in self.steps]}


def saturate(servers: list[Server], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Every server at each rate in turn (the same moment's neighbours for all), raising the rate until each stops."""
    ladders = {s.name: Ladder() for s in servers}
    rate = args.saturate_from
    for _ in range(args.max_steps):
        active = [s for s in servers if ladders[s.name].stopped is None]
        if not active:
            break
        if rate > args.max_rate:
            for s in active:
                ladders[s.name].stopped = "max_rate"
            break
        for s in active:
            ladders[s.name].add(rate, s.step(rate, args.step_seconds))
        rate = round(rate * args.saturate_factor, 1)
    for ladder in ladders.values():
        ladder.stopped = ladder.stopped or "max_steps"
    return {name: ladder.result() for name, ladder in ladders.items()}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def bench(settings: Settings, tmp: Path, node_path: Path, args: argparse.Namespace,
          valkey_pid: int) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(gateway_server(settings, tmp, node_path, args, valkey_pid)),
                   stack.enter_context(reference_server("reference", tmp, node_path, args, 0))]
        if not args.no_coalesced_reference:
            servers.append(stack.enter_context(reference_server("reference_coalesced", tmp, node_path, args,
                                                                settings.chat.coalesce_ms)))
        runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
        for i in range(args.repeat):
            for s in servers[i % len(servers):] + servers[:i % len(servers)]:
                runs[s.name].append(s.step(args.rate, args.seconds))
        sat = saturate(servers, args) if args.saturate else None
    target = {name: summary(steps) for name, steps in runs.items()}
    g, r = target["gateway"], target["reference"]
    result: dict[str, Any] = {
        "bench": "chat", "clients": args.clients, "senders": args.senders, "seconds": args.seconds,
        "repeat": args.repeat, "messages_in_per_s": g["messages_in_per_s"],
        "deliveries_per_s": g["deliveries_per_s"], "p50_ms": g["p50_ms"], "p99_ms": g["p99_ms"],
        "completeness": g["completeness"], "gateway_cpu_percent_of_core": g["server_cpu_percent_of_core"],
        "aim_p99_ms": AIM_P99_MS, "meets_p99_aim": g.get("p99_ms") is not None and g["p99_ms"] < AIM_P99_MS,
        "reference_deliveries_per_s": r["deliveries_per_s"], "reference_p50_ms": r["p50_ms"],
        "reference_p99_ms": r["p99_ms"], "reference_cpu_percent_of_core": r["server_cpu_percent_of_core"],
        "ratio_deliveries_to_reference": _ratio(g["deliveries_per_s"], r["deliveries_per_s"]),
        **{f"target_{name}": figures for name, figures in target.items()},
    }
    if sat is not None:
        gs, rs = sat["gateway"], sat["reference"]
        result["saturation"] = {
            "gateway_max_deliveries_per_s": gs["max_deliveries_per_s"],
            "reference_max_deliveries_per_s": rs["max_deliveries_per_s"],
            "ratio": _ratio(gs["max_deliveries_per_s"], rs["max_deliveries_per_s"]),
            "ratio_p99_under_1s": _ratio(gs["max_deliveries_per_s_p99_under_1s"],
                                         rs["max_deliveries_per_s_p99_under_1s"]),
            **({"reference_coalesced_max_deliveries_per_s": sat["reference_coalesced"]["max_deliveries_per_s"],
                "ratio_to_coalesced_reference": _ratio(gs["max_deliveries_per_s"],
                                                       sat["reference_coalesced"]["max_deliveries_per_s"])}
               if "reference_coalesced" in sat else {}),
            **sat,
        }
    node_version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    result["setup"] = {
        "ml_filter": settings.chat.ml_filter, "gateway_coalesce_ms": settings.chat.coalesce_ms,
        "processors_running": args.keep_processors, "text_chars": args.text_chars,
        "reference": f"node {node_version}, ws {WS_VERSION}, one frame per message",
        "reference_coalesced": None if args.no_coalesced_reference else
        f"the same, coalescing {settings.chat.coalesce_ms} ms like the gateway",
        "load_generator": f"node bench/chat_load.js, one process per server, {args.receivers} receivers",
        "cpus": os.cpu_count(),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=5000, help="sockets in the room, senders included")
    parser.add_argument("--senders", type=int, default=50, help="logged-in clients that send")
    parser.add_argument("--rate", type=float, default=20.0, help="messages/s in for the target run")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds of the target run")
    parser.add_argument("--repeat", type=int, default=3, help="target runs per server (medians reported)")
    parser.add_argument("--saturate", action="store_true", help="also find each server's most deliveries/s")
    parser.add_argument("--saturate-from", type=float, default=10.0, help="first saturation rate, messages/s")
    parser.add_argument("--saturate-factor", type=float, default=1.4)
    parser.add_argument("--step-seconds", type=float, default=6.0, help="measured seconds per saturation step")
    parser.add_argument("--max-rate", type=float, default=2000.0, help="messages/s the ladder never passes")
    parser.add_argument("--max-steps", type=int, default=14)
    parser.add_argument("--text-chars", type=int, default=60, help="characters per message text")
    parser.add_argument("--connect-concurrency", type=int, default=50,
                        help="handshakes in flight while the clients connect")
    parser.add_argument("--receivers", choices=("raw", "ws"), default="raw",
                        help="viewer sockets in the generator: plain TCP (cheaper) or `ws` clients")
    parser.add_argument("--keep-processors", action="store_true", help="leave the processors running")
    parser.add_argument("--no-coalesced-reference", action="store_true",
                        help="skip the reference run that coalesces like the gateway")
    args = parser.parse_args()
    if not 1 <= args.senders <= args.clients:
        parser.error("--senders must be from 1 to --clients")
    if shutil.which("node") is None or shutil.which("npm") is None:
        sys.exit("node and npm are needed (the load generator and the reference server)")
    limit = raise_nofile(args.clients + 1024)
    if limit < args.clients + 256:
        sys.exit(f"open-file limit {limit} is too low for {args.clients} clients")

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        node_path = install_ws(tmp)
        with embedded_backbone(tmp) as (s, valkey):
            s = s.with_section("processors", app_id=f"bench-views-{uuid.uuid4().hex[:6]}")
            s = s.with_section("chat", ml_filter=False, user_messages_per_window=1_000_000, rate_window_s=1.0)
            result = bench(s, tmp, node_path, args, valkey.process.pid or 0)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

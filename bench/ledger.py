"""Cheers through ONE gateway process: cheers/s and the latency a cheer adds to a chat message.

Starts an embedded broker, registry and Valkey, the processors (``glasscast
run processors``: the ledger worker folds every cheer) and the real gateway
(``glasscast run gateway``, one uvicorn process) as children; creates through
the REST API ``--channels`` channels and ``--users`` users, each of whom buys
bits with the sandbox provider; then opens ``--sockets-per-user`` chat
sockets per user, spread over the channels.  Several sockets of one user
cheer at once, so the balance check (the Lua hold, views/ledger_store.py)
runs under contention on every user's account.

Each socket sends one message, waits for its answer (ACK or NOTICE) and
sends the next, for ``--seconds``: a cheer (``cheer1 ...``) takes the whole
path (the chat rules, the hold, the ``BitsCheered`` acknowledged by the log,
the room's publish, the ACK); the reference, in the same run and on the same
sockets, is a plain message (the rules, the ``ChatMessageSent``
acknowledged, the publish, the ACK).  The two alternate ``--repeat`` times
and the medians are reported: messages/s, p50/p99 send-to-ACK latency, and
the p99 a cheer adds (cheer p99 minus plain p99; aim: under 20 ms) and
cheers/s (aim: at least 2,000).  At the end the ledger must have folded
exactly the cheers that were ACKed (``spent`` equals them, nothing held).

The load generator is Node (bench/ledger_load.js, one process; ``ws`` is
installed at bench time into a temporary npm prefix, as for bench/chat.py),
not this Python process: every socket also receives every message of its
room, and on a shared machine the generator's own CPU is taken from the
system under test, so the generator skips the fan-out frames unparsed and
costs as little as it can.  The CPU of every process on the machine (the
gateway, the processors, the broker, Valkey and the generator) is reported
per run and as medians (``machine_cpu_pct``), to show which was the limit,
and the gateway's CPU per answered message (cheer and plain) is a figure
that holds however busy the machine is.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from bench.backbone import started_backbone  # noqa: E402
from bench.chat import child, install_ws, wait_ready_key  # noqa: E402
from bench.heartbeats import cpu_s, wait_http  # noqa: E402
from infra.settings import Settings, child_env  # noqa: E402

AIM_CHEERS_PER_S = 2000.0
AIM_ADDED_P99_MS = 20.0
PASSWORD = "correct horse battery staple"
LOAD_JS = Path(__file__).resolve().with_name("ledger_load.js")
CONNECT_CONCURRENCY = 16
LOG_TAIL_CHARS = 4000


async def setup(base: str, channels: int, users: int, pack: str, packs_each: int) -> tuple[list[str], list[str]]:
    """Channels and users who bought bits: (channel ids, user tokens)."""
    tag = uuid.uuid4().hex[:6]
    gate = asyncio.Semaphore(4)
    async with httpx.AsyncClient(base_url=base, timeout=60) as api:
        async def user(name: str) -> str:
            async with gate:
                (await api.post("/v1/users", json={"username": name, "password": PASSWORD})).raise_for_status()
                deadline = time.monotonic() + 30
                while True:
                    r = await api.post("/v1/auth/login", json={"username": name, "password": PASSWORD})
                    if r.status_code == 200 or time.monotonic() > deadline:
                        r.raise_for_status()
                        return str(r.json()["access_token"])
                    await asyncio.sleep(0.1)

        owner = await user(f"bench_caster_{tag}")
        ids = []
        for i in range(channels):
            r = await api.post("/v1/channels", headers={"Authorization": f"Bearer {owner}"},
                               json={"name": f"bench_cheer_{tag}_{i}"})
            r.raise_for_status()
            ids.append(str(r.json()["id"]))
        tokens = list(await asyncio.gather(*(user(f"bench_c{i}_{tag}") for i in range(users))))
        for token in tokens:
            for _ in range(packs_each):
                r = await api.post("/v1/bits/purchases", headers={"Authorization": f"Bearer {token}"},
                                   json={"pack": pack})
                r.raise_for_status()
        want = int(pack) * packs_each
        deadline = time.monotonic() + 60
        for token in tokens:
            while (await api.get("/v1/me/bits", headers={"Authorization": f"Bearer {token}"})).json()[
                    "balance"] < want:
                if time.monotonic() > deadline:
                    raise RuntimeError("the ledger never credited the purchases")
                await asyncio.sleep(0.1)
        for cid in ids:
            while (await api.get(f"/v1/channels/{cid}")).status_code != 200:
                await asyncio.sleep(0.1)
    return ids, tokens


class LoadGen:
    """bench/ledger_load.js: its sockets open and signed in, closed-loop runs on command."""

    def __init__(self, proc: subprocess.Popen[str], log_path: Path) -> None:
        self.proc, self.log_path = proc, log_path
        self.pid = proc.pid

    def line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            tail = self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
            raise RuntimeError(f"the load generator (bench/ledger_load.js) exited with {code}:\n{tail}")
        event: dict[str, Any] = json.loads(line)
        return event

    def drive(self, text: str, seconds: float) -> dict[str, Any]:
        """Every socket: send, wait for its answer, again, for ``seconds``: per_s, acks, notices, p50_ms, p99_ms."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": "drive", "text": text, "seconds": seconds}) + "\n")
        self.proc.stdin.flush()
        return self.line()

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self.proc.stdin.write('{"cmd":"quit"}\n')
                self.proc.stdin.flush()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


@contextlib.contextmanager
def load_generator(node_path: Path, tmp: Path, sockets: list[dict[str, str]]) -> Iterator[LoadGen]:
    """The Node load generator with ``sockets`` ({url, token}) open and signed in; stopped on every way out."""
    config = tmp / "ledger-load.json"
    config.write_text(json.dumps({"sockets": sockets, "connectConcurrency": CONNECT_CONCURRENCY}))
    log_path = tmp / "ledger-load.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(["node", str(LOAD_JS), str(config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=log, text=True, bufsize=1, env=os.environ | {"NODE_PATH": str(node_path)})
    loadgen = LoadGen(proc, log_path)
    try:
        ready = loadgen.line()
        if ready.get("event") != "ready" or ready.get("sockets") != len(sockets):
            raise RuntimeError(f"the load generator did not get ready: {ready}")
        yield loadgen
    finally:
        loadgen.close()


def measure(settings: Settings, args: argparse.Namespace, gateway_pid: int, others: dict[str, int], tmp: Path,
            node_path: Path) -> dict[str, Any]:
    """The runs; ``others``: the other processes on the machine (name -> pid), whose CPU each run reports too."""
    base = f"http://127.0.0.1:{settings.gateway.port}"
    channels, tokens = asyncio.run(setup(base, args.channels, args.users, args.pack, args.packs_each))
    sockets = []
    for i, token in enumerate(tokens):
        for j in range(args.sockets_per_user):
            cid = channels[(i * args.sockets_per_user + j) % len(channels)]
            sockets.append({"url": f"ws://127.0.0.1:{settings.gateway.port}/v1/chat/ws?channel={cid}", "token": token})
    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "cheer": []}
    with load_generator(node_path, tmp, sockets) as loadgen:
        loadgen.drive("warm up", args.warmup)
        warm = loadgen.drive("cheer1 warm up", args.warmup)
        for _ in range(args.repeat):
            for kind, text in (("plain", "good game, well played"), ("cheer", "cheer1 good game, well played")):
                watched = {"gateway": gateway_pid, "loadgen": loadgen.pid, **others}
                g0, l0, t0 = cpu_s(gateway_pid), cpu_s(loadgen.pid), time.monotonic()
                before = {name: cpu_s(pid) for name, pid in watched.items()}
                runs[kind].append(loadgen.drive(text, args.seconds))
                dt = time.monotonic() - t0
                runs[kind][-1]["cpu_pct"] = {name: round(100 * (cpu_s(pid) - before[name]) / dt, 1)
                                             for name, pid in watched.items()}
                runs[kind][-1]["gateway_cpu_pct"] = round(100 * (cpu_s(gateway_pid) - g0) / dt, 1)
                runs[kind][-1]["loadgen_cpu_pct"] = round(100 * (cpu_s(loadgen.pid) - l0) / dt, 1)
                done = runs[kind][-1]["acks"] + sum(runs[kind][-1]["notices"].values())
                # Gateway CPU per answered message: what a cheer costs, whatever else the machine runs.
                runs[kind][-1]["gateway_cpu_ms_per_msg"] = round(1000 * (cpu_s(gateway_pid) - g0) / max(1, done), 3)
    acked = sum(r["acks"] for r in runs["cheer"]) + warm["acks"]
    spent, held = asyncio.run(folded(base, tokens))
    return {"runs": runs, "spent": spent, "held": held, "cheers_acked": acked}


async def folded(base: str, tokens: list[str]) -> tuple[int, int]:
    """Bits spent and still held over every user, once the ledger has settled."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as api:
        async def totals() -> tuple[int, int]:
            spent = held = 0
            for token in tokens:
                b = (await api.get("/v1/me/bits", headers={"Authorization": f"Bearer {token}"})).json()
                spent, held = spent + int(b["spent"]), held + int(b["held"])
            return spent, held
        return await settle(totals)


async def settle(read: Callable[[], Awaitable[tuple[int, int]]], timeout_s: float = 60) -> tuple[int, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        spent, held = await read()
        if held == 0 or time.monotonic() > deadline:
            return spent, held
        await asyncio.sleep(0.2)


def machine(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Each process's median CPU over ``runs`` (% of one core), and their sum."""
    names = runs[0]["cpu_pct"] if runs else {}
    out = {name: round(statistics.median(r["cpu_pct"][name] for r in runs), 1) for name in names}
    return out | {"sum": round(sum(out.values()), 1)}


def med(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 2) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=16, help="cheering users")
    parser.add_argument("--sockets-per-user", type=int, default=4, help="sockets of one user cheering at once")
    parser.add_argument("--channels", type=int, default=8, help="rooms the sockets are spread over")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of each kind before measuring")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each kind, alternating (medians reported)")
    parser.add_argument("--pack", default="25000", help="the bit pack each user buys")
    parser.add_argument("--packs-each", type=int, default=4, help="packs each user buys")
    args = parser.parse_args()
    if shutil.which("node") is None or shutil.which("npm") is None:
        sys.exit("node and npm are needed (the load generator, bench/ledger_load.js)")

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        node_path = install_ws(tmp)
        with started_backbone(tmp) as backbone:
            s = backbone.settings
            s = s.with_section("processors", app_id=f"bench-ledger-{uuid.uuid4().hex[:6]}")
            s = s.with_section("chat", ml_filter=False, user_messages_per_window=1_000_000, rate_window_s=1.0)
            env = child_env(s, os.environ)
            cli = [sys.executable, "-m", "infra.cli", "run"]
            with child(cli + ["processors"], env, tmp / "processors.log") as processors:
                wait_ready_key(s, processors)
                with child(cli + ["gateway"], env, tmp / "gateway.log") as gateway:
                    wait_http(f"http://127.0.0.1:{s.gateway.port}/healthz", gateway)
                    others = {"processors": processors.pid, "broker": backbone.broker.process.pid,
                              "valkey": backbone.valkey.process.pid}
                    out = measure(s, args, gateway.pid, {k: v for k, v in others.items() if v is not None}, tmp,
                                  node_path)
    runs = out["runs"]
    plain_p99, cheer_p99 = med(runs["plain"], "p99_ms"), med(runs["cheer"], "p99_ms")
    added = round(cheer_p99 - plain_p99, 2) if plain_p99 is not None and cheer_p99 is not None else None
    cheers_per_s = med(runs["cheer"], "per_s")
    print(json.dumps({
        "bench": "ledger", "sockets": args.users * args.sockets_per_user, "users": args.users,
        "channels": args.channels, "seconds": args.seconds, "repeat": args.repeat,
        "cheers_per_s": cheers_per_s, "plain_per_s": med(runs["plain"], "per_s"),
        "cheer_p50_ms": med(runs["cheer"], "p50_ms"), "cheer_p99_ms": cheer_p99,
        "plain_p50_ms": med(runs["plain"], "p50_ms"), "plain_p99_ms": plain_p99, "added_p99_ms": added,
        "gateway_cpu_pct": {"cheer": med(runs["cheer"], "gateway_cpu_pct"),
                            "plain": med(runs["plain"], "gateway_cpu_pct")},
        "gateway_cpu_ms_per_msg": {"cheer": med(runs["cheer"], "gateway_cpu_ms_per_msg"),
                                   "plain": med(runs["plain"], "gateway_cpu_ms_per_msg")},
        "loadgen_cpu_pct": {"cheer": med(runs["cheer"], "loadgen_cpu_pct"),
                            "plain": med(runs["plain"], "loadgen_cpu_pct")},
        # Every process on the machine, % of one core (medians): where the two cores went.
        "machine_cpu_pct": {kind: machine(runs[kind]) for kind in ("cheer", "plain")},
        # Every ACKed cheer (1 bit each) folded exactly once, and no hold left over.
        "ledger_consistent": out["held"] == 0 and out["spent"] == out["cheers_acked"],
        "ledger_spent": out["spent"], "ledger_held": out["held"], "cheers_acked": out["cheers_acked"],
        "aim": {"cheers_per_s": AIM_CHEERS_PER_S, "added_p99_ms": AIM_ADDED_P99_MS,
                "met": bool(cheers_per_s and added is not None and cheers_per_s >= AIM_CHEERS_PER_S
                            and added <= AIM_ADDED_P99_MS)},
        "runs": runs}))


if __name__ == "__main__":
    main()

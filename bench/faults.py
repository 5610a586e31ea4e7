"""Fault injection: kill -9 each process of `glasscast up` in turn under a live stream and chat; what it costs.

The scenario, shared with ``tests/faults/test_faults.py`` (tests import it,
never the other way round): ``glasscast up`` as a child, a channel made through
the API, the ffmpeg CLI publishing 320x240 with 2 s GOPs to it, a chat sender
(a JWT) and a chat watcher (anonymous, reconnecting), and a thread polling the
source rendition's live playlist.  ``Scenario.fault(name)`` kills one
supervised process with SIGKILL (for the ingest it also restarts the encoder,
since ffmpeg exits when its connection drops) and measures, in a
``FaultReport``:

  * restart seconds: from the kill to a new, alive pid in `glasscast status`
    (for the broker keeper: to a keeper whose broker is rehydrated and ready),
    and how many restarts that took;
  * the video gap: the longest time the live playlist did not advance, from
    its last advance before the kill to its first advance after it;
  * chat: messages acknowledged but not in the history, and not seen by the
    watcher;
  * GOPs lost: holes in the stream's GOP sequence on ``media.gops`` and in the
    segments the live playlist listed;
  * ghost streams: live streams of the channel besides the one it started.

Waits go through a ``Wait`` (tests pass ``tests.waiting.eventually``, the
benchmark its own ``wait_until``); a wait that runs out becomes a figure in the
report (None, or a count), never an exception, so the benchmark reports and
the test asserts on the same numbers.

Before the faults, on the same platform and before the stream starts, the
**idle phase** (``measure_idle``, issue 11 point 7): with no stream and no
viewer, the CPU of every process of the platform (``infra/proctree.py``:
supervisor, undertaker, keeper, Tansu, Valkey, registry, gateway, processors,
ingest, media worker and its pool) over ``--idle-seconds``, as a percentage of
one core, in total and per process; then how fast an event reaches a
latency-critical consumer while the platform is otherwise idle: a
``UserRegistered`` is produced through ``EventProducer`` (which rings its
doorbell, topics/doorbell.py) and the time until the processors' user view has
it is taken (``view_ms``), and the time until a bench ``EventConsumer`` in its
own group has it (``consumer_ms``, the consumer the media worker and the
gateway's live edge use), against a reference in the same run: a bare
confluent-kafka consumer that always fetches with the short wait and has no
doorbell (``reference_consumer_ms``: the machine's noise floor, and what every
consumer paid in CPU before the doorbell).  ``sparse`` events come further apart than the
consumers' linger, so each one finds them paused and must wake them;
``steady`` ones come every 0.1-0.3 s, so they stay awake.  Figures are
p50/p99/max in milliseconds.

Run: ``.venv/bin/python bench/faults.py [--ladder-mode full|passthrough]``;
prints one JSON line (``idle`` is one of its fields).  ``--only idle`` runs
the idle phase alone (a few minutes) and prints its JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import WebSocketException  # noqa: E402

from infra.embedded.keeper import read_ready  # noqa: E402
from infra.embedded.process import port_open  # noqa: E402
from infra.launcher import GlasscastUp  # noqa: E402
from infra.proctree import platform_processes  # noqa: E402
from infra.runstate import resolve  # noqa: E402
from infra.settings import load_settings, with_doorbell  # noqa: E402
from media.testpattern import ffmpeg_push  # noqa: E402

T = TypeVar("T")

# The order the operator killed them in: the API, the processors, media, then the dependencies.
FAULTS = ("gateway", "processors", "media-worker", "ingest", "valkey", "broker-keeper")
RESTART_BOUND_S = 30.0  # a process not back by then is a hang
ADVANCE_BOUND_S = 45.0  # the live playlist advances again within this after the kill
CHAT_BOUND_S = 30.0  # an acknowledged message is in the history and at the watcher within this
PUSH_SECONDS = 900  # ffmpeg publishes longer than the whole scenario; it is killed at the end
SIZE = "320x240"
POLL_S = 0.25  # the playlist monitor's period: a 2 s segment is never missed
LISTED = ("gops_missing_from_vod", "vod_not_on_log")  # printed as lists; the other lists as counts
SEGMENT = re.compile(r"^(\d+)\.m4s")
IDLE_SETTLE_S = 15.0  # after the platform is up, before the idle CPU is measured (groups joined, consumers paused)
IDLE_SECONDS = 30.0
SPARSE_EVENTS, SPARSE_GAP_S = 25, (2.4, 3.0)  # further apart than the consumers' linger (topics/doorbell.py)
STEADY_EVENTS, STEADY_GAP_S = 100, (0.1, 0.3)
EVENT_TIMEOUT_S = 10.0  # an event not seen by then counts as this (and is reported in ``lost``)


class Wait(Protocol):
    """``tests.waiting.eventually``'s shape: the condition's truthy value, or an AssertionError after timeout_s."""

    def __call__(self, condition: Callable[[], T], timeout_s: float = ..., what: str = ...,
                 every_s: float = ..., ignore: tuple[type[BaseException], ...] = ...) -> T: ...


class WaitTimeout(AssertionError):
    """``wait_until`` ran out (an AssertionError, like the tests' Timeout)."""


def wait_until(condition: Callable[[], T], timeout_s: float = 30.0, what: str = "the condition",
               every_s: float = 0.05, ignore: tuple[type[BaseException], ...] = ()) -> T:
    """The benchmark's ``Wait`` (bench never imports tests)."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            value = condition()
            if value:
                return value
            last = value
        except ignore as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")
        time.sleep(every_s)


@dataclass
class FaultReport:
    fault: str
    restart_s: float | None = None  # None: not back within RESTART_BOUND_S (the keeper: its broker rehydrated)
    restarts: int = 0  # restarts it took (more than one: the new incarnation failed too)
    video_gap_s: float | None = None  # None: the playlist did not advance within ADVANCE_BOUND_S
    chat_acked: int = 0
    chat_refused: int = 0  # a NOTICE or no answer: allowed, the sender knows
    chat_lost: list[str] = field(default_factory=list)  # acknowledged, not in the history
    chat_unseen: list[str] = field(default_factory=list)  # acknowledged, never shown to the watcher
    gops_lost: list[int] = field(default_factory=list)  # holes in media.gops, or listed span without a segment
    live_skipped: list[int] = field(default_factory=list)  # segments that exist but the live window never listed
    gops_unused: list[int] = field(default_factory=list)  # numbers a killed ingest reserved, never stored
    ghost_streams: list[str] = field(default_factory=list)  # other live streams of the channel
    notes: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        """The JSON line's entry: counts rather than lists."""
        row = asdict(self)
        for name in ("chat_lost", "chat_unseen", "gops_lost", "live_skipped", "gops_unused", "ghost_streams"):
            row[name] = len(row[name])
        return row


class PlaylistMonitor(threading.Thread):
    """Polls the source rendition's live playlist; when it advanced, and every segment it ever listed."""

    def __init__(self, url: str, stream_id: str) -> None:
        super().__init__(daemon=True, name="playlist-monitor")
        self.url, self.stream_id = url, stream_id
        self.segments: set[int] = set()
        self.advances: list[tuple[float, int]] = []  # (monotonic time, new last segment)
        self.errors = 0
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def last(self) -> int:
        with self._lock:
            return self.advances[-1][1] if self.advances else -1

    def advance_times(self) -> list[tuple[float, int]]:
        with self._lock:
            return list(self.advances)

    def seen(self) -> set[int]:
        with self._lock:
            return set(self.segments)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)

    def run(self) -> None:
        token: str | None = None
        with httpx.Client(base_url=self.url, timeout=3) as client:
            while not self._stop_event.wait(POLL_S):
                try:
                    if token is None:
                        r = client.get(f"/v1/streams/{self.stream_id}/playback")
                        token = r.json()["token"] if r.status_code == 200 else None
                        if token is None:
                            continue
                    r = client.get(f"/hls/{self.stream_id}/source/index.m3u8", params={"token": token})
                    if r.status_code in (401, 403):
                        token = None
                    if r.status_code != 200:
                        self.errors += 1
                        continue
                    numbers = [int(m.group(1)) for line in r.text.splitlines() if (m := SEGMENT.match(line))]
                except (httpx.HTTPError, ValueError, KeyError):
                    self.errors += 1
                    continue
                if numbers:
                    with self._lock:
                        self.segments.update(numbers)
                        if not self.advances or max(numbers) > self.advances[-1][1]:
                            self.advances.append((time.monotonic(), max(numbers)))


class ChatWatcher(threading.Thread):
    """An anonymous chat socket that reconnects whenever it drops; the ids of every MESSAGE it was shown."""

    def __init__(self, ws_url: str) -> None:
        super().__init__(daemon=True, name="chat-watcher")
        self.ws_url = ws_url
        self.seen: set[str] = set()
        self.connected = threading.Event()  # set while a socket is open and said CONNECTED
        self.connects = 0
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)

    def run(self) -> None:
        asyncio.run(self._watch())

    async def _watch(self) -> None:
        while not self._stop_event.is_set():
            try:
                async with connect(self.ws_url, open_timeout=3, close_timeout=1) as ws:
                    while not self._stop_event.is_set():
                        try:
                            raw = await asyncio.wait_for(ws.recv(), 0.25)
                        except TimeoutError:
                            continue
                        for line in str(raw).split("\n"):
                            frame = json.loads(line)
                            if frame.get("type") == "CONNECTED":
                                self.connects += 1
                                self.connected.set()
                            elif frame.get("type") == "MESSAGE":
                                self.seen.add(str(frame["id"]))
            except (OSError, WebSocketException, TimeoutError, ValueError):
                pass
            self.connected.clear()
            await asyncio.sleep(0.2)


def video_gap(advances: list[tuple[float, int]], killed_at: float, target: int) -> float | None:
    """The longest time between two advances of the playlist, from its last advance before the kill to the
    first that reached ``target``."""
    start = [i for i, (t, _) in enumerate(advances) if t <= killed_at][-1:] or [0]
    end = [i for i, (_, seg) in enumerate(advances) if seg >= target][:1]
    if not end or end[0] <= start[0]:
        return None
    times = [t for t, _ in advances[start[0]:end[0] + 1]]
    return round(max(b - a for a, b in zip(times, times[1:], strict=False)), 2)


async def _say(ws_url: str, token: str, text: str, timeout_s: float) -> str | None:
    """Send one chat message on a fresh socket signed in with ``token`` (an auth frame); the message id of its
    ACK, or None (NOTICE, error, silence)."""
    nonce = uuid.uuid4().hex
    try:
        async with asyncio.timeout(timeout_s):
            async with connect(ws_url, open_timeout=timeout_s, close_timeout=1) as ws:
                await ws.send(json.dumps({"type": "auth", "token": token}))  # answered before the send below
                while True:  # CONNECTED first
                    if any(json.loads(line).get("type") == "CONNECTED" for line in str(await ws.recv()).split("\n")):
                        break
                await ws.send(json.dumps({"type": "send", "text": text, "nonce": nonce}))
                while True:
                    for line in str(await ws.recv()).split("\n"):
                        frame = json.loads(line)
                        if frame.get("nonce") == nonce and frame.get("type") == "ACK":
                            return str(frame["id"])
                        if frame.get("nonce") == nonce and frame.get("type") == "NOTICE":
                            return None
    except (OSError, WebSocketException, TimeoutError, ValueError):
        return None


def _cpu_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks


def _roles(up: GlasscastUp) -> dict[int, str]:
    """pid -> its name in `glasscast status` (and the supervisor's)."""
    roles = {pid: name for name, entry in up.status()["processes"].items() if (pid := int(entry["pid"]))}
    if up.proc is not None:
        roles[up.proc.pid] = "supervisor"
    return roles


def idle_cpu(up: GlasscastUp, seconds: float) -> dict[str, Any]:
    """Every platform process's CPU over ``seconds``: per name (children under their parent's), and the total."""
    roles = _roles(up)
    before = {p.pid: (p, _cpu_ticks(p.pid)) for p in platform_processes(up.data_dir)}
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    after = {p.pid: (p, _cpu_ticks(p.pid)) for p in platform_processes(up.data_dir)}
    parents = {pid: p.ppid for pid, (p, _) in {**before, **after}.items()}

    def name(pid: int) -> str:
        command = after.get(pid, before.get(pid))[0].command  # type: ignore[index]
        if "tansu" in command:
            return "tansu"
        if "valkey-server" in command:
            return "valkey"
        seen, at = 0, pid
        while at not in roles and at in parents and seen < 10:
            at, seen = parents[at], seen + 1
        return roles.get(at, "other") + ("" if at == pid else " (children)")

    tick = os.sysconf("SC_CLK_TCK")
    per: dict[str, float] = {}
    for pid, (_, end) in after.items():
        start = before.get(pid, (None, 0))[1]
        if end is None or start is None:
            continue
        pct = (end - start) / tick / elapsed * 100
        per[name(pid)] = per.get(name(pid), 0.0) + pct
    return {"seconds": round(elapsed, 1), "cpu_pct_of_one_core": round(sum(per.values()), 2),
            "per_process_pct": {k: round(v, 2) for k, v in sorted(per.items(), key=lambda kv: -kv[1])}}


def _percentiles(values: list[float]) -> dict[str, float | int]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))], 1)

    return {"n": len(ordered), "p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1], 1)}


def event_latency(up: GlasscastUp, events: int, gap_s: tuple[float, float]) -> dict[str, Any]:
    """Produce ``events`` UserRegistered ``gap_s`` apart; ms until the user view and a bench consumer have each."""
    import random

    import redis

    from schemas.records.user import UserRegistered
    from topics.consumer import EventConsumer
    from topics.producer import EventProducer
    from topics.runtime import make_serde
    from views.store import ViewStore

    settings = with_doorbell(resolve(load_settings({}, data_dir=up.data_dir)))
    serde = make_serde(settings)
    producer = EventProducer(settings.kafka, serde)
    valkey = redis.Redis.from_url(settings.valkey.url)
    view_key = ViewStore(None, settings.valkey.key_prefix).k_user  # type: ignore[arg-type]
    seen: dict[str, float] = {}
    stop = threading.Event()
    ready = threading.Event()

    def consume() -> None:  # the bench's latency-critical consumer, with its doorbell, in its own group
        latest: dict[str, Any] = {"auto.offset.reset": "latest"}
        consumer = EventConsumer(settings.kafka, serde, ["users"], group_id=f"bench-latency-{uuid.uuid4().hex[:8]}",
                                 **latest)
        try:
            while not stop.is_set():
                if consumer.assignment():
                    ready.set()
                event = consumer.poll(0.2)
                if event is not None and event.key is not None:
                    seen[event.key] = time.perf_counter()
        finally:
            consumer.close()

    reference_seen: dict[str, float] = {}
    reference_ready = threading.Event()

    def reference() -> None:  # the reference: a bare confluent-kafka consumer that always fetches, no doorbell
        from confluent_kafka import Consumer

        bare = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "auto.offset.reset": "latest",
                         "group.id": f"bench-reference-{uuid.uuid4().hex[:8]}",
                         "session.timeout.ms": settings.kafka.session_timeout_ms,
                         "fetch.wait.max.ms": settings.kafka.fetch_wait_max_ms})
        bare.subscribe(["users"])
        try:
            while not stop.is_set():
                if bare.assignment():
                    reference_ready.set()
                msg = bare.poll(0.2)
                if msg is not None and msg.error() is None and msg.key() is not None:
                    reference_seen[(msg.key() or b"").decode()] = time.perf_counter()
        finally:
            bare.close()

    thread = threading.Thread(target=consume, name="bench-consumer", daemon=True)
    thread.start()
    reference_thread = threading.Thread(target=reference, name="bench-reference", daemon=True)
    reference_thread.start()
    view_ms: list[float] = []
    consumer_ms: list[float] = []
    reference_ms: list[float] = []
    lost = 0
    rng = random.Random(7)
    try:
        ready.wait(60)
        reference_ready.wait(60)
        time.sleep(max(gap_s))  # the consumers have gone back to sleep
        for i in range(events):
            user_id = str(uuid.uuid4())
            record = UserRegistered(occurred_at=int(time.time() * 1000), user_id=user_id,
                                    username=f"idle_{user_id[:8]}", password_hash="$argon2id$v=19$bench")
            key = view_key(user_id)
            sent = time.perf_counter()
            producer.produce(record, user_id)
            while not valkey.exists(key):
                if time.perf_counter() - sent > EVENT_TIMEOUT_S:
                    lost += 1
                    break
                time.sleep(0.0005)
            view_ms.append((time.perf_counter() - sent) * 1000)
            deadline = time.perf_counter() + EVENT_TIMEOUT_S
            while user_id not in seen and time.perf_counter() < deadline:
                time.sleep(0.001)
            consumer_ms.append(((seen.get(user_id) or time.perf_counter()) - sent) * 1000)
            while user_id not in reference_seen and time.perf_counter() < deadline:
                time.sleep(0.001)
            reference_ms.append(((reference_seen.get(user_id) or time.perf_counter()) - sent) * 1000)
            if i + 1 < events:
                time.sleep(rng.uniform(*gap_s))
    finally:
        stop.set()
        thread.join(10)
        reference_thread.join(10)
        producer.close(10)
        valkey.close()
        serde.close()
    return {"view_ms": _percentiles(view_ms), "consumer_ms": _percentiles(consumer_ms),
            "reference_consumer_ms": _percentiles(reference_ms), "lost": lost}


def measure_idle(up: GlasscastUp, seconds: float = IDLE_SECONDS, sparse: int = SPARSE_EVENTS,
                 steady: int = STEADY_EVENTS) -> dict[str, Any]:
    """The idle phase (module docstring) on a platform that is up and has no stream and no viewer."""
    time.sleep(IDLE_SETTLE_S)
    result = idle_cpu(up, seconds)
    result["latency_sparse"] = event_latency(up, sparse, SPARSE_GAP_S)
    result["latency_steady"] = event_latency(up, steady, STEADY_GAP_S)
    return result


def gop_holes(seqs: list[int], reserved: set[int]) -> tuple[list[int], list[int]]:
    """The numbers missing from 0..max(seqs): (lost, only reserved by a killed ingest)."""
    missing = sorted(set(range(max(seqs) + 1)) - set(seqs)) if seqs else []
    return [s for s in missing if s not in reserved], [s for s in missing if s in reserved]


class Scenario:
    """The platform, the publisher, the chat clients and the monitor; ``fault(name)`` plays one kill."""

    def __init__(self, data_dir: Path, wait: Wait, ladder_mode: str = "full") -> None:
        self.data_dir, self.wait, self.ladder_mode = data_dir, wait, ladder_mode
        self.up = GlasscastUp(data_dir, {"GLASSCAST_LADDER_MODE": ladder_mode,
                                         "GLASSCAST_CHAT_USER_MESSAGES_PER_WINDOW": "1000"})
        self.http = httpx.Client(base_url=self.up.url, timeout=10)
        self.push: subprocess.Popen[bytes] | None = None
        self.ffmpeg_log = data_dir.parent / "ffmpeg.log"
        self.channel_id = self.stream_key = self.stream_id = self.sender_ws = self.sender_token = ""
        self.monitor: PlaylistMonitor | None = None
        self.watcher: ChatWatcher | None = None
        self.acked: list[str] = []
        self.reports: dict[str, FaultReport] = {}

    # -- start ---------------------------------------------------------------------------------

    def start(self) -> Scenario:
        if self.up.proc is None:  # the benchmark starts it first, for the idle phase
            self.up.start()
        name, password = f"caster_{uuid.uuid4().hex[:8]}", "correct horse battery"
        r = self.http.post("/v1/users", json={"username": name, "password": password})
        assert r.status_code == 201, r.text
        token = self.http.post("/v1/auth/login", json={"username": name, "password": password}).json()["access_token"]
        r = self.http.post("/v1/channels", headers={"Authorization": f"Bearer {token}"},
                           json={"name": name, "title": "faults live", "category": "Games"})
        assert r.status_code == 201, r.text
        self.channel_id, self.stream_key = str(r.json()["id"]), str(r.json()["stream_key"])
        ws_base = self.up.url.replace("http://", "ws://") + f"/v1/chat/ws?channel={self.channel_id}"
        self.sender_ws, self.sender_token = ws_base, token
        self.watcher = ChatWatcher(ws_base)
        self.watcher.start()
        self._publish()
        self.stream_id = self.wait(self._live_stream_id, 60, "the channel's stream in the directory", every_s=0.2)
        self.monitor = PlaylistMonitor(self.up.url, self.stream_id)
        self.monitor.start()
        first = self.monitor.last()
        self.wait(lambda: self.monitor is not None and self.monitor.last() > max(first, 0), 60,
                  "the live playlist to list and advance", every_s=0.2)
        self.wait(self.watcher.connected.is_set, 30, "the chat watcher to connect", every_s=0.1)
        return self

    def _publish(self) -> None:
        self.push = ffmpeg_push(self.up.rtmp_url, self.stream_key, PUSH_SECONDS, size=SIZE, log=self.ffmpeg_log)

    def _live_streams(self) -> list[str]:
        r = self.http.get("/v1/directory/streams", params={"limit": "100"})
        r.raise_for_status()
        return [str(e["stream_id"]) for e in r.json()["streams"] if e["channel_id"] == self.channel_id]

    def _live_stream_id(self) -> str:
        streams = self._live_streams()
        return streams[0] if len(streams) == 1 else ""

    # -- one fault -----------------------------------------------------------------------------

    def fault(self, name: str) -> FaultReport:
        """kill -9 ``name`` and measure what it cost (see the module docstring)."""
        assert self.monitor is not None and self.watcher is not None
        report = FaultReport(name)
        before = self.up.status()["processes"][name]
        last_before = self.monitor.last()
        killed_at = time.monotonic()
        os.kill(before["pid"], signal.SIGKILL)
        # Chat while it is down: each message is acknowledged (then kept) or refused.
        acks = [_say(self.sender_ws, self.sender_token, f"during {name} {i}", 3) for i in range(2)]
        during = [asyncio.run(a) for a in acks]

        def restarted() -> bool:
            entry = self.up.status()["processes"][name]
            if not entry["alive"] or entry["pid"] == before["pid"]:
                return False
            # The keeper is back once its broker is rehydrated (ready.json of this pid), not at its fork.
            return name != "broker-keeper" or read_ready(self.data_dir, entry["pid"]) is not None

        try:
            self.wait(restarted, RESTART_BOUND_S, f"{name} to be restarted", every_s=0.1)
            report.restart_s = round(time.monotonic() - killed_at, 2)
        except AssertionError as exc:
            report.notes.append(str(exc))
        # Flowing again: two new segments, and for the ingest two past what was listed when the encoder
        # came back (segments of GOPs cut before the kill may still be on their way).
        target = last_before + 2
        if name == "ingest":
            self._reconnect_encoder(report)
            target = max(target, self.monitor.last() + 2)
        try:
            self.wait(lambda: self.monitor is not None and self.monitor.last() >= target, ADVANCE_BOUND_S,
                      f"the live playlist to reach segment {target} after killing {name}", every_s=0.1)
            report.video_gap_s = video_gap(self.monitor.advance_times(), killed_at, target)
        except AssertionError as exc:
            report.notes.append(str(exc))
        report.restarts = self.up.status()["processes"][name]["restarts"] - before["restarts"]
        # Chat once it is back: the watcher listens again, then two more messages.
        try:
            self.wait(self.watcher.connected.is_set, CHAT_BOUND_S, "the chat watcher to reconnect", every_s=0.1)
        except AssertionError as exc:
            report.notes.append(str(exc))
        after_ids: list[str | None] = []
        for i in range(2):
            text = f"after {name} {i}"

            def acked_id(text: str = text) -> str | None:
                return asyncio.run(_say(self.sender_ws, self.sender_token, text, 5))

            try:
                after_ids.append(self.wait(acked_id, CHAT_BOUND_S, f"an ACK after killing {name}", every_s=0.5))
            except AssertionError as exc:
                report.notes.append(str(exc))
        acked = [m for m in during + after_ids if m is not None]
        report.chat_acked, report.chat_refused = len(acked), len(during) + 2 - len(acked)
        self.acked.extend(acked)
        report.chat_lost = self._not_in_history(acked)
        report.chat_unseen = self._unseen(acked)
        report.gops_lost = self.gops_lost(report)
        report.ghost_streams = self._ghosts(report)
        self.reports[name] = report
        return report

    def _reconnect_encoder(self, report: FaultReport) -> None:
        """ffmpeg exits when the ingest's socket drops: publish again with the same key, within the grace."""
        if self.push is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.push.wait(3)  # it exits on the broken pipe; the grace window is running
            if self.push.poll() is None:
                report.notes.append("ffmpeg still ran after the ingest died; killed")
                self.push.kill()
                self.push.wait()
        host, port = "127.0.0.1", self.up.rtmp_port
        try:
            self.wait(lambda: port_open(host, port), RESTART_BOUND_S, "the ingest's RTMP port", every_s=0.1)
        except AssertionError as exc:
            report.notes.append(str(exc))
        self._publish()

    def _history(self) -> set[str]:
        r = self.http.get(f"/v1/chat/{self.channel_id}/messages",
                          params={"around_timestamp": str(int(time.time() * 1000) + 1000), "before": "200",
                                  "after": "0"})
        r.raise_for_status()
        return {str(m["message_id"]) for m in r.json()["messages"]}

    def _not_in_history(self, acked: list[str]) -> list[str]:
        try:
            self.wait(lambda: set(acked) <= self._history(), CHAT_BOUND_S, "acknowledged messages in the history",
                      every_s=0.3, ignore=(httpx.HTTPError,))
            return []
        except AssertionError:
            try:
                history = self._history()
            except httpx.HTTPError:
                history = set()
            return [m for m in acked if m not in history]

    def _unseen(self, acked: list[str]) -> list[str]:
        assert self.watcher is not None
        seen = self.watcher.seen
        try:
            self.wait(lambda: set(acked) <= seen, CHAT_BOUND_S, "acknowledged messages at the watcher", every_s=0.1)
        except AssertionError:
            pass
        return [m for m in acked if m not in seen]

    def gop_seqs(self) -> list[int]:
        """The stream's GOP numbers on ``media.gops`` (`glasscast tail`)."""
        lines = self.up.cli("tail", "media.gops", "--from-beginning", "--json", "--exit-at-end").splitlines()
        events = [json.loads(line) for line in lines]
        return sorted(int(e["value"]["seq"]) for e in events if e["value"]["stream_id"] == self.stream_id)

    def reserved_at_takeover(self) -> set[int]:
        """The GOP numbers a dead ingest had reserved and not stored: each takeover's ``next_gop_seq`` - 1.

        The ingest writes ``next_seq`` ahead of storing a GOP (media/ingest/live.py), so a takeover never
        announces a number twice; a GOP whose frames died with the process leaves its number unused.
        """
        lines = self.up.cli("tail", "stream.lifecycle", "--from-beginning", "--json", "--exit-at-end").splitlines()
        events = [json.loads(line) for line in lines]
        return {int(e["value"]["next_gop_seq"]) - 1 for e in events
                if e["record"].endswith("StreamReconnected") and e["value"]["stream_id"] == self.stream_id}

    def holes(self, seqs: list[int], report: FaultReport | None = None) -> list[int]:
        """Numbers missing from ``seqs``, less those a killed ingest had only reserved (noted in ``report``)."""
        complete = not seqs or len(set(seqs)) == max(seqs) + 1
        lost, unused = gop_holes(seqs, set() if complete else self.reserved_at_takeover())
        if report is not None:
            report.gops_unused.extend(unused)
        return lost

    def gops_lost(self, report: FaultReport) -> list[int]:
        """Holes in the stream's GOP sequence, and GOPs up to the last listed segment whose source segment
        cannot be fetched.  A segment that exists but that the live playlist never listed (it came too late
        for the window) is not lost; it is noted as ``live_skipped``.  The number a killed ingest had
        reserved for a GOP it never stored is not a hole; it is noted as ``gops_unused``."""
        assert self.monitor is not None
        seqs = self.gop_seqs()
        holes = self.holes(seqs, report)
        listed = self.monitor.seen()
        if not listed:
            return holes
        unused = set(report.gops_unused)
        unlisted = [s for s in range(min(listed), max(listed) + 1)
                    if s not in listed and s not in holes and s not in unused]
        report.live_skipped.extend(unlisted)
        missing = [s for s in unlisted if not self._segment_exists(s)]
        return holes + missing

    def _segment_exists(self, seq: int) -> bool:
        def fetched() -> bool:
            token = self.http.get(f"/v1/streams/{self.stream_id}/playback").json()["token"]
            r = self.http.get(f"/hls/{self.stream_id}/source/{seq}.m4s", params={"token": token})
            return r.status_code == 200 and len(r.content) > 0

        try:
            return self.wait(fetched, CHAT_BOUND_S, f"segment {seq} of the source rendition", every_s=0.5,
                             ignore=(httpx.HTTPError, KeyError, ValueError))
        except AssertionError:
            return False

    def _ghosts(self, report: FaultReport) -> list[str]:
        try:
            streams = self.wait(self._live_streams, CHAT_BOUND_S, "the directory", every_s=0.2,
                                ignore=(httpx.HTTPError,))
        except AssertionError as exc:
            report.notes.append(str(exc))
            return []
        if self.stream_id not in streams:
            report.notes.append(f"the stream {self.stream_id} is no longer live: {streams}")
        return [s for s in streams if s != self.stream_id]

    # -- the end -------------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """Stop publishing; once the stream has ended, its VOD's segments against the GOPs."""
        if self.push is not None and self.push.poll() is None:
            self.push.terminate()
            self.push.wait(10)
        token = self.wait(lambda: self.http.get(f"/v1/streams/{self.stream_id}/playback").json().get("token"), 30,
                          "a playback token", every_s=0.2, ignore=(httpx.HTTPError,))

        def vod() -> list[int]:
            r = self.http.get(f"/hls/{self.stream_id}/source/vod.m3u8", params={"token": token})
            if r.status_code != 200:
                return []
            return [int(m.group(1)) for line in r.text.splitlines() if (m := SEGMENT.match(line))]

        segments = self.wait(vod, 60, "the VOD once the publisher stopped", every_s=0.5,
                             ignore=(httpx.HTTPError,))
        seqs = self.gop_seqs()
        with contextlib.suppress(AssertionError):  # what is still missing then is reported
            self.wait(lambda: set(seqs) <= set(vod()), 30, "every GOP in the VOD", every_s=0.5,
                      ignore=(httpx.HTTPError,))
        segments = vod() or segments
        return {"gops": len(seqs), "vod_segments": len(segments),
                "gops_missing_from_vod": sorted(set(seqs) - set(segments)),
                "vod_not_on_log": sorted(set(segments) - set(seqs)),
                "gop_holes": self.holes(seqs),
                "ghost_streams": self._live_streams()}

    def close(self) -> None:
        for thread in (self.monitor, self.watcher):
            if thread is not None:
                thread.stop()
        if self.push is not None and self.push.poll() is None:
            self.push.kill()
            self.push.wait()
        self.http.close()
        self.up.stop(signal.SIGTERM)
        self.up.cleanup()


def ladder_mode() -> str:
    """full on a machine with at least two cores; passthrough otherwise (one core cannot transcode live)."""
    return "full" if (os.cpu_count() or 1) >= 2 else "passthrough"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ladder-mode", choices=("full", "passthrough"), default=ladder_mode())
    parser.add_argument("--only", choices=("idle",), help="run only this phase (idle: CPU and event latency)")
    parser.add_argument("--idle-seconds", type=float, default=IDLE_SECONDS)
    parser.add_argument("--sparse-events", type=int, default=SPARSE_EVENTS)
    parser.add_argument("--steady-events", type=int, default=STEADY_EVENTS)
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="glasscast-faults-") as tmp:
        scenario = Scenario(Path(tmp) / "data", wait_until, args.ladder_mode)
        try:
            scenario.up.start()
            idle = measure_idle(scenario.up, args.idle_seconds, args.sparse_events, args.steady_events)
            if args.only == "idle":
                print(json.dumps({"idle": idle, "wall_s": round(time.monotonic() - started, 1)}))
                return
            scenario.start()
            reports = [scenario.fault(name) for name in FAULTS]
            end = scenario.finish()
        finally:
            scenario.close()
    print(json.dumps({"ladder_mode": args.ladder_mode, "faults": [r.figures() for r in reports],
                      "end": {k: (len(v) if isinstance(v, list) and k not in LISTED else v)
                              for k, v in end.items()},
                      "chat_acked": len(scenario.acked), "idle": idle,
                      "wall_s": round(time.monotonic() - started, 1)}))


if __name__ == "__main__":
    main()

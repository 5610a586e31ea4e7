"""The broker keeper: Tansu, rehydrated at start and archived until it stops.

Run as ``python -m infra.embedded.keeper --data-dir DIR [--port N]
[--parent-pid PID]``, with settings from ``GLASSCAST_*`` variables.  The
supervisor starts it in a new session and without a parent-death signal, so
that a SIGKILL of the supervisor does not kill it: the keeper notices that its
parent is gone (polled every ``PARENT_POLL_S``), as it notices SIGTERM and
SIGINT, and then drains -- archives everything the broker acknowledged,
snapshots the consumer groups' offsets, fsyncs -- before it stops Tansu.

Tansu, too, runs in its own session without a parent-death signal, so a
keeper that is killed takes nothing with it: the keeper restarted in its place
finds the running Tansu in ``tansu.json`` (``tansu_record.py``) and adopts it,
records and offsets included, archiving on from where the archive ends.  Only
when Tansu itself died does a keeper rehydrate a new one while clients are
waiting; then the new Tansu listens on a private port, advertises the public
one, and the keeper holds the public port with a gate (``gate.py``) that lets
no one but the keeper through until rehydration and the offset restore are
complete, and forwards everything after.  The first start of a platform has no
clients yet, so its Tansu takes the public port itself.

Consumer-group offsets live in ``<data_dir>/archive/offsets.json``
(``topics/offsets_archive.py``): snapshotted every
``GLASSCAST_ARCHIVE_OFFSETS_INTERVAL_MS`` and at the drain, and restored right
after rehydration, before ``ready.json`` is written, so no consumer can join
a group before its offsets are back (``infra/embedded/offsets.py``).

Files under ``<data_dir>/broker``:

- ``keeper.lock``: flock held for the keeper's whole life; a new keeper waits
  (up to ``LOCK_WAIT_S``) for a previous one that is still draining.
- ``ready.json``: ``{"bootstrap_servers", "pid", "tansu_pid", "rehydrated"}``,
  written atomically once rehydration (records and group offsets) is complete,
  removed on the way out.  ``rehydrated`` counts topics, partitions, records
  and ``groups`` (consumer groups whose offsets were restored).
  A stale one (from a keeper that was SIGKILLed) is removed at start; readers
  should check ``pid`` (``read_ready``).
- ``tansu.json``: the Tansu serving the directory (``tansu_record.py``).
- ``keeper.log`` and ``tansu.log``.

Exit status: 0 after a clean stop, 1 when Tansu or the archive fails, 2 when
the lock could not be taken.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from infra.embedded.archiver import Archiver
from infra.embedded.gate import Gate
from infra.embedded.offsets import GroupOffsetsKeeper
from infra.embedded.process import pid_alive, port_open
from infra.embedded.rehydrate import rehydrate
from infra.embedded.tansu import TansuBroker
from infra.embedded.tansu_record import TansuRecord, kill_recorded, read_record, record_for, write_record
from infra.errors import InfraError
from infra.log_redaction import RedactingFilter
from infra.settings import Settings, load_settings
from topics.archive import ArchiveWriter
from topics.offsets_archive import OffsetsFile

LOCK_WAIT_S = 60.0
PARENT_POLL_S = 0.1
READY_FILE = "ready.json"
LOCK_FILE = "keeper.lock"


def broker_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "broker"


def keeper_argv(data_dir: Path, port: int | None = None, parent_pid: int | None = None) -> list[str]:
    """The command line that starts a keeper with this interpreter (port None: from settings, 0: free)."""
    argv = [sys.executable, "-m", "infra.embedded.keeper", "--data-dir", str(data_dir)]
    argv += ["--port", str(port)] if port is not None else []
    return argv + (["--parent-pid", str(parent_pid)] if parent_pid else [])


def read_ready(data_dir: Path, pid: int | None = None) -> dict[str, Any] | None:
    """ready.json if a live keeper (``pid``, when given) wrote it, else None."""
    try:
        ready: dict[str, Any] = json.loads((broker_dir(data_dir) / READY_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    if (pid is not None and ready.get("pid") != pid) or not pid_alive(int(ready.get("pid", 0))):
        return None
    return ready


class _Parent:
    """Whether the process that started us is still there."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        # While it is our real parent, a reparenting is the surest sign it died
        # (a dead parent that nobody reaped still answers kill(pid, 0)).
        self.is_ppid = pid == os.getppid()

    def alive(self) -> bool:
        if self.pid is None:
            return True
        if self.is_ppid:
            return os.getppid() == self.pid
        try:
            return Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False


class Keeper:
    """One keeper run: lock, start, rehydrate, announce, archive, drain, stop."""

    def __init__(self, settings: Settings, port: int, parent_pid: int | None, log: logging.Logger) -> None:
        self.settings = settings
        self.dir = broker_dir(settings.data_dir)
        self.port = port
        self.parent = _Parent(parent_pid)
        self.log = log
        self.stop_reason = ""
        self.report: dict[str, float] = {}  # what was brought back, for ready.json

    def request_stop(self, signum: int, _frame: FrameType | None = None) -> None:
        self.stop_reason = self.stop_reason or signal.Signals(signum).name

    def should_stop(self) -> bool:
        if not self.stop_reason and not self.parent.alive():
            self.stop_reason = f"parent {self.parent.pid} exited"
        return bool(self.stop_reason)

    def lock(self) -> int | None:
        """Take the keeper lock, waiting for a previous keeper; the fd, or None on timeout."""
        fd = os.open(self.dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline or self.stop_reason:
                    os.close(fd)
                    return None
                time.sleep(0.05)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd

    def run(self) -> int:
        lock_fd = self.lock()
        if lock_fd is None:
            self.log.error("keeper: %s held by another keeper for %.0f s; giving up", self.dir / LOCK_FILE,
                           LOCK_WAIT_S)
            return 2
        ready_path = self.dir / READY_FILE
        ready_path.unlink(missing_ok=True)
        self.archiver: Archiver | None = None
        self.offsets: GroupOffsetsKeeper | None = None
        self.gate: Gate | None = None
        self.tansu: TansuBroker | None = None  # when this keeper started it (else it was adopted)
        status = 1
        try:
            record = self._bring_up_broker()
            self._write_ready(ready_path, record)
            while not self.should_stop():
                if not record.running():
                    raise InfraError(f"tansu (pid {record.pid}) exited")
                if self.archiver is not None:
                    self.archiver.poll(PARENT_POLL_S / 2)
                if self.offsets is not None:
                    self.offsets.poll()
                if self.archiver is None:
                    time.sleep(PARENT_POLL_S)
            self.log.info("keeper: stopping (%s)", self.stop_reason)
            drained = self.archiver.drain(self.settings.archive.drain_timeout_s) if self.archiver else True
            if self.offsets is not None:  # after the consumers' last commits, which the drain gave time to land
                self.offsets.snapshot()
                self.log.info("keeper: offsets of %d consumer groups archived", len(self.offsets.offsets))
            status = 0 if drained else 1
        except Exception:
            self.log.exception("keeper: failed")
        finally:
            ready_path.unlink(missing_ok=True)
            try:
                if self.archiver is not None:
                    self.archiver.close()  # flushes what was read, even after a failure
            except Exception:
                self.log.exception("keeper: closing the archive failed")
                status = 1
            if self.gate is not None:
                self.gate.stop()
            self._stop_tansu()
            self.log.info("keeper: tansu stopped; exit %d", status)
            os.close(lock_fd)
        return status

    def _bring_up_broker(self) -> TansuRecord:
        """Adopt the Tansu a killed keeper left running, or start one and rehydrate it; the record of it."""
        host = "127.0.0.1"
        found = read_record(self.dir)
        if found is not None and found.rehydrated and found.running() and port_open(host, found.port):
            self.log.info("keeper: adopting tansu pid %d on port %d (left by a previous keeper)", found.pid,
                          found.port)
            if found.advertised_port != found.port:
                self.gate = Gate(host, found.advertised_port, found.port, self.log)
                self.gate.start()
                self.gate.open()
            self._start_archiving(f"{host}:{found.port}", restore=False)
            self.report = {"adopted": 1.0}
            return found
        # A Tansu that died, or whose keeper died while rehydrating it: clients may be
        # waiting on the public port, so the new one stays behind a closed gate until rehydrated.
        gated = found is not None
        if found is not None and kill_recorded(self.dir):
            self.log.warning("keeper: killed tansu pid %d, left half rehydrated or not answering", found.pid)
        if gated:
            self.tansu = TansuBroker(self.dir / "tansu.log", port=0, advertised_port=self.port,
                                     parent_death_signal=None, new_session=True)
            self.gate = Gate(host, self.port, self.tansu.port, self.log)
            self.gate.start()
        else:
            self.tansu = TansuBroker(self.dir / "tansu.log", port=self.port, parent_death_signal=None,
                                     new_session=True)
        self.tansu.start()
        pid = self.tansu.process.pid
        assert pid is not None
        write_record(self.dir, record_for(pid, self.tansu.port, self.tansu.advertised_port, rehydrated=False))
        self.log.info("keeper: tansu pid %s listening on %s%s", pid, self.tansu.bootstrap_servers,
                      f", behind a closed gate on port {self.port}" if gated else "")
        self._start_archiving(self.tansu.bootstrap_servers, restore=True)
        record = record_for(pid, self.tansu.port, self.tansu.advertised_port, rehydrated=True)
        write_record(self.dir, record)
        if self.gate is not None:
            self.gate.open()
        return record

    def _start_archiving(self, bootstrap_servers: str, restore: bool) -> None:
        """Rehydrate (when ``restore``) and restore group offsets, then start the archiver and offset snapshots."""
        if not self.settings.archive.enabled:
            return
        archive = ArchiveWriter(self.settings.data_dir / "archive", fsync=self.settings.archive.fsync)
        self.offsets = GroupOffsetsKeeper(bootstrap_servers,
                                          OffsetsFile(archive.root, fsync=self.settings.archive.fsync),
                                          self.settings.archive.offsets_interval_ms / 1000, self.log)
        if restore:
            rehydrated = rehydrate(bootstrap_servers, archive, self.settings.kafka, logger=self.log)
            self.report = {**rehydrated.as_dict(), "groups": len(self.offsets.restore(rehydrated.ends))}
        self.archiver = Archiver(bootstrap_servers, archive, self.settings.kafka, self.settings.archive, self.log)

    def _stop_tansu(self) -> None:
        """Stop Tansu at once: after the drain its memory holds nothing the archive lacks.

        On SIGTERM it waits about 5 s for connected clients to leave (measured).
        """
        proc = self.tansu.process.proc if self.tansu is not None else None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        kill_recorded(self.dir)  # an adopted one; and the record goes either way

    def _write_ready(self, path: Path, record: TansuRecord) -> None:
        doc = {"bootstrap_servers": f"127.0.0.1:{record.advertised_port}", "pid": os.getpid(),
               "tansu_pid": record.pid, "rehydrated": self.report}
        tmp = path.with_name(f".{READY_FILE}.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)  # atomic, so a reader never sees half a file
        self.log.info("keeper: ready (%s)", doc["rehydrated"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.embedded.keeper", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, help="data directory (default: GLASSCAST_DATA_DIR)")
    parser.add_argument("--port", type=int, default=None, help="broker port (default: GLASSCAST_KAFKA_BROKER_PORT)")
    parser.add_argument("--parent-pid", type=int, default=None, help="stop when this process exits")
    args = parser.parse_args(argv)
    overrides = {"data_dir": args.data_dir} if args.data_dir else {}
    settings = load_settings(os.environ, **overrides)
    directory = broker_dir(settings.data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=directory / "keeper.log", level=settings.log.level.upper(),
                        format="%(asctime)s %(process)d %(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:  # no credential (the doorbell's Valkey password) in its log
        handler.addFilter(RedactingFilter())
    log = logging.getLogger("glasscast.keeper")
    port = args.port if args.port is not None else settings.kafka.broker_port
    keeper = Keeper(settings, port, args.parent_pid, log)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, keeper.request_stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closing terminal is not a reason to stop
    log.info("keeper: start pid %d, data dir %s, parent %s", os.getpid(), settings.data_dir, args.parent_pid)
    return keeper.run()


if __name__ == "__main__":
    sys.exit(main())

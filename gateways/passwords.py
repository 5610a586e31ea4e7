"""Password hashing off the event loop, in a small pool of its own with a bounded queue.

argon2id (RFC 9106's low-memory profile: 64 MiB, three passes) costs a core
about 100 ms per hash by design.  Run in asyncio's default pool, a burst of
logins filled that pool and every HLS segment read and page read queued
behind it (issue 13).  So hashing gets a dedicated ``ThreadPoolExecutor`` of
``GLASSCAST_AUTH_HASH_WORKERS`` threads (argon2-cffi releases the GIL while it
hashes, so threads use the cores; a process pool would only add pickling and
start-up).  At most ``GLASSCAST_AUTH_HASH_QUEUE_MAX`` jobs wait behind the
running ones; one more is refused at once with ``Busy`` (a 503 with
Retry-After), so a flood costs the flooder, not the platform.

No timing oracle: a login for a name nobody has verifies against a dummy hash
made once at start-up with the same parameters, so it does the same argon2
work as one for a real account (``verify``).  ``counts`` records which hash
each verification used, for the tests that check that structurally.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from gateways.auth import hash_password, verify_password
from gateways.errors import Unavailable
from gateways.passwords_store import CredentialStore
from infra.settings import AuthSettings

T = TypeVar("T")
RETRY_AFTER_S = 1  # a queue slot frees within a hash or two
# The hashing threads run at a lower scheduling priority (nice +10, Linux: per thread), so on a machine whose
# cores they fill, the event loop and the media reads still get the CPU first (CFS weight 110 against 1024).
HASH_THREAD_NICENESS = 10


def _lower_priority() -> None:
    """Executor initializer: lower this thread's priority (a no-op where that is not possible)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_THREAD_NICENESS)
    except (AttributeError, OSError):
        pass


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """``callback`` on ``loop``, from any thread; nothing once the loop is closed (the gateway is stopping)."""
    try:
        loop.call_soon_threadsafe(callback)
    except RuntimeError:
        pass


class Busy(Unavailable):
    """The hashing queue is full: answered 503 at once rather than queued."""

    def __init__(self) -> None:
        super().__init__("too many sign-ins are being checked right now; try again shortly",
                         reason="auth_busy", retry_after_s=RETRY_AFTER_S)


@dataclass
class VerifyCounts:
    """How many verifications ran, by which hash (what the tests look at; never a secret)."""

    account: int = 0  # against the account's own hash
    dummy: int = 0  # against the start-up dummy: no such account, or it has no credential
    peak_pending: int = 0  # the most jobs ever running or queued at once


@dataclass(frozen=True)
class Verdict:
    """What a login's verification found: whether it matched, and against which hash."""

    ok: bool
    legacy: bool = False  # matched the user view's legacy hash: the store has none yet (``adopt`` it)
    against_dummy: bool = False


class PasswordPool:
    """A bounded ``ThreadPoolExecutor`` for argon2 work, with the credential store it reads and writes."""

    def __init__(self, auth: AuthSettings, store: CredentialStore) -> None:
        self.store = store
        self.capacity = auth.hash_workers + auth.hash_queue_max  # running + waiting
        self.pending = 0
        self.counts = VerifyCounts()
        self.dummy_hash = ""
        self._executor = ThreadPoolExecutor(max_workers=auth.hash_workers, thread_name_prefix="argon2",
                                            initializer=_lower_priority)

    async def start(self) -> None:
        """Make the dummy hash (one argon2 hash, so with the same parameters as every other)."""
        self.dummy_hash = await self._run(hash_password, secrets.token_urlsafe(24))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    @property
    def full(self) -> bool:
        return self.pending >= self.capacity

    def check_room(self) -> None:
        """Refuse now (``Busy``) when the queue is full, before any other work is spent on the request."""
        if self.full:
            raise Busy()

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        # Counted on the event loop, so the check and the increment cannot interleave with another request's.
        self.check_room()
        loop = asyncio.get_running_loop()
        job = self._executor.submit(fn, *args)
        self.pending += 1
        self.counts.peak_pending = max(self.counts.peak_pending, self.pending)
        # The slot is given back when the job is over, not when its request is: a client that hangs up
        # (its handler cancelled) must not free a slot whose hash is still running.
        job.add_done_callback(lambda _: _call_soon(loop, self._job_done))
        return await asyncio.wrap_future(job)

    def _job_done(self) -> None:
        self.pending -= 1

    async def register(self, user_id: str, password: str) -> None:
        """Hash ``password`` and store it as ``user_id``'s credential (``Busy`` when the queue is full)."""
        await self._run(self._register, user_id, password)

    async def verify(self, user_id: str | None, password: str, legacy_hash: str | None = None) -> Verdict:
        """Check ``password`` for ``user_id`` (None: no such account), always with one argon2 verification.

        ``legacy_hash`` is the hash an account registered before the credential
        store carries in its user view; it is used when the store has none.
        """
        verdict = await self._run(self._verify, user_id, password, legacy_hash)
        if verdict.against_dummy:
            self.counts.dummy += 1
        else:
            self.counts.account += 1
        return verdict

    async def adopt(self, user_id: str, password_hash: str) -> None:
        """Store a legacy account's hash in the credential store (it matched; no new hash is needed)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self.store.put, user_id, password_hash)

    async def forget(self, user_id: str) -> None:
        """Drop a credential whose sign-up did not complete (not counted against the queue: it must run)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self.store.delete, user_id)

    def _register(self, user_id: str, password: str) -> None:
        self.store.put(user_id, hash_password(password))

    def _verify(self, user_id: str | None, password: str, legacy_hash: str | None) -> Verdict:
        # The same steps whether or not the account exists: one store lookup, one argon2 verification.
        stored = self.store.get(user_id or "")
        password_hash = (stored or legacy_hash) if user_id is not None else None
        if not password_hash:
            verify_password(self.dummy_hash, password)
            return Verdict(False, against_dummy=True)
        return Verdict(verify_password(password_hash, password), legacy=stored is None)

"""Tie a process's life to its parent's: ``PR_SET_PDEATHSIG`` (prctl(2)).

The media worker's transcode pool (a forkserver and its pool processes,
about 250 MB) must not outlive a worker killed with SIGKILL, which runs no
cleanup.  The kernel sends the death signal when the parent *thread* that
made the process exits, so the forkserver is started from the worker's main
thread (its first use is on the event loop).  The supervisor's children get
the same call as their ``preexec_fn`` (``infra/embedded/process.py``).
"""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL, ancestor: int | None = None) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies; exit now if it already has.

    A process can die before its child arms the signal (a pool process takes
    a moment to start), and then nobody would send it: so after arming, the
    child exits if its parent has changed (it was orphaned) or if
    ``ancestor`` (the worker, for a pool process whose parent is the
    forkserver) is gone already.
    """
    parent = os.getppid()
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, sig) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent or parent == 1 or (ancestor is not None and gone(ancestor)):
        os._exit(1)


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie not yet reaped by its parent counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    return stat.rsplit(b")", 1)[-1].split()[:1] in ([b"Z"], [b"X"])

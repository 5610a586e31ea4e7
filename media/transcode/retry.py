"""What a media worker does when a GOP fails: wait for a dependency, or give up on the GOP.

A GOP is never skipped because a dependency failed for a while: Valkey, the
broker, the blob stores or the transcode pool coming back is only a matter
of time, so those failures are retried with capped exponential back-off for
as long as they last, and the worker commits nothing past that GOP meanwhile
(media/transcode/offsets.py).  Only a failure of the GOP itself ends its
retries, as before:

* ``BlobNotFound``: the GOP's blob is gone (retention, or another
  deployment's store).  The ingest stores a blob before it announces it, so
  this does not heal: skipped at once.
* ``InvalidBlobKey``, ``BlobError``: the ref or key is malformed, or the
  store cannot hold that key: skipped at once.
* Anything the transcode job raises (a corrupt or undecodable GOP raises
  ``ValueError``, ``av.error.FFmpegError``), a ``SerializationError`` (a
  record that does not fit its schema: a bug), and any other error nobody
  classified: ``GOP_ATTEMPTS`` tries, then skipped (today's behaviour).
* The pool breaking (a pool process died) is transient, up to
  ``POOL_BREAKS`` times for one GOP: a GOP that kills its pool process every
  time is what broke it, and is then treated as a failure of its own.

Transient: redis-py's connection-class errors (refused, reset, timeout,
LOADING, read-only, OOM, cluster down), ``DeliveryError`` and
``KafkaException`` (the broker did not acknowledge or cannot be reached),
``OSError`` outside the transcode job (disk full, I/O error, timeouts: the
builtin ``TimeoutError`` is an ``OSError``) and ``ViewersUnknown`` (the
ladder's audience could not be read and was never read before).

Pure: no clock and no I/O; the worker sleeps and counts.
"""

from __future__ import annotations

import enum
import random
from concurrent.futures.process import BrokenProcessPool

from confluent_kafka import KafkaException

from media.blob import BlobError
from topics.errors import DeliveryError
from views.errors import VALKEY_UNAVAILABLE

GOP_ATTEMPTS = 3  # tries of a GOP whose own failure is not known to be permanent (a corrupt blob)
POOL_BREAKS = 5  # pool deaths during one GOP before the GOP is blamed for them
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0
ATTEMPT_TIMEOUT_S = 120.0  # one attempt at a GOP (plan, fetch, transcode, store, announce), then retried



class ViewersUnknown(Exception):
    """The ladder needs the audience, Valkey did not answer, and this worker never read it before."""


class TranscodeFailed(Exception):
    """The transcode job raised: a failure of the GOP itself (its blob does not decode)."""


class Verdict(enum.Enum):
    RETRY = "retry"  # a dependency failed: try again after a back-off, however often it takes
    AGAIN = "again"  # the GOP failed: try again while it has attempts left
    SKIP = "skip"  # the GOP can never succeed: skip it now


def verdict(exc: BaseException) -> Verdict:
    """How a failed attempt at a GOP is treated (the module docstring says why)."""
    if isinstance(exc, BlobError):  # BlobNotFound, InvalidBlobKey, a key the store cannot hold
        return Verdict.SKIP
    if isinstance(exc, TranscodeFailed):
        return Verdict.AGAIN
    if isinstance(exc, BrokenProcessPool):
        return Verdict.RETRY
    if isinstance(exc, (*VALKEY_UNAVAILABLE, ViewersUnknown, DeliveryError, KafkaException, OSError)):
        return Verdict.RETRY
    return Verdict.AGAIN


def backoff_s(failures: int, rng: random.Random | None = None) -> float:
    """The wait before try ``failures + 1``: doubling from ``BACKOFF_FIRST_S``, capped, with jitter."""
    base = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2.0 ** min(30, max(0, failures - 1)))
    draw: float = rng.random() if rng is not None else random.random()
    return base * (0.5 + 0.5 * draw)

"""The read models' errors: which Valkey failures mean "not now" rather than "wrong".

``VALKEY_UNAVAILABLE`` is the one list of redis-py errors that say the view
store cannot answer for now and a retry may succeed.  The gateway turns them
into 503 with a reason (gateways/errors.py), the media worker retries the GOP
(media/transcode/retry.py); any other redis error is a bug and stays one.
"""

from __future__ import annotations

import redis.exceptions as redis_errors

VALKEY_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis_errors.ConnectionError,  # refused, reset, pool exhausted, auth; BusyLoadingError (LOADING) too
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,  # a replica that has not been promoted yet
    redis_errors.OutOfMemoryError,
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,  # MasterDownError too
)

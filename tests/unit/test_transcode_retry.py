"""Which GOP failures a media worker waits out and which end the GOP (media/transcode/retry.py)."""

from __future__ import annotations

import random
from concurrent.futures.process import BrokenProcessPool

import pytest
import redis.exceptions as redis_errors
from confluent_kafka import KafkaError, KafkaException

from media.blob import BlobError, BlobNotFound, InvalidBlobKey
from media.transcode.retry import (
    BACKOFF_MAX_S,
    TranscodeFailed,
    Verdict,
    ViewersUnknown,
    backoff_s,
    verdict,
)
from topics.errors import DeliveryError, SerializationError


@pytest.mark.parametrize("exc", [
    redis_errors.ConnectionError("refused"), redis_errors.TimeoutError("slow"),
    redis_errors.BusyLoadingError("LOADING"), redis_errors.ReadOnlyError("READONLY"),
    redis_errors.MasterDownError("MASTERDOWN"),
    DeliveryError("Local: Message timed out"), KafkaException(KafkaError(KafkaError._TRANSPORT)),
    OSError(28, "No space left on device"), TimeoutError("attempt"), PermissionError("origin"),
    ViewersUnknown("audience"), BrokenProcessPool("a pool process died"),
])
def test_a_dependency_failing_is_waited_out(exc: Exception) -> None:
    assert verdict(exc) is Verdict.RETRY


@pytest.mark.parametrize("exc", [BlobNotFound("file:gops/x/1.flv"), InvalidBlobKey("../x"), BlobError("a prefix")])
def test_a_missing_or_malformed_blob_is_skipped_at_once(exc: Exception) -> None:
    assert verdict(exc) is Verdict.SKIP


@pytest.mark.parametrize("exc", [TranscodeFailed("InvalidDataError: corrupt"), SerializationError("bug"),
                                 redis_errors.ResponseError("WRONGTYPE"), RuntimeError("anything else")])
def test_a_failure_of_the_gop_itself_has_a_few_attempts(exc: Exception) -> None:
    assert verdict(exc) is Verdict.AGAIN


def test_an_os_error_inside_the_transcode_job_is_the_gops() -> None:
    # The worker wraps whatever the job raises, OSError included: a corrupt GOP never loops forever.
    assert verdict(TranscodeFailed("OSError: [Errno 5]")) is Verdict.AGAIN


def test_backoff_doubles_is_capped_and_jittered() -> None:
    rng = random.Random(7)
    waits = [backoff_s(n, rng) for n in range(1, 40)]
    assert all(0 < w <= BACKOFF_MAX_S for w in waits)
    assert max(waits[:2]) < 0.5 and min(waits[10:]) >= BACKOFF_MAX_S / 2
    assert len({round(w, 6) for w in waits[10:]}) > 1  # jitter: workers do not retry in lockstep

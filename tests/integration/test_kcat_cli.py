"""`glasscast kcat`: Debian's kcat reads the embedded broker (README, "Looking at the log").

The system's kcat (apt) is run through the CLI, which gives it confluent-kafka's
newer librdkafka and the platform's broker; it must list the catalogue's topics
and print the keys and framed values of records produced through ``topics/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.kcat import find_kcat
from infra.settings import Settings, child_env
from schemas.records.channel import ChannelCreated
from topics.admin import ensure_topics
from topics.runtime import make_producer

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def glasscast_kcat(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infra.cli", "kcat", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=child_env(settings, os.environ))


def test_kcat_lists_and_reads_the_embedded_broker(settings_factory: Callable[..., Settings]) -> None:
    assert find_kcat() is not None, "kcat is not installed (make test installs it with apt-get)"
    settings = settings_factory()
    ensure_topics(settings.kafka)
    channel_id = str(uuid.uuid4())
    producer = make_producer(settings)
    try:
        producer.send_sync(ChannelCreated(
            occurred_at=1_700_000_000_000, channel_id=channel_id, owner_user_id=str(uuid.uuid4()),
            name=f"kcat_{channel_id[:8]}", title="kcat", category=None, tags=(),
            stream_key_hash="0" * 64), channel_id)
    finally:
        producer.close()
        producer.serde.close()

    listed = glasscast_kcat(settings, "-L")
    assert listed.returncode == 0, listed.stderr
    assert 'topic "channels"' in listed.stdout and 'topic "stream.lifecycle"' in listed.stdout

    read = glasscast_kcat(settings, "-C", "-t", "channels", "-o", "beginning", "-e", "-q", "-f", "%k %S\\n")
    assert read.returncode == 0, read.stderr
    sizes = {line.split()[0]: int(line.split()[1]) for line in read.stdout.splitlines() if line.strip()}
    assert channel_id in sizes and sizes[channel_id] > 5  # magic byte + schema id + an Avro body

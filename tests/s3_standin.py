"""A local S3-compatible server for tests: a STAND-IN for S3 and MinIO, not either of them.

Neither AWS nor MinIO can run here (no Docker, no network), so the blob store's
S3 code is exercised against moto's server mode (``moto.server.ThreadedMotoServer``):
a real HTTP server on 127.0.0.1 and a free port that speaks the S3 REST API,
which boto3 reaches exactly as it would reach MinIO (``endpoint_url``,
path-style addressing, signed requests).  It keeps objects in memory and
accepts any credentials; what it cannot show (consistency under load, real
latency, IAM) is for the contract suite's real-endpoint run
(``CONTRACT_S3_BUCKET``, tests/contract/test_blob_store.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from infra.embedded.process import free_port, port_open
from infra.settings import Settings
from media.blob_s3 import make_client
from tests.waiting import eventually

REGION = "us-east-1"
# moto accepts any signed request; these exist only for boto3 to sign with.
ACCESS_KEY, SECRET_KEY = "standin-access-key", "standin-secret-key"


@dataclass(frozen=True)
class S3StandIn:
    """Where the stand-in listens."""

    endpoint_url: str
    region: str = REGION

    def client(self) -> Any:
        """A boto3 client on the stand-in (credentials from the environment ``use_credentials`` set)."""
        return make_client(self.endpoint_url, self.region)

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def settings(self, base: Settings, bucket: str, prefix: str = "") -> Settings:
        """``base`` with its blob stores on this server."""
        return base.with_section("blob", backend="s3", bucket=bucket, prefix=prefix,
                                 endpoint_url=self.endpoint_url, region=self.region)


@contextlib.contextmanager
def running_standin() -> Iterator[S3StandIn]:
    """moto's S3 server on 127.0.0.1 and a free port, stopped on exit."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        eventually(lambda: port_open("127.0.0.1", port), 10, f"the S3 stand-in on port {port}", every_s=0.05)
        yield S3StandIn(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


def use_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials for boto3's standard chain (this process and the children it starts)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)

"""``S3BlobStore``: the blob store on S3 or an S3-compatible server (MinIO).

The same ``BlobStore`` as ``FileBlobStore`` (media/blob.py), call for call:
``PutObject`` (atomic: a reader sees the whole object or none), ``GetObject``
(the body and ``LastModified``, from one response), ``HeadObject``,
``DeleteObject``, the ``ListObjectsV2`` paginator (keys come back in UTF-8
binary order, which is key order since keys are ASCII) and ``DeleteObjects``
in batches of ``DELETE_BATCH`` (the API's limit per request).

One bucket holds every area; a store's keys live under its ``prefix``
(``<settings prefix><area>/``, media/blob_stores.py), and its refs are
``s3:<key>`` without the prefix, so an event says which kind of store resolves
it and stays valid if the prefix moves.  Keys follow the file store's rules
(``validate_key``), so a key is the same object on either store.

Calls block (boto3 is synchronous; its client is thread-safe): async code runs
them in a thread, as it does for the file store.  Credentials come from boto3's
standard chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, profiles,
instance roles); this module never reads, stores or prints one.  botocore's
errors are mapped to ours in one place (``_s3_errors``): a missing key is
``BlobNotFound``, anything else a ``BlobError`` naming the bucket and the key.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from media.blob import BlobError, BlobInfo, BlobNotFound, InvalidBlobKey, StoredBlob, validate_key

REF_SCHEME = "s3:"
DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys per request
_MISSING = {"NoSuchKey", "404", "NotFound"}
# Threads of one process share the client: one pooled connection per concurrent call.
MAX_POOL_CONNECTIONS = 32
CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 5.0, 30.0


def make_client(endpoint_url: str = "", region: str = "") -> Any:
    """An S3 client from boto3's standard credential chain; path-style addressing for a named endpoint."""
    config = Config(
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
        max_pool_connections=MAX_POOL_CONNECTIONS,
        # MinIO and most S3-compatible servers want /bucket/key rather than bucket.host names.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
    )
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url or None, region_name=region or None, config=config)


def store_prefix(prefix: str) -> str:
    """``prefix`` if it is "" or a folder of valid key segments ending with "/", else raise."""
    if prefix:
        _folder(prefix)
    return prefix


class S3BlobStore:
    """Blobs as objects in ``bucket`` under ``prefix``; refs are ``s3:<key>``."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        if not bucket:
            raise BlobError("an S3 blob store needs a bucket (GLASSCAST_BLOB_BUCKET)")
        self.client = client
        self.bucket = bucket
        self.prefix = store_prefix(prefix)

    def __repr__(self) -> str:
        return f"S3BlobStore(s3://{self.bucket}/{self.prefix})"

    def ref(self, key: str) -> str:
        """The ref ``put`` returns for ``key``."""
        return REF_SCHEME + validate_key(key)

    def key(self, ref: str) -> str:
        """The key inside an ``s3:`` ref."""
        if not isinstance(ref, str) or not ref.startswith(REF_SCHEME):
            raise InvalidBlobKey(f"{ref!r} is not an S3 blob ref (expected 's3:<key>')")
        return validate_key(ref[len(REF_SCHEME):])

    def put(self, key: str, data: bytes) -> str:
        name = self.prefix + validate_key(key)
        with self._s3_errors(name):
            self.client.put_object(Bucket=self.bucket, Key=name, Body=data)
        return self.ref(key)

    def get(self, ref: str) -> bytes:
        return self.get_object(ref).data

    def get_object(self, ref: str) -> StoredBlob:
        """The bytes behind ``ref`` with their ``LastModified``, both from one GetObject."""
        name = self.prefix + self.key(ref)
        with self._s3_errors(name, ref):
            answer = self.client.get_object(Bucket=self.bucket, Key=name)
            with contextlib.closing(answer["Body"]) as body:
                data: bytes = body.read()
        return StoredBlob(data, answer["LastModified"].timestamp())

    def exists(self, ref: str) -> bool:
        name = self.prefix + self.key(ref)
        try:
            with self._s3_errors(name, ref):
                self.client.head_object(Bucket=self.bucket, Key=name)
        except BlobNotFound:
            return False
        return True

    def delete(self, ref: str) -> None:
        name = self.prefix + self.key(ref)
        with self._s3_errors(name):
            self.client.delete_object(Bucket=self.bucket, Key=name)  # S3 answers 204 for a missing key too

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        name = self.prefix + _folder(prefix)
        cut = len(self.prefix)
        with self._s3_errors(name):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=name)
            for page in pages:
                for obj in page.get("Contents", ()):
                    yield BlobInfo(obj["Key"][cut:], int(obj["Size"]), obj["LastModified"].timestamp())

    def delete_prefix(self, prefix: str, keep: frozenset[str] = frozenset()) -> int:
        doomed = [self.prefix + blob.key for blob in self.list(prefix) if blob.key not in keep]
        for start in range(0, len(doomed), DELETE_BATCH):
            batch = doomed[start:start + DELETE_BATCH]
            with self._s3_errors(batch[0]):
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            errors = answer.get("Errors") or []
            if errors:
                first = errors[0]
                raise BlobError(f"s3://{self.bucket}: {len(errors)} of {len(batch)} deletes under {prefix!r} "
                                f"failed, e.g. {first.get('Key')!r}: {first.get('Code')} {first.get('Message')}")
        return len(doomed)

    @contextlib.contextmanager
    def _s3_errors(self, name: str, ref: str | None = None) -> Iterator[None]:
        """botocore's errors as ours: a missing key (when reading ``ref``) is BlobNotFound."""
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if ref is not None and code in _MISSING:
                raise BlobNotFound(f"no blob at {ref!r} in s3://{self.bucket}/{self.prefix}") from None
            raise BlobError(f"s3://{self.bucket}/{name}: {code or 'error'} {error.get('Message', '')}".rstrip()) \
                from exc
        except BotoCoreError as exc:
            raise BlobError(f"s3://{self.bucket}/{name}: {exc}") from exc


def _folder(prefix: str) -> str:
    """A listing prefix: whole path segments ending with "/", as the file store accepts."""
    if not prefix.endswith("/"):
        raise InvalidBlobKey(f"prefix {prefix!r} must end with '/' (a folder)")
    validate_key(prefix[:-1])
    return prefix

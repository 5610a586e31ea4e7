"""Contract suite for the blob store: the same checks against every store the platform can use.

* ``file``: ``FileBlobStore`` under a temporary data directory; always runs.
* ``s3-standin``: ``S3BlobStore`` against moto's S3 server mode on 127.0.0.1,
  which this module starts itself.  It is a STAND-IN for S3/MinIO
  (tests/s3_standin.py says what it does not show); always runs.
* ``s3``: ``S3BlobStore`` against a real S3 or MinIO when ``CONTRACT_S3_BUCKET``
  names a bucket that exists (``CONTRACT_S3_ENDPOINT``: the endpoint URL, empty
  for AWS; ``CONTRACT_S3_REGION``; credentials from boto3's standard chain,
  ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or ``AWS_PROFILE``).  Each test
  works under a prefix of its own and deletes it afterwards.  Skipped, with the
  reason printed, when the variable is not set.  With the compose file's MinIO:
  ``CONTRACT_S3_ENDPOINT=http://localhost:9000 CONTRACT_S3_BUCKET=glasscast``
  and its root user and password as the AWS_* pair.

Every store is opened the way the platform opens it: ``open_store(settings, area)``.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import media.blob_s3
from infra.settings import Settings
from media.blob import BlobInfo, BlobNotFound, BlobStore, InvalidBlobKey
from media.blob_stores import open_store
from tests.s3_standin import S3StandIn, running_standin, use_credentials

BACKENDS = ["file", "s3-standin", "s3"]
BAD_KEYS = ["", "/abs/key", "../up", "a/../b", "a//b", "a/./b", ".hidden", "sp ace", "a/b/", "x" * 1025]


@dataclass
class Stores:
    """The two areas of one platform (``blobs`` and ``origin``) on one backend."""

    backend: str
    blobs: BlobStore
    origin: BlobStore

    @property
    def scheme(self) -> str:
        return "file:" if self.backend == "file" else "s3:"

    @property
    def foreign(self) -> str:
        """A ref of the other kind of store."""
        return "s3:gops/a.flv" if self.backend == "file" else "file:gops/a.flv"


@pytest.fixture(scope="module")
def standin() -> Iterator[S3StandIn]:
    with running_standin() as server:
        yield server


@pytest.fixture(scope="module")
def standin_bucket(standin: S3StandIn) -> str:
    with pytest.MonkeyPatch.context() as mp:
        use_credentials(mp)
        return standin.create_bucket(f"contract-{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=BACKENDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stores]:
    base = Settings(data_dir=tmp_path / "data")
    prefix = f"contract-{uuid.uuid4().hex[:12]}/"  # a platform of its own in the shared bucket
    if request.param == "file":
        settings = base
    elif request.param == "s3-standin":
        use_credentials(monkeypatch)
        standin: S3StandIn = request.getfixturevalue("standin")
        settings = standin.settings(base, request.getfixturevalue("standin_bucket"), prefix)
    else:
        bucket = os.environ.get("CONTRACT_S3_BUCKET", "")
        if not bucket:
            pytest.skip("no real S3 endpoint: set CONTRACT_S3_BUCKET (and CONTRACT_S3_ENDPOINT for MinIO, "
                        "CONTRACT_S3_REGION, AWS_* credentials) to run the blob store contract against it")
        settings = base.with_section("blob", backend="s3", bucket=bucket, prefix=prefix,
                                     endpoint_url=os.environ.get("CONTRACT_S3_ENDPOINT", ""),
                                     region=os.environ.get("CONTRACT_S3_REGION", ""))
    found = Stores(request.param, open_store(settings, "blobs"), open_store(settings, "origin"))
    yield found
    for store in (found.blobs, found.origin):
        for folder in ("gops/", "hls/", "avatars/", "thumbs/"):
            store.delete_prefix(folder)


def keys(listing: Iterator[BlobInfo]) -> list[str]:
    return [b.key for b in listing]


def test_put_get_exists_delete(stores: Stores) -> None:
    store = stores.blobs
    ref = store.put("gops/s-1/00000001.flv", b"FLV\x01gop")
    assert ref == f"{stores.scheme}gops/s-1/00000001.flv" == store.ref("gops/s-1/00000001.flv")
    assert store.key(ref) == "gops/s-1/00000001.flv"
    assert store.get(ref) == b"FLV\x01gop" and store.exists(ref)
    store.delete(ref)
    assert not store.exists(ref)
    store.delete(ref)  # deleting a missing blob is not an error


def test_empty_and_large_blobs_round_trip(stores: Stores) -> None:
    big = os.urandom(3 * 1024 * 1024 + 17)
    assert stores.origin.get(stores.origin.put("hls/s/source/00000000.m4s", big)) == big
    assert stores.origin.get(stores.origin.put("hls/s/source/empty.m4s", b"")) == b""


def test_overwrite_replaces_the_bytes(stores: Stores) -> None:
    store = stores.origin
    ref = store.put("thumbs/s-1.jpg", b"first")
    assert store.put("thumbs/s-1.jpg", b"second, longer") == ref
    assert store.get(ref) == b"second, longer" and store.get_object(ref).data == b"second, longer"
    assert keys(store.list("thumbs/")) == ["thumbs/s-1.jpg"]


def test_get_object_says_when_the_blob_was_stored(stores: Stores) -> None:
    store = stores.origin
    before = time.time()
    ref = store.put("hls/s/source/init.mp4", b"ftyp moov")
    after = time.time()
    stored = store.get_object(ref)
    assert stored.data == b"ftyp moov"
    # S3's LastModified has whole seconds: allow for the truncation (and a little clock skew).
    assert before - 2 <= stored.modified_s <= after + 2
    assert store.get_object(ref) == stored  # the same answer each time for an unchanged blob
    [info] = store.list("hls/s/source/")
    assert (info.key, info.size) == ("hls/s/source/init.mp4", 9) and abs(info.modified_s - stored.modified_s) < 1


def test_list_is_in_key_order_and_only_under_the_prefix(stores: Stores) -> None:
    store = stores.origin
    wanted = ["hls/s/360p30/00000000.m4s", "hls/s/source/00000000.0.m4s", "hls/s/source/00000000.m4s",
              "hls/s/source/00000001.m4s", "hls/s/source/init.mp4", "hls/s/source/sub/deep.m4s"]
    others = ["hls/s2/source/00000000.m4s", "hls/sx/a.m4s", "hlsx/s/a.m4s", "avatars/u/a.jpg"]
    shuffled = wanted + others
    random.Random(7).shuffle(shuffled)  # stored in no particular order
    for i, key in enumerate(shuffled):
        store.put(key, b"x" * (i + 1))
    listed = list(store.list("hls/s/"))
    assert [b.key for b in listed] == sorted(wanted)
    assert all(b.size >= 1 for b in listed)
    assert keys(store.list("hls/s/source/")) == [k for k in sorted(wanted) if k.startswith("hls/s/source/")]
    assert keys(store.list("hls/nothing/")) == []
    # The areas are separate: what is in the origin is not in the GOP store, and the other way round.
    stores.blobs.put("hls/s/only-in-blobs.m4s", b"b")
    assert "hls/s/only-in-blobs.m4s" not in keys(store.list("hls/s/"))
    assert keys(stores.blobs.list("hls/s/")) == ["hls/s/only-in-blobs.m4s"]
    assert not stores.blobs.exists(stores.blobs.ref(wanted[0]))


def test_delete_prefix_keeps_what_it_is_told_to(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media.blob_s3, "DELETE_BATCH", 3)  # several DeleteObjects batches from a few blobs
    store = stores.origin
    video = [f"hls/v/source/{i:08d}.m4s" for i in range(8)] + ["hls/v/source/init.mp4", "hls/v/audio/init.mp4"]
    for key in video + ["hls/v2/source/00000000.m4s", "thumbs/v.jpg"]:
        store.put(key, key.encode())
    keep = frozenset({"hls/v/source/00000003.m4s", "hls/v/source/init.mp4", "hls/elsewhere/x.m4s"})
    assert store.delete_prefix("hls/v/", keep) == len(video) - 2
    assert keys(store.list("hls/v/")) == sorted(keep - {"hls/elsewhere/x.m4s"})
    assert store.get(store.ref("hls/v/source/00000003.m4s")) == b"hls/v/source/00000003.m4s"
    # Other prefixes are untouched, and a prefix with nothing under it deletes nothing.
    assert keys(store.list("hls/v2/")) == ["hls/v2/source/00000000.m4s"]
    assert store.exists(store.ref("thumbs/v.jpg"))
    assert store.delete_prefix("hls/none/") == 0
    assert store.delete_prefix("hls/v/") == 2 and keys(store.list("hls/v/")) == []
    # A new blob can go where a deleted folder was.
    store.put("hls/v/source/00000000.m4s", b"again")
    assert keys(store.list("hls/v/")) == ["hls/v/source/00000000.m4s"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_invalid_keys_are_refused(stores: Stores, key: str) -> None:
    with pytest.raises(InvalidBlobKey):
        stores.blobs.put(key, b"x")
    with pytest.raises(InvalidBlobKey):
        stores.blobs.ref(key)


@pytest.mark.parametrize("prefix", ["hls", "/hls/", "../", "hls//", ""])
def test_invalid_prefixes_are_refused(stores: Stores, prefix: str) -> None:
    with pytest.raises(InvalidBlobKey):
        list(stores.origin.list(prefix))
    with pytest.raises(InvalidBlobKey):
        stores.origin.delete_prefix(prefix)


def test_another_stores_refs_are_refused(stores: Stores) -> None:
    store = stores.blobs
    for ref in (stores.foreign, "gops/a.flv", "s3://bucket/gops/a.flv", f"{stores.scheme}../up",
                f"{stores.scheme}/abs"):
        with pytest.raises(InvalidBlobKey):
            store.get(ref)
        with pytest.raises(InvalidBlobKey):
            store.exists(ref)
        with pytest.raises(InvalidBlobKey):
            store.delete(ref)


def test_a_missing_blob_is_blob_not_found(stores: Stores) -> None:
    store = stores.blobs
    ref = store.ref("gops/missing/00000000.flv")
    with pytest.raises(BlobNotFound) as caught:
        store.get(ref)
    assert ref in str(caught.value)
    with pytest.raises(BlobNotFound):
        store.get_object(ref)
    assert not store.exists(ref)
    # A folder that holds blobs is not a blob itself.
    store.put("gops/present/00000000.flv", b"x")
    with pytest.raises(BlobNotFound):
        store.get(store.ref("gops/present"))

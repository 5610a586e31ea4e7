"""FileBlobStore: atomic puts, key rules, get/exists/delete."""

from __future__ import annotations

import os
import select
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from media.blob import BlobError, BlobNotFound, BlobStore, FileBlobStore, InvalidBlobKey

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs")


def test_put_get_exists_delete(store: FileBlobStore) -> None:
    ref = store.put("gops/s-1/00000001.flv", b"FLV\x01data")
    assert ref == "file:gops/s-1/00000001.flv"
    assert store.exists(ref) and store.get(ref) == b"FLV\x01data"
    assert store.put("gops/s-1/00000001.flv", b"again") == ref  # a retried put replaces
    assert store.get(ref) == b"again"
    store.delete(ref)
    assert not store.exists(ref)
    store.delete(ref)  # deleting twice is fine, as on S3
    assert os.listdir(store.root / "gops" / "s-1") == []


def test_is_a_blob_store(store: FileBlobStore) -> None:
    def roundtrip(blobs: BlobStore) -> bytes:
        return blobs.get(blobs.put("k", b"x"))

    assert roundtrip(store) == b"x"


def test_get_missing_names_the_ref(store: FileBlobStore) -> None:
    with pytest.raises(BlobNotFound, match="no blob at 'file:gops/missing.flv'") as info:
        store.get("file:gops/missing.flv")
    assert isinstance(info.value, KeyError) and isinstance(info.value, BlobError)
    assert not store.exists("file:gops/missing.flv")


@pytest.mark.parametrize("key", [
    "", "/etc/passwd", "../escape", "a/../../b", "a//b", "a/", "./a", "a/./b", ".hidden",
    "a/.tmp-x", "sp ace", "semi;colon", "back\\slash", "ünïcode", "x" * 1025,
])
def test_bad_keys_are_refused(store: FileBlobStore, key: str) -> None:
    with pytest.raises(InvalidBlobKey) as info:
        store.put(key, b"x")
    assert isinstance(info.value, ValueError)
    assert list(store.root.iterdir()) == []


@pytest.mark.parametrize("ref", ["gops/a.flv", "s3://bucket/a.flv", "file:/abs", "file:../up"])
def test_bad_refs_are_refused(store: FileBlobStore, ref: str) -> None:
    with pytest.raises(InvalidBlobKey, match="ref|key"):
        store.get(ref)


def test_key_under_an_existing_blob_is_a_clear_error(store: FileBlobStore) -> None:
    store.put("a", b"x")
    with pytest.raises(BlobError, match="prefix"):
        store.put("a/b", b"y")


def test_put_writes_and_syncs_before_the_name_appears(store: FileBlobStore,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        # At the rename the final name does not exist yet, and the temp file is complete.
        assert not Path(dst).exists()
        assert Path(src).parent == Path(dst).parent  # same directory: one file system
        assert Path(src).read_bytes() == b"payload" * 1000
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    store.put("gops/x.flv", b"payload" * 1000)
    # New directories are synced into their parents, then: data, rename, directory entry.
    assert calls == ["fsync-dir", "fsync-file", "replace", "fsync-dir"]


def test_failed_put_leaves_nothing(store: FileBlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        store.put("gops/x.flv", b"data")
    assert list((store.root / "gops").iterdir()) == []


def test_process_killed_mid_put_leaves_no_blob(store: FileBlobStore) -> None:
    # The child stops just before the rename; SIGKILL there is a crash mid-put.
    script = textwrap.dedent(f"""
        import os, sys, time
        from media.blob import FileBlobStore

        def stall(src, dst):
            print("ready", flush=True)
            time.sleep(60)

        os.replace = stall
        FileBlobStore({str(store.root)!r}).put("gops/crash.flv", b"x" * 100_000)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE)
    assert child.stdout is not None
    try:
        ready, _, _ = select.select([child.stdout], [], [], 30)
        assert ready and child.stdout.readline() == b"ready\n"
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
    ref = "file:gops/crash.flv"
    assert not store.exists(ref)
    with pytest.raises(BlobNotFound):
        store.get(ref)
    leftovers = list((store.root / "gops").iterdir())
    assert [p.name.startswith(".tmp-crash.flv.") for p in leftovers] == [True]
    assert store.put("gops/crash.flv", b"ok") == ref and store.get(ref) == b"ok"


def test_get_object_returns_the_bytes_with_their_modification_time(store: FileBlobStore) -> None:
    ref = store.put("hls/s/source/00000000.m4s", b"segment")
    blob = store.get_object(ref)
    assert blob.data == b"segment"
    assert blob.modified_s == os.stat(store.path("hls/s/source/00000000.m4s")).st_mtime
    with pytest.raises(BlobNotFound):
        store.get_object("file:hls/s/source/00000001.m4s")
    with pytest.raises(BlobNotFound):
        store.get_object("file:hls/s")  # a directory is not a blob

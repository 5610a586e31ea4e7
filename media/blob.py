"""The blob store: where GOPs and segments live while events carry references.

Events never carry media bytes (docs/ARCHITECTURE.md, "Events"): the ingest stores a GOP
here and publishes its ``blob_ref`` (a claim check).  The interface is the
calls an object store offers (put, get, head, delete, list), and keys are
valid S3 keys unchanged.  Two stores implement it: ``FileBlobStore`` here (the
default) and ``S3BlobStore`` (media/blob_s3.py: S3 or MinIO); every process opens
its stores with ``media/blob_stores.py:open_store(settings, area)``, so nothing
above this layer knows which one it has.  tests/contract/test_blob_store.py
holds both to the same contract.

``FileBlobStore`` keeps blobs under one directory (``<data_dir>/blobs``).  A put
is atomic: the bytes go to a temporary file in the destination directory,
which is fsynced and then renamed over the final name with ``os.replace``
(atomic on POSIX within one file system), and the directory is fsynced so the
rename survives a power cut.  A reader, or a process restarted after a crash,
sees the whole blob or none of it.  Calls block; async code runs them in a
thread (``asyncio.to_thread``).

``FileBlobStore.get_object`` also returns when the blob was stored (S3's
``GetObject`` answers with ``LastModified``), from the same open file as the
bytes: the HLS origin derives its HTTP validators from it.

Refs are ``file:<key>``: the scheme says which store can resolve one, so an
event produced against the file store is never mistaken for an S3 key.

The tree::

    BlobError (Exception)
     ├── InvalidBlobKey (BlobError, ValueError)   a key or ref breaks the rules below
     └── BlobNotFound (BlobError, KeyError)       no blob behind the ref
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

REF_SCHEME = "file:"
MAX_KEY_LENGTH = 1024  # S3's limit on key length (UTF-8 bytes), so keys port unchanged
# Segments start with a letter, digit, "_" or "-": no ".", "..", hidden names, or
# clashes with our ".tmp-" files.
_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


class BlobError(Exception):
    """Base class of every blob store error."""


class InvalidBlobKey(BlobError, ValueError):
    """A key or ref is malformed."""


class BlobNotFound(BlobError, KeyError):
    """No blob is stored under the ref."""

    def __str__(self) -> str:  # KeyError's str() would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class StoredBlob:
    """A blob's bytes and when they were stored (S3 ``GetObject``'s body and ``LastModified``)."""

    data: bytes
    modified_s: float  # seconds since the epoch, as os.stat's st_mtime


@dataclass(frozen=True)
class BlobInfo:
    """One stored blob as a listing shows it (S3 ``ListObjectsV2``'s Key, Size and LastModified)."""

    key: str
    size: int
    modified_s: float


class BlobStore(Protocol):
    """Write-once-read-many bytes by key (files here; S3 or similar in production)."""

    def ref(self, key: str) -> str:
        """The ref ``put`` returns for ``key``."""
        ...

    def key(self, ref: str) -> str:
        """The key inside a ref of this store; raises ``InvalidBlobKey`` for another store's ref."""
        ...

    def put(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key`` atomically, replacing any blob there; return its ref."""
        ...

    def get(self, ref: str) -> bytes:
        """The bytes behind ``ref``; raises ``BlobNotFound``."""
        ...

    def exists(self, ref: str) -> bool:
        """Whether a complete blob is stored behind ``ref``."""
        ...

    def delete(self, ref: str) -> None:
        """Remove the blob behind ``ref``; deleting a missing blob is not an error."""
        ...

    def get_object(self, ref: str) -> StoredBlob:
        """The bytes behind ``ref`` and when they were stored; raises ``BlobNotFound``."""
        ...

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        """Every blob whose key starts with ``prefix`` (a folder: ends with "/"), in key order."""
        ...

    def delete_prefix(self, prefix: str, keep: frozenset[str] = frozenset()) -> int:
        """Delete every blob under ``prefix`` except the keys in ``keep``; return how many were deleted."""
        ...


def validate_key(key: str) -> str:
    """Return ``key`` if it is a relative path of ``[A-Za-z0-9._-]`` segments, else raise."""
    if not isinstance(key, str) or not key:
        raise InvalidBlobKey(f"blob key must be a non-empty string, got {key!r}")
    if len(key.encode()) > MAX_KEY_LENGTH:
        raise InvalidBlobKey(f"blob key is {len(key.encode())} bytes, the limit is {MAX_KEY_LENGTH}")
    if key.startswith("/"):
        raise InvalidBlobKey(f"blob key {key!r} is absolute; keys are relative to the store")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidBlobKey(f"blob key {key!r} has an empty, '.' or '..' path segment")
        if not _SEGMENT.fullmatch(segment):
            raise InvalidBlobKey(
                f"blob key {key!r}: segment {segment!r} must match [A-Za-z0-9_-][A-Za-z0-9._-]*")
    return key


class FileBlobStore:
    """Blobs as files under ``root``; refs are ``file:<key>``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"FileBlobStore({str(self.root)!r})"

    def ref(self, key: str) -> str:
        """The ref ``put`` returns for ``key``."""
        return REF_SCHEME + validate_key(key)

    def key(self, ref: str) -> str:
        """The key inside a ``file:`` ref."""
        if not isinstance(ref, str) or not ref.startswith(REF_SCHEME):
            raise InvalidBlobKey(f"{ref!r} is not a file blob ref (expected 'file:<key>')")
        return validate_key(ref[len(REF_SCHEME):])

    def path(self, key: str) -> Path:
        """Where the blob for ``key`` lives on disk (for tests and tools that look at the files)."""
        return self.root / validate_key(key)

    def put(self, key: str, data: bytes) -> str:
        path = self.root / validate_key(key)
        try:
            self._make_dirs(path.parent)
        except (FileExistsError, NotADirectoryError) as exc:
            # S3 would allow both "a" and "a/b"; a file system cannot.
            raise BlobError(f"cannot store {key!r}: a prefix of it is already a blob") from exc
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())  # the bytes are on disk before the name points at them
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)  # ... and the rename itself is durable
        return self.ref(key)

    def get(self, ref: str) -> bytes:
        try:
            return (self.root / self.key(ref)).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise BlobNotFound(f"no blob at {ref!r} in {self.root}") from exc

    def get_object(self, ref: str) -> StoredBlob:
        """The bytes behind ``ref`` with their modification time, both from one open file."""
        try:
            with open(self.root / self.key(ref), "rb") as f:
                # One file descriptor: a concurrent put (a rename) cannot pair new bytes with an old mtime.
                modified_s = os.fstat(f.fileno()).st_mtime
                return StoredBlob(f.read(), modified_s)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise BlobNotFound(f"no blob at {ref!r} in {self.root}") from exc

    def exists(self, ref: str) -> bool:
        return (self.root / self.key(ref)).is_file()

    def delete(self, ref: str) -> None:
        path = self.root / self.key(ref)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(path.parent)

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        base = self.root / _folder(prefix)
        if not base.is_dir():
            return
        found: list[BlobInfo] = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(".tmp-"):
                    continue  # a put in progress (or one a crash cut off)
                path = Path(dirpath) / name
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue  # deleted while listing
                found.append(BlobInfo(path.relative_to(self.root).as_posix(), st.st_size, st.st_mtime))
        yield from sorted(found, key=lambda b: b.key)

    def delete_prefix(self, prefix: str, keep: frozenset[str] = frozenset()) -> int:
        deleted = 0
        for blob in list(self.list(prefix)):
            if blob.key not in keep:
                self.delete(self.ref(blob.key))
                deleted += 1
        base = self.root / _folder(prefix)
        for dirpath, _dirs, _files in sorted(os.walk(base, topdown=False), key=lambda w: -len(w[0])):
            try:
                os.rmdir(dirpath)  # only empty folders go; a concurrent put's folder stays
            except OSError:
                pass
        return deleted

    def _make_dirs(self, directory: Path) -> None:
        # A new directory's entry lives in its parent, so each one created is
        # fsynced into its parent, or a crash could lose the blob's whole path.
        missing: list[Path] = []
        while not directory.is_dir():
            missing.append(directory)
            directory = directory.parent
        for d in reversed(missing):
            d.mkdir(exist_ok=True)
            _fsync_dir(d.parent)


def _folder(prefix: str) -> str:
    """A listing prefix as a folder key: "a/b/" -> "a/b"; a prefix must name whole path segments."""
    if not prefix.endswith("/"):
        raise InvalidBlobKey(f"prefix {prefix!r} must end with '/' (a folder)")
    return validate_key(prefix[:-1])


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

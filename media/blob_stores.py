"""The platform's blob stores, opened from settings: one call for every process and bench.

The platform has two areas (docs/ARCHITECTURE.md, "A frame, from the encoder
to the player"):

* ``blobs``: the ingest's GOPs (``gops/<stream>/<seq>.flv``), read by the media workers;
* ``origin``: what viewers fetch, segments, parts and init segments
  (``hls/...``), thumbnails (``thumbs/...``) and avatars (``avatars/...``).

With ``GLASSCAST_BLOB_BACKEND=file`` (the default) an area is a folder of the
data directory; with ``s3`` it is a key prefix in one bucket
(``<GLASSCAST_BLOB_PREFIX><area>/``), so every process that shares the settings
shares the objects, wherever it runs.
"""

from __future__ import annotations

from typing import Literal

from infra.settings import BlobSettings, Settings
from media.blob import BlobStore, FileBlobStore
from media.blob_s3 import S3BlobStore, make_client

Area = Literal["blobs", "origin"]
AREAS: tuple[Area, ...] = ("blobs", "origin")


def open_store(settings: Settings, area: Area) -> BlobStore:
    """The blob store of ``area`` as the settings configure it."""
    if area not in AREAS:
        raise ValueError(f"unknown blob area {area!r} (expected one of {', '.join(AREAS)})")
    blob = settings.blob
    if blob.backend == "file":
        return FileBlobStore(settings.data_dir / area)
    return S3BlobStore(make_client(blob.endpoint_url, blob.region), blob.bucket, area_prefix(blob, area))


def area_prefix(blob: BlobSettings, area: Area) -> str:
    """The key prefix of ``area`` in the bucket."""
    return f"{blob.prefix}{area}/"

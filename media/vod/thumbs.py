"""A stream's stored storyboard thumbnails, read back for its storyboard (media/vod/storyboard.py).

The media workers store them as ``thumbs/{stream_id}/{index:06d}.jpg``
(``storyboard_thumb_key``, media/transcode/thumbnail.py); this lists that
folder and returns (index, JPEG) pairs, ready for ``build_storyboard``.  A key
in the folder that is not a thumbnail's name is skipped, and a thumbnail
deleted between the listing and the read is left out (a gap, which the
storyboard fills with the previous tile).
"""

from __future__ import annotations

import re

from media.blob import BlobNotFound, BlobStore

__all__ = ["read_storyboard_thumbs", "thumb_index"]

_NAME = re.compile(r"(\d{6,})\.jpg")


def thumb_index(key: str, stream_id: str) -> int | None:
    """The interval index in a storyboard thumbnail's key, or None if the key is not one of ``stream_id``'s."""
    folder = f"thumbs/{stream_id}/"
    if not key.startswith(folder):
        return None
    match = _NAME.fullmatch(key[len(folder):])
    return int(match[1]) if match else None


def read_storyboard_thumbs(store: BlobStore, stream_id: str) -> list[tuple[int, bytes]]:
    """Every stored storyboard thumbnail of the stream as (index, JPEG), in index order."""
    thumbs = []
    for blob in store.list(f"thumbs/{stream_id}/"):
        index = thumb_index(blob.key, stream_id)
        if index is None:
            continue
        try:
            thumbs.append((index, store.get(store.ref(blob.key))))
        except BlobNotFound:
            continue
    return sorted(thumbs, key=lambda t: t[0])

"""Trim a progressive MP4's video track to an exact length by rewriting its edit list.

FFmpeg's mov muxer writes the edit list (ISO/IEC 14496-12 8.6.6 ``elst``) that
hides a clip's lead-in (the frames from the keyframe up to the requested start,
muxed with negative times), but it always lets the edit run to the end of the
last sample.  A clip cut by stream copy has to keep, in decode order, every
frame the frames before its end refer to; with B-frames that can be a P-frame
shown after the end.  Setting the edit's ``segment_duration`` to the clip's
length hides those frames too, so a player (and FFmpeg's own demuxer) shows
exactly [start, start + duration).  ``tkhd`` (8.3.2) and ``mvhd`` (8.2.2)
durations are set to match, since they are the sum of a track's edits and the
longest track.

Pure: bytes in, bytes out; only fixed-size fields are rewritten, so no offset
moves.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

__all__ = ["set_video_edit_duration"]

_CONTAINERS = {b"moov", b"trak", b"edts", b"mdia"}


def _boxes(data: bytes | bytearray, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of each box in ``data[start:end]`` (8.1.1: 32- or 64-bit sizes)."""
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if size == 1:
            if at + 16 > end:
                raise ValueError(f"MP4 box {kind!r} at offset {at} is truncated")
            size, header = struct.unpack_from(">Q", data, at + 8)[0], 16
        elif size == 0:
            size = end - at
        if size < header or at + size > end:
            raise ValueError(f"MP4 box {kind!r} at offset {at} has a bad size {size}")
        yield kind, at + header, at + size
        at += size


def _child(data: bytearray, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    return next(((s, e) for k, s, e in _boxes(data, start, end) if k == kind), None)


def _set_duration(data: bytearray, payload: int, field_v0: int, field_v1: int, value: int) -> None:
    """Write a full box's duration field: 32 bits at ``field_v0`` (version 0) or 64 at ``field_v1``."""
    if data[payload] == 1:
        struct.pack_into(">Q", data, payload + field_v1, value)
    else:
        struct.pack_into(">I", data, payload + field_v0, min(value, 0xFFFF_FFFF))


def set_video_edit_duration(mp4: bytes, duration_ms: int) -> bytes:
    """The MP4 with its video track's (last, non-empty) edit cut to ``duration_ms``; ``ValueError`` if it has none.

    The movie timescale must be 1000 (FFmpeg's mov muxer writes 1000), so the
    duration is exact in its units.
    """
    data = bytearray(mp4)
    moov = next(((s, e) for k, s, e in _boxes(data, 0, len(data)) if k == b"moov"), None)
    if moov is None:
        raise ValueError("MP4 has no moov box")
    mvhd = _child(data, *moov, b"mvhd")
    if mvhd is None:
        raise ValueError("MP4 has no mvhd box")
    # mvhd: version/flags, then creation and modification times (32 or 64 bits each), timescale, duration.
    timescale = struct.unpack_from(">I", data, mvhd[0] + (20 if data[mvhd[0]] == 1 else 12))[0]
    if timescale != 1000:
        raise ValueError(f"movie timescale is {timescale}, not 1000")
    longest, patched = 0, False
    for kind, start, end in list(_boxes(data, *moov)):
        if kind != b"trak":
            continue
        tkhd = _child(data, start, end, b"tkhd")
        mdia = _child(data, start, end, b"mdia")
        hdlr = _child(data, *mdia, b"hdlr") if mdia else None
        if tkhd is None:
            continue
        # tkhd: version/flags, two times, track_ID, reserved, duration (8.3.2.2).
        track_ms = struct.unpack_from(">Q" if data[tkhd[0]] == 1 else ">I", data,
                                      tkhd[0] + (28 if data[tkhd[0]] == 1 else 20))[0]
        # hdlr: version/flags, pre_defined, then handler_type (8.4.3.2).
        if hdlr is not None and data[hdlr[0] + 8:hdlr[0] + 12] == b"vide":
            edts = _child(data, start, end, b"edts")
            elst = _child(data, *edts, b"elst") if edts else None
            if elst is None:
                raise ValueError("MP4 video track has no edit list")
            version, count = data[elst[0]], struct.unpack_from(">I", data, elst[0] + 4)[0]
            entry_size = 20 if version == 1 else 12
            if count == 0 or elst[0] + 8 + count * entry_size > elst[1]:
                raise ValueError(f"MP4 video edit list has a bad entry count {count}")
            empty_ms = 0
            for i in range(count - 1):  # leading empty edits (media_time -1) delay the track
                empty_ms += struct.unpack_from(">Q" if version == 1 else ">I", data, elst[0] + 8 + i * entry_size)[0]
            last = elst[0] + 8 + (count - 1) * entry_size
            struct.pack_into(">Q" if version == 1 else ">I", data, last, duration_ms)
            track_ms = empty_ms + duration_ms
            _set_duration(data, tkhd[0], 20, 28, track_ms)
            patched = True
        longest = max(longest, track_ms)
    if not patched:
        raise ValueError("MP4 has no video track")
    _set_duration(data, mvhd[0], 16, 24, longest)
    return bytes(data)

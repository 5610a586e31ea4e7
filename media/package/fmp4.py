"""Fragmented MP4 (CMAF-style) init and media segments, written box by box.

A rendition is one *init segment* (ISO/IEC 14496-12 sections 4.3 ``ftyp``, 8.2
``moov`` with empty sample tables and a ``mvex``/``trex`` per track, section
8.8.1) stored once, then one *media segment* per GOP (``styp`` + ``moof`` +
``mdat``, sections 8.16.2, 8.8.4 and 8.1.1; the CMAF structure of ISO/IEC
23000-19 clause 7, and RFC 8216 section 3.3 for HLS).  Every ``traf`` has

* ``tfhd`` with default-base-is-moof (8.8.7), so ``trun`` data offsets count
  from the first byte of the ``moof`` and a segment is position-independent;
* ``tfdt`` version 1 (8.8.12): the baseMediaDecodeTime of the first sample on
  the *source* timeline, in the track timescale (90 kHz video, the sample rate
  for audio), so every rendition of a GOP starts at the same time and GOP n+1
  continues exactly where GOP n ended;
* ``trun`` version 1 (8.8.8) with per-sample duration and size, per-sample
  flags for video (sync vs non-sync, 8.8.3.1) and signed composition time
  offsets, which B-frames need (negative ones too, as CMAF allows).

CMAF proper has one media track per track file; a muxed audio+video rendition
(what the HLS ladder here serves) has two, so only single-track init segments
carry the ``cmfc`` brand.

Samples are opaque bytes here; for H.264 they are length-prefixed NAL units
(ISO/IEC 14496-15 section 5.3.2), which is also how FLV carries them.  This
module is pure: the same tracks always give byte-identical init segments.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from media.ingest.aac import parse_aac_config
from media.ingest.avc import parse_avc_config

__all__ = ["AUDIO_SAMPLE_FLAGS", "AudioTrack", "Fragment", "NON_SYNC_SAMPLE_FLAGS", "SYNC_SAMPLE_FLAGS",
           "Sample", "VIDEO_TIMESCALE", "VideoTrack", "init_segment", "media_segment"]

VIDEO_TIMESCALE = 90_000  # the MPEG-2 TS / RTP clock; divisible by 24, 25, 30, 50, 60 fps
MOVIE_TIMESCALE = 1_000
#: Sample flags (14496-12 8.8.3.1): sample_depends_on in bits 24-25, is_non_sync in bit 16.
SYNC_SAMPLE_FLAGS = 0x0200_0000  # depends on no other sample: an IDR
NON_SYNC_SAMPLE_FLAGS = 0x0101_0000  # depends on others and is not a sync sample
AUDIO_SAMPLE_FLAGS = SYNC_SAMPLE_FLAGS  # every AAC access unit decodes on its own
_TFHD_DEFAULT_FLAGS, _TFHD_BASE_IS_MOOF = 0x00_0020, 0x02_0000
_TRUN_DATA_OFFSET, _TRUN_DURATION, _TRUN_SIZE, _TRUN_FLAGS, _TRUN_CTO = 0x001, 0x100, 0x200, 0x400, 0x800
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)  # identity (8.2.2.3)
_LANGUAGE_UND = (ord("u") - 0x60) << 10 | (ord("n") - 0x60) << 5 | (ord("d") - 0x60)  # ISO 639-2/T, packed


@dataclass(frozen=True)
class VideoTrack:
    """An H.264 track: its AVCDecoderConfigurationRecord (avcC) and display size."""

    avcc: bytes
    width: int
    height: int
    timescale = VIDEO_TIMESCALE  # a class constant, not a field

    @classmethod
    def from_avcc(cls, avcc: bytes) -> VideoTrack:
        """The display size comes from the first SPS (frame cropping applied)."""
        config = parse_avc_config(avcc)
        return cls(bytes(avcc), config.width, config.height)


@dataclass(frozen=True)
class AudioTrack:
    """An AAC track: its AudioSpecificConfig; the timescale is the sample rate."""

    asc: bytes
    sample_rate: int
    channels: int

    @classmethod
    def from_asc(cls, asc: bytes) -> AudioTrack:
        """Rate and channels from the AudioSpecificConfig (a PCE-defined layout is taken as stereo)."""
        config = parse_aac_config(asc)
        return cls(bytes(asc), config.sample_rate_hz, config.channels or 2)

    @property
    def timescale(self) -> int:
        """One tick per sample, so every AAC frame lasts a whole number of ticks."""
        return self.sample_rate


@dataclass(frozen=True)
class Sample:
    """One access unit: its bytes, duration in the track timescale, sync flag, composition offset."""

    data: bytes
    duration: int
    sync: bool = True
    composition_offset: int = 0


@dataclass(frozen=True)
class Fragment:
    """The run of samples one track contributes to a media segment."""

    track_id: int
    base_decode_time: int
    samples: Sequence[Sample]
    video: bool


def box(kind: bytes, *payload: bytes) -> bytes:
    """An ISO BMFF box (14496-12 4.2): 32-bit size, four-character type, payload."""
    size = 8 + sum(len(p) for p in payload)
    return struct.pack(">I4s", size, kind) + b"".join(payload)


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    """A FullBox (14496-12 4.2): a box whose payload starts with version and 24-bit flags."""
    return box(kind, struct.pack(">I", version << 24 | flags), *payload)


def _descriptor(tag: int, payload: bytes) -> bytes:
    # ISO/IEC 14496-1 8.3.3: sizes use 7 bits per byte, high bit = more follows.
    size, chunks = len(payload), [len(payload) & 0x7F]
    while size > 0x7F:
        size >>= 7
        chunks.append(0x80 | (size & 0x7F))
    return bytes((tag, *reversed(chunks))) + payload


def _avc1(track: VideoTrack) -> bytes:
    # VisualSampleEntry (14496-12 12.1.3) + avcC (14496-15 5.4.2.1); 72 dpi, depth 24.
    entry = struct.pack(">6xH16xHHIIIH32sHh", 1, track.width, track.height, 0x480000, 0x480000, 0, 1,
                        b"", 0x18, -1)
    return box(b"avc1", entry, box(b"avcC", track.avcc))


def _mp4a(track: AudioTrack) -> bytes:
    # AudioSampleEntry (14496-12 12.2.3) + esds (14496-14 5.6): ES_Descriptor holding a
    # DecoderConfigDescriptor (object type 0x40 = MPEG-4 Audio, stream type 5 = audio)
    # whose DecoderSpecificInfo is the AudioSpecificConfig, and the predefined SL config.
    entry = struct.pack(">6xH8xHHHHI", 1, track.channels, 16, 0, 0, min(track.sample_rate, 0xFFFF) << 16)
    decoder_config = _descriptor(0x04, struct.pack(">BB3sII", 0x40, 0x15, b"\0\0\0", 0, 0)
                                 + _descriptor(0x05, track.asc))
    es = _descriptor(0x03, struct.pack(">HB", 0, 0) + decoder_config + _descriptor(0x06, b"\x02"))
    return box(b"mp4a", entry, full_box(b"esds", 0, 0, es))


def _trak(track_id: int, track: VideoTrack | AudioTrack) -> bytes:
    video = isinstance(track, VideoTrack)
    width, height = (track.width, track.height) if isinstance(track, VideoTrack) else (0, 0)
    tkhd = full_box(b"tkhd", 0, 0x3, struct.pack(">III4xI8xhhH2x", 0, 0, track_id, 0, 0, 0,
                                                  0 if video else 0x0100), _MATRIX,
                    struct.pack(">II", width << 16, height << 16))
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, track.timescale, 0, _LANGUAGE_UND, 0))
    handler, name = (b"vide", b"VideoHandler\0") if video else (b"soun", b"SoundHandler\0")
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, handler), name)
    media_header = (full_box(b"vmhd", 0, 1, struct.pack(">HHHH", 0, 0, 0, 0)) if video
                    else full_box(b"smhd", 0, 0, struct.pack(">hH", 0, 0)))
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    entry = _avc1(track) if isinstance(track, VideoTrack) else _mp4a(track)
    # Empty sample tables: every sample lives in a movie fragment (8.8.1).
    stbl = box(b"stbl", full_box(b"stsd", 0, 0, struct.pack(">I", 1), entry),
               full_box(b"stts", 0, 0, struct.pack(">I", 0)), full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
               full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)), full_box(b"stco", 0, 0, struct.pack(">I", 0)))
    return box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, box(b"minf", media_header, dinf, stbl)))


def init_segment(tracks: Sequence[VideoTrack | AudioTrack]) -> bytes:
    """``ftyp`` + ``moov`` for these tracks; track ids are 1, 2, ... in order."""
    if not tracks:
        raise ValueError("an init segment needs at least one track")
    brands = [b"iso6", b"mp41"] + ([b"cmfc"] if len(tracks) == 1 else [])
    ftyp = box(b"ftyp", b"iso6", struct.pack(">I", 0), *brands)
    mvhd = full_box(b"mvhd", 0, 0, struct.pack(">IIIIIH10x", 0, 0, MOVIE_TIMESCALE, 0, 0x10000, 0x0100),
                    _MATRIX, bytes(24), struct.pack(">I", len(tracks) + 1))
    trex = [full_box(b"trex", 0, 0, struct.pack(">IIIII", i, 1, 0, 0, 0)) for i in range(1, len(tracks) + 1)]
    traks = [_trak(i, t) for i, t in enumerate(tracks, start=1)]
    return ftyp + box(b"moov", mvhd, *traks, box(b"mvex", *trex))


def _traf(fragment: Fragment, data_offset: int) -> bytes:
    samples = fragment.samples
    tfhd_flags = _TFHD_BASE_IS_MOOF | (0 if fragment.video else _TFHD_DEFAULT_FLAGS)
    tfhd = full_box(b"tfhd", 0, tfhd_flags, struct.pack(">I", fragment.track_id),
                    b"" if fragment.video else struct.pack(">I", AUDIO_SAMPLE_FLAGS))
    tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", fragment.base_decode_time))
    flags = _TRUN_DATA_OFFSET | _TRUN_DURATION | _TRUN_SIZE
    if fragment.video:
        flags |= _TRUN_FLAGS | _TRUN_CTO
        rows = b"".join(struct.pack(">IIIi", s.duration, len(s.data),
                                    SYNC_SAMPLE_FLAGS if s.sync else NON_SYNC_SAMPLE_FLAGS, s.composition_offset)
                        for s in samples)
    else:
        rows = b"".join(struct.pack(">II", s.duration, len(s.data)) for s in samples)
    trun = full_box(b"trun", 1, flags, struct.pack(">Ii", len(samples), data_offset), rows)
    return box(b"traf", tfhd, tfdt, trun)


def media_segment(sequence_number: int, fragments: Sequence[Fragment], styp: bool = True) -> bytes:
    """``styp`` + ``moof`` + ``mdat`` holding ``fragments`` (one per track, in mdat order)."""
    fragments = [f for f in fragments if f.samples]
    if not fragments:
        raise ValueError("a media segment needs at least one sample")
    mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", sequence_number))
    # Data offsets count from the moof's first byte, and the moof's size does not
    # depend on their values: lay it out once with zeros, then for real.
    moof_size = len(box(b"moof", mfhd, *(_traf(f, 0) for f in fragments)))
    offset, trafs = moof_size + 8, []
    for f in fragments:
        trafs.append(_traf(f, offset))
        offset += sum(len(s.data) for s in f.samples)
    head = box(b"styp", b"msdh", struct.pack(">I", 0), b"msdh") if styp else b""
    return head + box(b"moof", mfhd, *trafs) + box(b"mdat", *(s.data for f in fragments for s in f.samples))

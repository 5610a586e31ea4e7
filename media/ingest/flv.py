"""FLV tag bodies (as RTMP audio and video messages carry them) and FLV files.

An RTMP audio (8) or video (9) message body is exactly an FLV tag body (RTMP
1.0 section 7.1.5): the AudioTagHeader or VideoTagHeader of FLV spec v10.1
annex E.4.2 / E.4.3, then the codec data.  Enhanced RTMP (veovera, v1 and v2)
reuses the top bit of the video header (``IsExHeader``) and audio format 9 to
signal a FourCC instead of a codec id, which is how HEVC, AV1 and VP9 arrive;
we recognise those so the server can refuse them by name.

H.264 and AAC configuration records are parsed in ``media.ingest.avc`` and
``media.ingest.aac`` and re-exported here.  FLV files (annex E.2, E.3) are a
9-byte header, then tags, each followed by its PreviousTagSize.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from media.ingest.aac import AacConfig, parse_aac_config
from media.ingest.avc import AvcConfig, is_idr, iter_nal_units, parse_avc_config
from media.ingest.errors import FlvError, UnsupportedCodecError

__all__ = [
    "FLV_HEADER_SIZE", "TAG_AUDIO", "TAG_HEADER_SIZE", "TAG_SCRIPT", "TAG_VIDEO",
    "AacConfig", "AudioTag", "AvcConfig", "VideoTag", "check_supported", "file_header",
    "is_idr", "iter_file_tags", "iter_nal_units", "parse_aac_config", "parse_audio",
    "parse_avc_config", "parse_video", "tag",
]

TAG_AUDIO, TAG_VIDEO, TAG_SCRIPT = 8, 9, 18  # E.4.1 TagType
FLV_HEADER_SIZE = 9  # E.2: signature, version, flags, DataOffset
TAG_HEADER_SIZE = 11  # E.4.1
PREVIOUS_TAG_SIZE = 4  # E.3
MAX_TAG_DATA = 0xFFFFFF  # E.4.1 DataSize is UI24
_HAS_AUDIO, _HAS_VIDEO, _FILTER = 0x04, 0x01, 0x20

#: E.4.3.1 FrameType; 5 is a video info/command frame with no picture.
FRAME_KEY, FRAME_INTER, FRAME_DISPOSABLE, FRAME_GENERATED_KEY, FRAME_COMMAND = 1, 2, 3, 4, 5
#: E.4.3.1 CodecID.  12 for HEVC is the widespread pre-Enhanced-RTMP extension.
CODEC_AVC, CODEC_HEVC_LEGACY = 7, 12
_LEGACY_VIDEO = {CODEC_AVC: "avc", CODEC_HEVC_LEGACY: "hevc"}
_AVC_PACKET_TYPES = {0: "config", 1: "nalu", 2: "end"}
#: Enhanced RTMP VideoPacketType / AudioPacketType values.
EX_SEQUENCE_START, EX_CODED_FRAMES, EX_SEQUENCE_END, EX_CODED_FRAMES_X, EX_METADATA = range(5)
EX_VIDEO_MULTITRACK, EX_AUDIO_MULTITRACK, EX_MOD_EX = 6, 5, 7
MANY_TRACKS_MANY_CODECS = 2
_EX_VIDEO_PACKET_TYPES = {EX_SEQUENCE_START: "config", EX_CODED_FRAMES: "nalu",
                          EX_CODED_FRAMES_X: "nalu", EX_SEQUENCE_END: "end"}
_VIDEO_FOURCC = {b"avc1": "avc", b"hvc1": "hevc", b"av01": "av1", b"vp09": "vp9"}

#: E.4.2.1 SoundFormat; 9 was reserved and is Enhanced RTMP's ExHeader.
SOUND_AAC, SOUND_EX_HEADER = 10, 9
_LEGACY_AUDIO = {0: "pcm", 1: "adpcm", 2: "mp3", 3: "pcm", 4: "nellymoser", 5: "nellymoser",
                 6: "nellymoser", 7: "alaw", 8: "mulaw", 10: "aac", 11: "speex", 14: "mp3"}
_AUDIO_FOURCC = {b"mp4a": "aac", b"Opus": "opus", b"fLaC": "flac", b"ac-3": "ac3",
                 b"ec-3": "eac3", b".mp3": "mp3"}

SUPPORTED_VIDEO_CODECS = frozenset({"avc"})
SUPPORTED_AUDIO_CODECS = frozenset({"aac"})


@dataclass(frozen=True)
class VideoTag:
    """A parsed video tag body; ``data`` is what follows the header."""

    codec: str  # "avc", "hevc", "av1", "vp9" or "unknown:<codec id or FourCC>"
    keyframe: bool
    packet_type: str  # "config", "nalu", "end" or "other"
    composition_time_ms: int
    data: bytes


@dataclass(frozen=True)
class AudioTag:
    """A parsed audio tag body; ``data`` is what follows the header."""

    codec: str  # "aac", "mp3", ... or "unknown:<format or FourCC>"
    packet_type: str  # "config", "raw" or "other"
    data: bytes


def _need(payload: bytes, end: int, what: str) -> None:
    if end > len(payload):
        raise FlvError(f"FLV {what} truncated: {len(payload)} bytes, header needs {end}")


def _fourcc_name(fourcc: bytes | None, names: dict[bytes, str]) -> str:
    if fourcc is None:
        return "unknown:multitrack"
    return names.get(fourcc) or "unknown:" + fourcc.decode("latin-1")


def _skip_mod_ex(payload: bytes, what: str) -> tuple[int, int]:
    """Skip Enhanced RTMP v2 modifier extensions; return (packet type, next offset)."""
    packet_type, pos = payload[0] & 0x0F, 1
    # Each extension takes at least two bytes, so the loop ends with the input.
    while packet_type == EX_MOD_EX:
        _need(payload, pos + 1, what)
        size, pos = payload[pos] + 1, pos + 1
        if size == 256:
            _need(payload, pos + 2, what)
            size, pos = struct.unpack_from(">H", payload, pos)[0] + 1, pos + 2
        _need(payload, pos + size + 1, what)
        packet_type, pos = payload[pos + size] & 0x0F, pos + size + 1
    return packet_type, pos


def _read_fourcc(payload: bytes, pos: int, packet_type: int, multitrack: int,
                 what: str) -> tuple[int, int, bytes | None]:
    """Read the FourCC; a multitrack body gives packet type -1 (and no FourCC if mixed)."""
    if packet_type == multitrack:
        _need(payload, pos + 1, what)
        mixed = payload[pos] >> 4 == MANY_TRACKS_MANY_CODECS
        packet_type, pos = -1, pos + 1
        if mixed:
            return packet_type, pos, None
    _need(payload, pos + 4, what)
    return packet_type, pos + 4, payload[pos:pos + 4]


def parse_video(payload: bytes) -> VideoTag:
    """Parse a video tag body: legacy VideoTagHeader (E.4.3.1) or ExVideoTagHeader."""
    if not payload:
        raise FlvError("FLV video tag is empty")
    payload = bytes(payload)
    first = payload[0]
    if first & 0x80:
        what = "enhanced video tag"
        frame_type = (first >> 4) & 0x07
        packet_type, pos = _skip_mod_ex(payload, what)
        if frame_type == FRAME_COMMAND and packet_type != EX_METADATA:
            return VideoTag("unknown:command", False, "other", 0, payload[pos:])
        packet_type, pos, fourcc = _read_fourcc(payload, pos, packet_type, EX_VIDEO_MULTITRACK, what)
        codec = _fourcc_name(fourcc, _VIDEO_FOURCC)
        composition_time_ms = 0
        # Only AVC and HEVC CodedFrames carry a composition time; CodedFramesX means 0.
        if packet_type == EX_CODED_FRAMES and codec in ("avc", "hevc"):
            _need(payload, pos + 3, what)
            composition_time_ms = int.from_bytes(payload[pos:pos + 3], "big", signed=True)
            pos += 3
        kind = _EX_VIDEO_PACKET_TYPES.get(packet_type, "other")
        return VideoTag(codec, frame_type == FRAME_KEY, kind, composition_time_ms, payload[pos:])
    frame_type, codec_id = first >> 4, first & 0x0F
    if not FRAME_KEY <= frame_type <= FRAME_COMMAND:
        raise FlvError(f"FLV video frame type {frame_type} is reserved")
    codec = _LEGACY_VIDEO.get(codec_id, f"unknown:{codec_id}")
    if frame_type == FRAME_COMMAND or codec_id not in _LEGACY_VIDEO:
        return VideoTag(codec, frame_type == FRAME_KEY, "other", 0, payload[1:])
    _need(payload, 5, f"{codec} video tag")
    kind = _AVC_PACKET_TYPES.get(payload[1], "other")
    composition_time_ms = int.from_bytes(payload[2:5], "big", signed=True)
    return VideoTag(codec, frame_type == FRAME_KEY, kind, composition_time_ms, payload[5:])


def parse_audio(payload: bytes) -> AudioTag:
    """Parse an audio tag body: AudioTagHeader (E.4.2.1) or Enhanced RTMP v2 ExAudioTagHeader."""
    if not payload:
        raise FlvError("FLV audio tag is empty")
    payload = bytes(payload)
    sound_format = payload[0] >> 4
    if sound_format == SOUND_EX_HEADER:
        what = "enhanced audio tag"
        packet_type, pos = _skip_mod_ex(payload, what)
        packet_type, pos, fourcc = _read_fourcc(payload, pos, packet_type, EX_AUDIO_MULTITRACK, what)
        codec = _fourcc_name(fourcc, _AUDIO_FOURCC)
        kind = {EX_SEQUENCE_START: "config", EX_CODED_FRAMES: "raw"}.get(packet_type, "other")
        return AudioTag(codec, kind, payload[pos:])
    codec = _LEGACY_AUDIO.get(sound_format, f"unknown:{sound_format}")
    if sound_format != SOUND_AAC:
        return AudioTag(codec, "raw", payload[1:])
    # AAC adds an AACPacketType byte (E.4.2.1): 0 = AudioSpecificConfig, 1 = raw frames.
    _need(payload, 2, "aac audio tag")
    kind = {0: "config", 1: "raw"}.get(payload[1], "other")
    return AudioTag(codec, kind, payload[2:])


def check_supported(tag: VideoTag | AudioTag) -> None:
    """Raise ``UnsupportedCodecError`` unless the tag's codec is one we ingest (H.264, AAC)."""
    supported = SUPPORTED_VIDEO_CODECS if isinstance(tag, VideoTag) else SUPPORTED_AUDIO_CODECS
    if tag.codec not in supported:
        kind = "video" if isinstance(tag, VideoTag) else "audio"
        raise UnsupportedCodecError(
            f"{kind} codec {tag.codec!r} is not supported (supported: {', '.join(sorted(supported))})"
        )


def file_header(has_audio: bool = True, has_video: bool = True) -> bytes:
    """Return the FLV file header (E.2) and PreviousTagSize0 (E.3)."""
    flags = (_HAS_AUDIO if has_audio else 0) | (_HAS_VIDEO if has_video else 0)
    return b"FLV\x01" + bytes((flags,)) + struct.pack(">II", FLV_HEADER_SIZE, 0)


def tag(tag_type: int, timestamp_ms: int, payload: bytes) -> bytes:
    """Return one FLV tag (E.4.1) and its PreviousTagSize."""
    if not 0 <= tag_type <= 0x1F:
        raise ValueError(f"FLV tag type must be 0..31, not {tag_type}")
    if not 0 <= timestamp_ms <= 0xFFFFFFFF:
        raise ValueError(f"FLV timestamp must be 0..2**32-1 ms, not {timestamp_ms}")
    if len(payload) > MAX_TAG_DATA:
        raise ValueError(f"FLV tag data of {len(payload)} bytes is over {MAX_TAG_DATA}")
    # The timestamp is 24 low bits then an 8-bit TimestampExtended holding the top.
    header = bytes((tag_type,)) + len(payload).to_bytes(3, "big")
    header += (timestamp_ms & 0xFFFFFF).to_bytes(3, "big") + bytes((timestamp_ms >> 24,))
    return header + b"\x00\x00\x00" + bytes(payload) + struct.pack(">I", TAG_HEADER_SIZE + len(payload))


def iter_file_tags(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Yield (tag type, timestamp ms, tag body) for each tag of an FLV file."""
    data = bytes(data)
    if len(data) < FLV_HEADER_SIZE:
        raise FlvError(f"FLV header truncated: {len(data)} bytes of {FLV_HEADER_SIZE}")
    if data[:3] != b"FLV":
        raise FlvError(f"not an FLV file: signature {data[:3]!r}")
    (offset,) = struct.unpack_from(">I", data, 5)
    if offset < FLV_HEADER_SIZE:
        raise FlvError(f"FLV header DataOffset {offset} is below {FLV_HEADER_SIZE}")
    pos = offset + PREVIOUS_TAG_SIZE
    if pos > len(data):
        raise FlvError(f"FLV file truncated at offset {len(data)} (before the first tag)")
    while pos < len(data):
        if pos + TAG_HEADER_SIZE > len(data):
            raise FlvError(f"FLV tag header truncated at offset {pos}")
        type_byte = data[pos]
        if type_byte & _FILTER:
            raise FlvError(f"FLV tag at offset {pos} is encrypted (Filter bit set)")
        size = int.from_bytes(data[pos + 1:pos + 4], "big")
        timestamp_ms = int.from_bytes(data[pos + 4:pos + 7], "big") | data[pos + 7] << 24
        end = pos + TAG_HEADER_SIZE + size
        if end + PREVIOUS_TAG_SIZE > len(data):
            raise FlvError(f"FLV tag at offset {pos} truncated: needs {size} data bytes")
        (previous,) = struct.unpack_from(">I", data, end)
        if previous != TAG_HEADER_SIZE + size:
            raise FlvError(
                f"FLV PreviousTagSize {previous} at offset {end} does not match the tag's "
                f"{TAG_HEADER_SIZE + size} bytes"
            )
        yield type_byte & 0x1F, timestamp_ms, data[pos + TAG_HEADER_SIZE:end]
        pos = end + PREVIOUS_TAG_SIZE

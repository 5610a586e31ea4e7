"""H.264 in FLV: the decoder configuration record, the SPS, and NAL units.

An AVC sequence header (FLV 10.1 E.4.3.1, AVCPacketType 0) carries an
AVCDecoderConfigurationRecord (ISO/IEC 14496-15 section 5.2.4.1): profile,
compatibility flags, level, the NAL unit length size and the SPS/PPS NAL
units.  The picture size is not in the record, so we read it from the first
sequence parameter set (ITU-T H.264 section 7.3.2.1.1): macroblock counts,
``frame_mbs_only_flag`` for interlaced streams, and the frame cropping that
turns 1088 coded lines into 1080 shown ones.  Coded frames (AVCPacketType 1)
hold NAL units, each behind a big-endian length of ``nal_length_size`` bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from media.ingest.bits import BitReader
from media.ingest.errors import FlvError

__all__ = ["AvcConfig", "SpsInfo", "is_idr", "iter_nal_units", "parse_avc_config", "parse_sps"]

NAL_IDR, NAL_SPS, NAL_PPS = 5, 7, 8
#: profile_idc values whose SPS carries chroma format, bit depths and scaling
#: lists (H.264 section 7.3.2.1.1).
HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
#: The largest frame of any level, in macroblocks (H.264 Table A-1, level 6.x).
MAX_FRAME_MBS = 139264
#: num_ref_frames_in_pic_order_cnt_cycle is 0..255 (H.264 section 7.4.2.1.1).
MAX_POC_CYCLE = 255


@dataclass(frozen=True)
class SpsInfo:
    """The picture geometry from a sequence parameter set."""

    profile: int
    level: int
    chroma_format_idc: int
    width: int
    height: int


@dataclass(frozen=True)
class AvcConfig:
    """An AVCDecoderConfigurationRecord with the picture size of its first SPS."""

    profile: int
    compat: int
    level: int
    nal_length_size: int
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]
    width: int
    height: int
    codec_string: str  # RFC 6381, e.g. "avc1.64001f"


def unescape_rbsp(nal: bytes) -> bytes:
    """Drop emulation prevention bytes: 00 00 03 -> 00 00 (H.264 section 7.4.1)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00") if b"\x00\x00\x03" in nal else nal


def _skip_scaling_list(bits: BitReader, size: int) -> None:
    # Only the bit count matters to us; the values follow section 7.3.2.1.1.1.
    last, next_ = 8, 8
    for _ in range(size):
        if next_ != 0:
            next_ = (last + bits.se() + 256) % 256
        last = next_ or last


def parse_sps(nal: bytes) -> SpsInfo:
    """Parse a sequence parameter set NAL unit as far as the frame cropping."""
    if not nal or nal[0] & 0x1F != NAL_SPS:
        kind = nal[0] & 0x1F if nal else "empty"
        raise FlvError(f"SPS NAL unit has type {kind}, expected {NAL_SPS}")
    # The SPS bytes are escaped like any NAL unit: each 00 00 03 stands for 00 00
    # (section 7.4.1), and a 03 left in would shift every field after it.
    bits = BitReader(unescape_rbsp(nal[1:]), "SPS")
    profile = bits.u(8)
    bits.u(8)  # constraint_set flags
    level = bits.u(8)
    bits.ue()  # seq_parameter_set_id
    chroma_format_idc, separate_colour_plane = 1, False
    if profile in HIGH_PROFILES:
        chroma_format_idc = bits.ue()
        if chroma_format_idc > 3:
            raise FlvError(f"SPS chroma_format_idc {chroma_format_idc} is out of range")
        if chroma_format_idc == 3:
            separate_colour_plane = bits.flag()
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.flag()  # qpprime_y_zero_transform_bypass_flag
        if bits.flag():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if bits.flag():
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        bits.flag()  # delta_pic_order_always_zero_flag
        bits.se()  # offset_for_non_ref_pic
        bits.se()  # offset_for_top_to_bottom_field
        cycle = bits.ue()
        if cycle > MAX_POC_CYCLE:
            raise FlvError(f"SPS pic order count cycle of {cycle} frames is over {MAX_POC_CYCLE}")
        for _ in range(cycle):
            bits.se()
    elif poc_type != 2:
        raise FlvError(f"SPS pic_order_cnt_type {poc_type} is out of range")
    bits.ue()  # max_num_ref_frames
    bits.flag()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_map_units = bits.ue() + 1
    frame_mbs_only = bits.flag()
    # Interlaced streams count map units in field pairs: two macroblock rows each.
    height_mbs = height_map_units * (1 if frame_mbs_only else 2)
    if width_mbs * height_mbs > MAX_FRAME_MBS:
        raise FlvError(f"SPS frame of {width_mbs}x{height_mbs} macroblocks is over any level's limit")
    if not frame_mbs_only:
        bits.flag()  # mb_adaptive_frame_field_flag
    bits.flag()  # direct_8x8_inference_flag
    width, height = width_mbs * 16, height_mbs * 16
    if bits.flag():  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        # Crop offsets count chroma samples (section 7.4.2.1.1, equations 7-19..7-22).
        chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
        unit_x = 2 if chroma_array_type in (1, 2) else 1
        unit_y = (2 if chroma_array_type == 1 else 1) * (1 if frame_mbs_only else 2)
        width -= (left + right) * unit_x
        height -= (top + bottom) * unit_y
        if width <= 0 or height <= 0:
            raise FlvError(f"SPS frame cropping leaves a {width}x{height} picture")
    return SpsInfo(profile, level, chroma_format_idc, width, height)


def parse_avc_config(data: bytes) -> AvcConfig:
    """Parse an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.2.4.1)."""
    if len(data) < 6:
        raise FlvError(f"AVCDecoderConfigurationRecord of {len(data)} bytes is truncated")
    version, profile, compat, level, length_byte, sps_byte = data[:6]
    if version != 1:
        raise FlvError(f"AVCDecoderConfigurationRecord version {version} is not 1")
    nal_length_size = (length_byte & 0x03) + 1
    pos = 6
    sets: list[tuple[bytes, ...]] = []
    for what, count in (("SPS", sps_byte & 0x1F), ("PPS", -1)):
        if count < 0:
            if pos >= len(data):
                raise FlvError(f"AVCDecoderConfigurationRecord truncated at offset {pos} (PPS count)")
            count, pos = data[pos], pos + 1
        units: list[bytes] = []
        for _ in range(count):
            if pos + 2 > len(data):
                raise FlvError(f"AVCDecoderConfigurationRecord {what} truncated at offset {pos}")
            (size,) = struct.unpack_from(">H", data, pos)
            if pos + 2 + size > len(data):
                raise FlvError(f"AVCDecoderConfigurationRecord {what} truncated at offset {pos}")
            units.append(bytes(data[pos + 2:pos + 2 + size]))
            pos += 2 + size
        sets.append(tuple(units))
    sps, pps = sets
    if not sps:
        raise FlvError("AVCDecoderConfigurationRecord has no SPS")
    info = parse_sps(sps[0])
    return AvcConfig(
        profile, compat, level, nal_length_size, sps, pps, info.width, info.height,
        f"avc1.{profile:02x}{compat:02x}{level:02x}",
    )


def iter_nal_units(data: bytes, nal_length_size: int) -> Iterator[bytes]:
    """Yield the NAL units of a length-prefixed (AVCC) access unit."""
    if not 1 <= nal_length_size <= 4:
        raise FlvError(f"NAL unit length size {nal_length_size} is not 1..4")
    pos = 0
    while pos < len(data):
        if pos + nal_length_size > len(data):
            raise FlvError(f"NAL unit length truncated at offset {pos}")
        size = int.from_bytes(data[pos:pos + nal_length_size], "big")
        pos += nal_length_size
        if pos + size > len(data):
            raise FlvError(
                f"NAL unit of {size} bytes at offset {pos - nal_length_size} runs past "
                f"the end ({len(data)} bytes)"
            )
        yield bytes(data[pos:pos + size])
        pos += size


def is_idr(nal: bytes) -> bool:
    """True for an IDR slice (nal_unit_type 5), where decoding can start."""
    return bool(nal) and nal[0] & 0x1F == NAL_IDR

"""Codec configuration records: H.264 avcC, AAC AudioSpecificConfig, RFC 6381 strings.

* RFC 6381 section 3.3: ``avc1.PPCCLL`` is profile_idc, the constraint-flag
  byte and level_idc of the SPS, in hex, exactly as they sit in bytes 1..3 of
  the AVCDecoderConfigurationRecord; ``mp4a.40.<aot>`` is the MPEG-4 Audio
  object type indication 0x40 followed by the audio object type in decimal.
* ISO/IEC 14496-15 section 5.3.3.1: the AVCDecoderConfigurationRecord (avcC).
  x264 hands its SPS/PPS over as Annex B (start-code delimited, ITU-T H.264
  Annex B) while MP4 carries them in avcC and every sample as length-prefixed
  NAL units, so both conversions live here.
* ISO/IEC 14496-3 section 1.6.2.1: AudioSpecificConfig; the frame length
  (1024, or 960 with frameLengthFlag; doubled for explicit SBR/PS) sets the
  duration of every AAC sample in the track.
"""

from __future__ import annotations

import struct

from media.ingest.avc import HIGH_PROFILES, NAL_PPS, NAL_SPS, unescape_rbsp
from media.ingest.bits import BitReader

__all__ = ["aac_codec_string", "aac_frame_samples", "annexb_to_avcc", "avc_codec_string",
           "avcc_from_annexb", "split_annexb"]

NAL_LENGTH_SIZE = 4  # the length prefix we write for every converted sample
AOT_ESCAPE, AOT_SBR, AOT_PS = 31, 5, 29
_START_CODE = b"\x00\x00\x01"


def avc_codec_string(avcc: bytes) -> str:
    """RFC 6381 ``avc1.PPCCLL`` from an AVCDecoderConfigurationRecord."""
    if len(avcc) < 4 or avcc[0] != 1:
        raise ValueError(f"not an AVCDecoderConfigurationRecord ({len(avcc)} bytes, version "
                         f"{avcc[0] if avcc else None})")
    return f"avc1.{avcc[1]:02x}{avcc[2]:02x}{avcc[3]:02x}"


def _audio_object_type(bits: BitReader) -> int:
    aot = bits.u(5)
    return 32 + bits.u(6) if aot == AOT_ESCAPE else aot


def aac_codec_string(asc: bytes) -> str:
    """RFC 6381 ``mp4a.40.<aot>`` from an AudioSpecificConfig."""
    return f"mp4a.40.{_audio_object_type(BitReader(asc, 'AudioSpecificConfig'))}"


def aac_frame_samples(asc: bytes) -> int:
    """Samples per AAC access unit at the track's (output) sample rate."""
    bits = BitReader(asc, "AudioSpecificConfig")
    aot = _audio_object_type(bits)
    if bits.u(4) == 0xF:  # samplingFrequencyIndex escape: an explicit 24-bit rate follows
        bits.u(24)
    bits.u(4)  # channelConfiguration
    frame = 1024
    if aot in (AOT_SBR, AOT_PS):
        # Explicit SBR: the reported rate is the doubled output rate, and a core
        # frame of 1024 samples becomes 2048 output samples.
        return 2 * frame
    if aot in (1, 2, 3, 4, 6, 7, 17, 19, 20, 21, 22, 23) and bits.flag():
        frame = 960  # GASpecificConfig frameLengthFlag
    return frame


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (start codes 00 00 01 / 00 00 00 01)."""
    units: list[bytes] = []
    pos = data.find(_START_CODE)
    while pos >= 0:
        start = pos + 3
        pos = data.find(_START_CODE, start)
        # A 4-byte start code's leading zero (and any trailing_zero_8bits) belong
        # to no NAL unit; a NAL unit never ends in 0x00 (rbsp_trailing_bits).
        unit = data[start:] if pos < 0 else data[start:pos]
        unit = unit.rstrip(b"\x00")
        if unit:
            units.append(unit)
    return units


def annexb_to_avcc(data: bytes) -> bytes:
    """An Annex B access unit as 4-byte length-prefixed NAL units (an MP4/FLV sample)."""
    return b"".join(struct.pack(">I", len(u)) + u for u in split_annexb(data))


def _high_profile_fields(sps: bytes) -> bytes:
    # 14496-15 5.3.3.1.2: High profiles append chroma format and bit depths.
    bits = BitReader(unescape_rbsp(sps[1:])[3:], "SPS")
    bits.ue()  # seq_parameter_set_id
    chroma_format_idc = bits.ue()
    if chroma_format_idc == 3:
        bits.flag()  # separate_colour_plane_flag
    depth_luma, depth_chroma = bits.ue(), bits.ue()
    return bytes((0xFC | chroma_format_idc, 0xF8 | depth_luma, 0xF8 | depth_chroma, 0))


def avcc_from_annexb(extradata: bytes) -> bytes:
    """Build an AVCDecoderConfigurationRecord from Annex B SPS/PPS (an encoder's extradata)."""
    units = split_annexb(extradata)
    sps = [u for u in units if u[0] & 0x1F == NAL_SPS]
    pps = [u for u in units if u[0] & 0x1F == NAL_PPS]
    if not sps or not pps or len(sps[0]) < 4:
        raise ValueError(f"encoder extradata holds {len(sps)} SPS and {len(pps)} PPS; need at least one of each")
    profile, compat, level = sps[0][1], sps[0][2], sps[0][3]
    out = bytearray((1, profile, compat, level, 0xFC | (NAL_LENGTH_SIZE - 1), 0xE0 | len(sps)))
    for unit in sps:
        out += struct.pack(">H", len(unit)) + unit
    out.append(len(pps))
    for unit in pps:
        out += struct.pack(">H", len(unit)) + unit
    if profile in HIGH_PROFILES:
        out += _high_profile_fields(sps[0])
    return bytes(out)

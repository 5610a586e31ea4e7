"""The MPEG-4 AudioSpecificConfig carried by an AAC sequence header.

An FLV/RTMP audio tag with AACPacketType 0 (FLV 10.1 E.4.2.2) holds the
AudioSpecificConfig of ISO/IEC 14496-3 section 1.6.2.1: the audio object type
(5 bits, escaped past 31), the sampling frequency index (4 bits, or 0xF and
an explicit 24-bit rate) and the channel configuration (Table 1.19).  With
explicit SBR/PS signalling (object type 5 or 29) an extension sampling rate
follows, and that is the rate a player outputs, so it is the one we report.
"""

from __future__ import annotations

from dataclasses import dataclass

from media.ingest.bits import BitReader
from media.ingest.errors import FlvError

__all__ = ["AacConfig", "parse_aac_config"]

#: samplingFrequencyIndex -> Hz (ISO/IEC 14496-3 Table 1.18); 13 and 14 are reserved.
SAMPLE_RATES_HZ = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050,
                   16000, 12000, 11025, 8000, 7350)
ESCAPE_SAMPLE_RATE = 0xF
#: channelConfiguration -> channels (Table 1.19 and later amendments); 0 means the
#: layout is in a program_config_element, which we report as 0 channels.
CHANNELS = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8, 11: 7, 12: 8, 13: 24, 14: 8}
AOT_SBR, AOT_PS, AOT_ESCAPE = 5, 29, 31


@dataclass(frozen=True)
class AacConfig:
    """What a player needs to know about an AAC stream."""

    object_type: int
    sample_rate_hz: int
    channels: int
    codec_string: str  # RFC 6381, e.g. "mp4a.40.2"


def _object_type(bits: BitReader) -> int:
    aot = bits.u(5)
    return 32 + bits.u(6) if aot == AOT_ESCAPE else aot


def _sample_rate(bits: BitReader) -> int:
    index = bits.u(4)
    if index == ESCAPE_SAMPLE_RATE:
        rate = bits.u(24)
        if rate == 0:
            raise FlvError("AudioSpecificConfig has an explicit sampling rate of 0 Hz")
        return rate
    if index >= len(SAMPLE_RATES_HZ):
        raise FlvError(f"AudioSpecificConfig sampling frequency index {index} is reserved")
    return SAMPLE_RATES_HZ[index]


def parse_aac_config(data: bytes) -> AacConfig:
    """Parse an AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1)."""
    bits = BitReader(data, "AudioSpecificConfig")
    object_type = _object_type(bits)
    if object_type == 0:
        raise FlvError("AudioSpecificConfig audio object type 0 is null")
    sample_rate_hz = _sample_rate(bits)
    config = bits.u(4)
    if config not in CHANNELS:
        raise FlvError(f"AudioSpecificConfig channel configuration {config} is reserved")
    channels = CHANNELS[config]
    if object_type in (AOT_SBR, AOT_PS):
        sample_rate_hz = _sample_rate(bits)
        # Parametric stereo makes stereo out of a mono core.
        if object_type == AOT_PS and channels == 1:
            channels = 2
    return AacConfig(object_type, sample_rate_hz, channels, f"mp4a.40.{object_type}")

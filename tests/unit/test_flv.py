from __future__ import annotations

import io
import struct
from functools import cache
from pathlib import Path

import av
import pytest

from media.ingest import flv
from media.ingest.chunk import AUDIO, VIDEO, ChunkReader, RtmpMessage
from media.ingest.errors import FlvError, ProtocolError, UnsupportedCodecError

DATA = Path(__file__).parent.parent / "data" / "rtmp"


def encode_video(width: int, height: int, preset: str = "ultrafast", pix_fmt: str = "yuv420p",
                 params: str = "") -> bytes:
    """Encode three blank frames with libx264 into an in-memory FLV file."""
    out = io.BytesIO()
    with av.open(out, "w", format="flv") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = {"preset": preset, **({"x264-params": params} if params else {})}
        for i in range(3):
            frame = av.VideoFrame(width, height, pix_fmt)
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):  # flush the encoder's delayed frames
            container.mux(packet)
    return out.getvalue()


def encode_audio(rate: int, layout: str) -> bytes:
    """Encode one silent AAC frame into an in-memory FLV file."""
    out = io.BytesIO()
    with av.open(out, "w", format="flv") as container:
        stream = container.add_stream("aac", rate=rate, layout=layout)
        frame = av.AudioFrame(format="fltp", layout=layout, samples=1024)
        frame.sample_rate, frame.pts = rate, 0
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return out.getvalue()


@cache
def capture() -> list[RtmpMessage]:
    return ChunkReader().feed((DATA / "ffmpeg_publish.bin").read_bytes())


# -- H.264 from real encoders ---------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "kwargs", "codec_string"),
    [
        (320, 240, {"preset": "medium"}, "avc1.64000d"),  # High
        (1280, 720, {}, "avc1.42c01f"),  # Constrained Baseline, no cropping
        (854, 480, {"preset": "veryfast"}, "avc1.64001f"),  # 54 macroblocks wide, cropped by 10
        (1920, 1080, {}, "avc1.42c028"),  # 1088 coded lines, cropped by 8
        (1920, 1080, {"params": "interlaced=1"}, "avc1.4d4028"),  # frame_mbs_only_flag 0
        (640, 360, {"preset": "medium", "pix_fmt": "yuv422p"}, "avc1.7a001e"),  # High 4:2:2
        (320, 240, {"preset": "medium", "pix_fmt": "yuv444p"}, "avc1.f4000d"),  # High 4:4:4
        (320, 240, {"preset": "medium", "params": "cqm=jvt"}, "avc1.64000d"),  # scaling lists
    ],
)
def test_avc_config_from_libx264(width: int, height: int, kwargs: dict[str, str], codec_string: str) -> None:
    tags = list(flv.iter_file_tags(encode_video(width, height, **kwargs)))
    assert [t for t, _, _ in tags] == [flv.TAG_SCRIPT] + [flv.TAG_VIDEO] * 5
    video = [flv.parse_video(body) for _, _, body in tags[1:]]
    assert [v.packet_type for v in video] == ["config", "nalu", "nalu", "nalu", "end"]
    config = flv.parse_avc_config(video[0].data)
    assert (config.width, config.height, config.codec_string) == (width, height, codec_string)
    assert config.nal_length_size == 4 and config.sps[0][0] & 0x1F == 7 and config.pps[0][0] & 0x1F == 8
    assert video[1].keyframe and not video[2].keyframe
    nals = list(flv.iter_nal_units(video[1].data, config.nal_length_size))
    assert any(flv.is_idr(n) for n in nals)
    assert not any(flv.is_idr(n) for n in flv.iter_nal_units(video[2].data, config.nal_length_size))


def test_capture_video_tags() -> None:
    video = [flv.parse_video(m.payload) for m in capture() if m.type_id == VIDEO]
    config = flv.parse_avc_config(video[0].data)
    assert (config.profile, config.level, config.width, config.height) == (244, 13, 320, 240)
    assert config.codec_string == "avc1.f4000d"
    keyframes = [m.timestamp for m in capture() if m.type_id == VIDEO and flv.parse_video(m.payload).keyframe]
    assert keyframes == [0, 0, 1000, 1967]  # the sequence header, then every 30 frames
    assert [v.composition_time_ms for v in video[1:5]] == [67, 166, 67, 0]  # B-frames reorder
    assert video[-1].packet_type == "end" and all(v.codec == "avc" for v in video)


@pytest.mark.parametrize(
    ("rate", "layout", "channels"), [(48000, "stereo", 2), (44100, "mono", 1), (22050, "stereo", 2), (8000, "mono", 1)]
)
def test_aac_config_from_ffmpeg(rate: int, layout: str, channels: int) -> None:
    tags = flv.iter_file_tags(encode_audio(rate, layout))
    audio = [flv.parse_audio(body) for t, _, body in tags if t == flv.TAG_AUDIO]
    assert [a.packet_type for a in audio] == ["config", "raw", "raw"] and audio[0].codec == "aac"
    assert flv.parse_aac_config(audio[0].data) == flv.AacConfig(2, rate, channels, "mp4a.40.2")


def test_capture_audio_tags() -> None:
    audio = [flv.parse_audio(m.payload) for m in capture() if m.type_id == AUDIO]
    assert flv.parse_aac_config(audio[0].data) == flv.AacConfig(2, 44100, 1, "mp4a.40.2")
    assert audio[0].packet_type == "config" and {a.packet_type for a in audio[1:]} == {"raw"}


def test_ffmpeg_surround_writes_an_enhanced_multichannel_tag() -> None:
    bodies = [body for t, _, body in flv.iter_file_tags(encode_audio(96000, "5.1")) if t == flv.TAG_AUDIO]
    assert flv.parse_audio(bodies[1]) == flv.AudioTag("aac", "other", bodies[1][5:])
    assert flv.parse_aac_config(flv.parse_audio(bodies[0]).data).channels == 6


# -- tag headers, legacy and Enhanced RTMP -----------------------------------------


def test_legacy_video_headers() -> None:
    tag = flv.parse_video(b"\x27\x01\xff\xff\xfe" + b"nal")  # inter frame, AVC NALU, CT -2
    assert tag == flv.VideoTag("avc", False, "nalu", -2, b"nal")
    assert flv.parse_video(b"\x17\x00\x00\x00\x00cfg").packet_type == "config"
    assert flv.parse_video(b"\x1c\x01\x00\x00\x05x") == flv.VideoTag("hevc", True, "nalu", 5, b"x")  # codec id 12
    assert flv.parse_video(b"\x12data") == flv.VideoTag("unknown:2", True, "other", 0, b"data")
    assert flv.parse_video(b"\x57\x00").packet_type == "other"  # video info/command frame


def _ex(frame_type: int, packet_type: int) -> bytes:
    return bytes((0x80 | frame_type << 4 | packet_type,))


def test_enhanced_video_headers() -> None:
    assert flv.parse_video(_ex(1, 0) + b"hvc1cfg") == flv.VideoTag("hevc", True, "config", 0, b"cfg")
    assert flv.parse_video(_ex(2, 1) + b"hvc1\x00\x00\x21x") == flv.VideoTag("hevc", False, "nalu", 33, b"x")
    assert flv.parse_video(_ex(2, 3) + b"hvc1x") == flv.VideoTag("hevc", False, "nalu", 0, b"x")
    assert flv.parse_video(_ex(1, 1) + b"av01obu") == flv.VideoTag("av1", True, "nalu", 0, b"obu")
    assert flv.parse_video(_ex(1, 2) + b"vp09") == flv.VideoTag("vp9", True, "end", 0, b"")
    assert flv.parse_video(_ex(1, 1) + b"avc1\x00\x00\x01n").codec == "avc"
    assert flv.parse_video(_ex(1, 4) + b"av01meta").packet_type == "other"
    assert flv.parse_video(_ex(1, 0) + b"xyz1").codec == "unknown:xyz1"
    # ModEx (v2): 3 bytes of modifier data, then the real packet type 0.
    assert flv.parse_video(_ex(1, 7) + b"\x02abc\x10" + b"hvc1cfg").packet_type == "config"
    # Multitrack (v2): one track of AV1.
    assert flv.parse_video(_ex(1, 6) + b"\x01av01\x00rest") == flv.VideoTag("av1", True, "other", 0, b"\x00rest")
    assert flv.parse_video(_ex(1, 6) + b"\x21").codec == "unknown:multitrack"
    assert flv.parse_video(_ex(5, 0) + b"\x01").codec == "unknown:command"


def test_audio_headers() -> None:
    assert flv.parse_audio(b"\xaf\x01raw") == flv.AudioTag("aac", "raw", b"raw")
    assert flv.parse_audio(b"\x2fmp3") == flv.AudioTag("mp3", "raw", b"mp3")
    assert flv.parse_audio(b"\xd0?") == flv.AudioTag("unknown:13", "raw", b"?")
    assert flv.parse_audio(b"\x90Opuscfg") == flv.AudioTag("opus", "config", b"cfg")
    assert flv.parse_audio(b"\x91fLaCx") == flv.AudioTag("flac", "raw", b"x")


def test_supported_codecs() -> None:
    flv.check_supported(flv.parse_video(b"\x17\x01\x00\x00\x00"))
    flv.check_supported(flv.parse_audio(b"\xaf\x01"))
    with pytest.raises(UnsupportedCodecError, match=r"^video codec 'hevc' is not supported \(supported: avc\)$"):
        flv.check_supported(flv.parse_video(_ex(1, 0) + b"hvc1"))
    with pytest.raises(UnsupportedCodecError, match=r"^audio codec 'opus' is not supported \(supported: aac\)$"):
        flv.check_supported(flv.parse_audio(b"\x90Opus"))


@pytest.mark.parametrize(
    ("parse", "data", "message"),
    [
        (flv.parse_video, b"", "FLV video tag is empty"),
        (flv.parse_video, b"\x07\x01", "FLV video frame type 0 is reserved"),
        (flv.parse_video, b"\x17\x01\x00", "FLV avc video tag truncated: 3 bytes, header needs 5"),
        (flv.parse_video, _ex(1, 0) + b"hv", "FLV enhanced video tag truncated: 3 bytes, header needs 5"),
        (flv.parse_video, _ex(2, 1) + b"hvc1\x00", "FLV enhanced video tag truncated: 6 bytes, header needs 8"),
        (flv.parse_video, _ex(1, 7) + b"\xff\x00", "FLV enhanced video tag truncated: 3 bytes, header needs 4"),
        (flv.parse_audio, b"", "FLV audio tag is empty"),
        (flv.parse_audio, b"\xaf", "FLV aac audio tag truncated: 1 bytes, header needs 2"),
        (flv.parse_audio, b"\x90Op", "FLV enhanced audio tag truncated: 3 bytes, header needs 5"),
    ],
)
def test_bad_tag_headers(parse: object, data: bytes, message: str) -> None:
    with pytest.raises(FlvError) as info:
        parse(data)  # type: ignore[operator]
    assert str(info.value) == message and isinstance(info.value, ProtocolError)


# -- AudioSpecificConfig and AVC record edge cases ---------------------------------


@pytest.mark.parametrize(
    ("hex_config", "expected"),
    [
        ("1780181c90", flv.AacConfig(2, 12345, 2, "mp4a.40.2")),  # explicit 24-bit rate (index 0xF)
        ("2c0a88", flv.AacConfig(5, 32000, 1, "mp4a.40.5")),  # HE-AAC: the SBR rate is the output rate
        ("eb0988", flv.AacConfig(29, 48000, 2, "mp4a.40.29")),  # HE-AACv2: PS makes mono stereo
        ("f94840", flv.AacConfig(42, 44100, 2, "mp4a.40.42")),  # escaped object type
    ],
)
def test_aac_config_variants(hex_config: str, expected: flv.AacConfig) -> None:
    assert flv.parse_aac_config(bytes.fromhex(hex_config)) == expected


@pytest.mark.parametrize(
    ("hex_config", "message"),
    [
        ("1690", "AudioSpecificConfig sampling frequency index 13 is reserved"),
        ("1240", "AudioSpecificConfig channel configuration 8 is reserved"),
        ("12", "AudioSpecificConfig truncated at bit 5 (needs 4 more)"),
        ("0000", "AudioSpecificConfig audio object type 0 is null"),
        ("", "AudioSpecificConfig truncated at bit 0 (needs 5 more)"),
    ],
)
def test_bad_aac_configs(hex_config: str, message: str) -> None:
    with pytest.raises(FlvError) as info:
        flv.parse_aac_config(bytes.fromhex(hex_config))
    assert str(info.value) == message


def test_bad_avc_configs() -> None:
    good = flv.parse_video(next(m.payload for m in capture() if m.type_id == VIDEO)).data
    assert flv.parse_avc_config(good).sps[0] == good[8:8 + struct.unpack_from(">H", good, 6)[0]]
    cases = [
        (good[:5], "AVCDecoderConfigurationRecord of 5 bytes is truncated"),
        (b"\x02" + good[1:], "AVCDecoderConfigurationRecord version 2 is not 1"),
        (good[:20], "AVCDecoderConfigurationRecord SPS truncated at offset 6"),
        (good[:33], "AVCDecoderConfigurationRecord truncated at offset 33 (PPS count)"),
        (good[:38], "AVCDecoderConfigurationRecord PPS truncated at offset 34"),
        (good[:5] + b"\xe0\x00", "AVCDecoderConfigurationRecord has no SPS"),
        (good[:8] + b"\x68" + good[9:], "SPS NAL unit has type 8, expected 7"),
        (good[:6] + b"\x00\x03\x67\xf4\x00\x00", "SPS truncated at bit 16 (needs 8 more)"),
    ]
    for data, message in cases:
        with pytest.raises(FlvError) as info:
            flv.parse_avc_config(data)
        assert str(info.value) == message


def test_nal_units() -> None:
    data = b"\x00\x02\x65\x88" + b"\x00\x01\x41" + b"\x00\x00"
    assert list(flv.iter_nal_units(data, 2)) == [b"\x65\x88", b"\x41", b""]
    assert flv.is_idr(b"\x65") and not flv.is_idr(b"\x41") and not flv.is_idr(b"")
    with pytest.raises(FlvError, match=r"^NAL unit of 9 bytes at offset 0 runs past the end \(3 bytes\)$"):
        list(flv.iter_nal_units(b"\x00\x09\x65", 2))
    with pytest.raises(FlvError, match=r"^NAL unit length truncated at offset 3$"):
        list(flv.iter_nal_units(b"\x00\x01\x65\x00", 2))
    with pytest.raises(FlvError, match="length size 5"):
        list(flv.iter_nal_units(b"", 5))


# -- FLV files (E.2, E.3, E.4.1) ----------------------------------------------------


def test_file_layout() -> None:
    assert flv.file_header() == b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"
    assert flv.file_header(has_audio=False)[4] == 0x01
    assert flv.tag(9, 0x12345678, b"ab") == (
        b"\x09\x00\x00\x02\x34\x56\x78\x12\x00\x00\x00ab\x00\x00\x00\x0d"
    )
    data = flv.file_header() + flv.tag(8, 5, b"a") + flv.tag(9, 2**32 - 1, b"")
    assert list(flv.iter_file_tags(data)) == [(8, 5, b"a"), (9, 2**32 - 1, b"")]
    with pytest.raises(ValueError, match="timestamp"):
        flv.tag(9, -1, b"")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"FLV\x01", "FLV header truncated: 4 bytes of 9"),
        (b"RIFF\x01\x05\x00\x00\x00\x09", "not an FLV file: signature b'RIF'"),
        (b"FLV\x01\x05\x00\x00\x00\x05", "FLV header DataOffset 5 is below 9"),
        (b"FLV\x01\x05\x00\x00\x00\x09\x00", "FLV file truncated at offset 10 (before the first tag)"),
        (flv.file_header() + b"\x09\x00", "FLV tag header truncated at offset 13"),
        (flv.file_header() + flv.tag(9, 0, b"abc")[:-1], "FLV tag at offset 13 truncated: needs 3 data bytes"),
        (flv.file_header() + flv.tag(9, 0, b"abc")[:-1] + b"\x00",
         "FLV PreviousTagSize 0 at offset 27 does not match the tag's 14 bytes"),
        (flv.file_header() + b"\x29" + flv.tag(9, 0, b"")[1:], "FLV tag at offset 13 is encrypted (Filter bit set)"),
    ],
)
def test_bad_files(data: bytes, message: str) -> None:
    with pytest.raises(FlvError) as info:
        list(flv.iter_file_tags(data))
    assert str(info.value) == message

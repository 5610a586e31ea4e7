"""fMP4 packaging (``media.package.fmp4``) and codec records (``media.package.codecs``).

The boxes are read back with a tiny ISO BMFF reader written here, not with the
code under test, and the property test hands init + two media segments to
FFmpeg's MP4 demuxer (PyAV) to decode, as a player would after appending them.
"""

from __future__ import annotations

import functools
import io
import struct
from dataclasses import dataclass
from fractions import Fraction

import av
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media.ingest.avc import parse_avc_config
from media.package import codecs
from media.package.fmp4 import (
    AUDIO_SAMPLE_FLAGS,
    NON_SYNC_SAMPLE_FLAGS,
    SYNC_SAMPLE_FLAGS,
    AudioTrack,
    Fragment,
    Sample,
    VideoTrack,
    init_segment,
    media_segment,
)
from media.transcode import timeline

quick = settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow])
ASC_LC_48K_STEREO = bytes((0x11, 0x90))  # AAC LC, 48 kHz, 2 channels


@dataclass
class Box:
    kind: str
    data: bytes  # the payload, after the 8-byte header
    offset: int  # where the box starts in the buffer it was read from

    def children(self) -> list[Box]:
        skip = PAYLOAD_BEFORE_CHILDREN.get(self.kind, 0)
        return read_boxes(self.data[skip:], self.offset + 8 + skip)

    def find(self, path: str) -> Box:
        box = self
        for kind in path.split("/"):
            box = next(b for b in box.children() if b.kind == kind)
        return box


#: Fields before the child boxes: FullBox header + entry count, or the sample entry fields.
PAYLOAD_BEFORE_CHILDREN = {"stsd": 8, "dref": 8, "avc1": 78, "mp4a": 28}


def read_boxes(data: bytes, base: int = 0) -> list[Box]:
    out, pos = [], 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        assert 8 <= size <= len(data) - pos, f"box {kind!r} at {pos} has size {size}"
        out.append(Box(kind.decode("latin-1"), data[pos + 8:pos + size], base + pos))
        pos += size
    return out


def parse_trun(trun: Box) -> tuple[int, int, list[tuple[int, ...]]]:
    version_flags, count, offset = struct.unpack_from(">IIi", trun.data)
    flags = version_flags & 0xFFFFFF
    assert version_flags >> 24 == 1 and flags & 0x001
    fields = [f for f in (0x100, 0x200, 0x400, 0x800) if flags & f]
    row = ">" + "".join("i" if f == 0x800 else "I" for f in fields)
    rows = [struct.unpack_from(row, trun.data, 12 + i * 4 * len(fields)) for i in range(count)]
    return count, offset, rows


def video_track() -> VideoTrack:
    return VideoTrack.from_avcc(encoded_video(0)[0])


@functools.cache
def encoded_video(bframes: int) -> tuple[bytes, list[tuple[int, int, bool, bytes]]]:
    """(avcC, [(pts, dts, key, AVCC sample)]): 24 frames of 64x48, an IDR every 6 frames."""
    enc = av.CodecContext.create("libx264", "w")
    assert isinstance(enc, av.VideoCodecContext)
    enc.width, enc.height, enc.pix_fmt, enc.time_base, enc.framerate = 64, 48, "yuv420p", Fraction(1, 30), Fraction(30)
    enc.flags |= av.codec.context.Flags.global_header
    enc.thread_count = 1
    enc.options = {"preset": "veryfast", "x264-params": f"keyint=6:min-keyint=6:scenecut=0:bframes={bframes}"}
    packets: list[tuple[int, int, bool, bytes]] = []
    for i in [*range(24), None]:
        frame = None
        if i is not None:
            frame = av.VideoFrame(64, 48, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes((x * 7 + i * 13) % 256 for x in range(plane.line_size * plane.height)))
            frame.pts = i
        for p in enc.encode(frame):
            assert p.pts is not None and p.dts is not None
            packets.append((p.pts, p.dts, p.is_keyframe, codecs.annexb_to_avcc(bytes(p))))
    assert enc.extradata is not None
    return codecs.avcc_from_annexb(bytes(enc.extradata)), packets


def test_init_segment_layout() -> None:
    video, audio = video_track(), AudioTrack.from_asc(ASC_LC_48K_STEREO)
    init = init_segment([video, audio])
    top = read_boxes(init)
    assert [b.kind for b in top] == ["ftyp", "moov"]
    assert top[0].data[:4] == b"iso6"
    moov = top[1]
    assert [b.kind for b in moov.children()] == ["mvhd", "trak", "trak", "mvex"]
    traks = [b for b in moov.children() if b.kind == "trak"]
    for track_id, trak, timescale, handler in ((1, traks[0], 90_000, b"vide"), (2, traks[1], 48_000, b"soun")):
        assert struct.unpack_from(">I", trak.find("tkhd").data, 12)[0] == track_id
        assert struct.unpack_from(">I", trak.find("mdia/mdhd").data, 12)[0] == timescale
        assert trak.find("mdia/hdlr").data[8:12] == handler
        stbl = trak.find("mdia/minf/stbl")
        # Empty sample tables: the samples live in movie fragments.
        assert struct.unpack_from(">I", stbl.find("stts").data, 4)[0] == 0
    avc1 = traks[0].find("mdia/minf/stbl/stsd/avc1")
    assert struct.unpack_from(">HH", avc1.data, 24) == (64, 48)
    assert avc1.find("avcC").data == video.avcc
    mp4a = traks[1].find("mdia/minf/stbl/stsd/mp4a")
    assert struct.unpack_from(">HHHHI", mp4a.data, 16) == (2, 16, 0, 0, 48_000 << 16)
    assert ASC_LC_48K_STEREO in mp4a.find("esds").data
    assert traks[0].find("mdia/minf/dinf/dref/url ").data == b"\0\0\0\x01"  # media in the same file
    trex = [b for b in moov.find("mvex").children()]
    assert [struct.unpack_from(">I", t.data, 4)[0] for t in trex] == [1, 2]
    # Pure: the same tracks always give the same bytes, so it is stored once.
    assert init_segment([video_track(), AudioTrack.from_asc(ASC_LC_48K_STEREO)]) == init
    assert b"cmfc" in read_boxes(init_segment([audio]))[0].data


def test_media_segment_boxes() -> None:
    video = [Sample(b"\x00\x00\x00\x02\x65\x88", 3000, True, 6000), Sample(b"\x00\x00\x00\x01\x41", 3000, False, -3000),
             Sample(b"\x00\x00\x00\x01\x01", 3003, False, 0)]
    audio = [Sample(b"aac%d" % i, 1024) for i in range(4)]
    base_video, base_audio = 2**33 + 90_000 * 7, 48_000 * 7 + 17
    seg = media_segment(42, [Fragment(1, base_video, video, True), Fragment(2, base_audio, audio, False)])
    top = read_boxes(seg)
    assert [b.kind for b in top] == ["styp", "moof", "mdat"]
    moof, mdat = top[1], top[2]
    assert struct.unpack_from(">I", moof.find("mfhd").data, 4)[0] == 42
    trafs = [b for b in moof.children() if b.kind == "traf"]
    expected = [(1, base_video, video), (2, base_audio, audio)]
    for traf, (track_id, base, samples) in zip(trafs, expected, strict=True):
        tfhd = traf.find("tfhd")
        assert struct.unpack_from(">I", tfhd.data)[0] & 0x020000  # default-base-is-moof
        assert struct.unpack_from(">I", tfhd.data, 4)[0] == track_id
        tfdt = traf.find("tfdt")
        assert tfdt.data[0] == 1 and struct.unpack_from(">Q", tfdt.data, 4)[0] == base
        count, offset, rows = parse_trun(traf.find("trun"))
        assert count == len(samples)
        assert [r[0] for r in rows] == [s.duration for s in samples]
        assert [r[1] for r in rows] == [len(s.data) for s in samples]
        # The data offset counts from the moof's first byte and lands on the sample bytes.
        start = offset - (mdat.offset - moof.offset) - 8
        assert mdat.data[start:start + sum(len(s.data) for s in samples)] == b"".join(s.data for s in samples)
        if track_id == 1:
            assert [r[2] for r in rows] == [SYNC_SAMPLE_FLAGS, NON_SYNC_SAMPLE_FLAGS, NON_SYNC_SAMPLE_FLAGS]
            assert [r[3] for r in rows] == [6000, -3000, 0]  # signed (trun version 1)
        else:
            assert struct.unpack_from(">I", tfhd.data, 8)[0] == AUDIO_SAMPLE_FLAGS
    assert b"styp" not in media_segment(0, [Fragment(1, 0, video, True)], styp=False)[:8]


def test_empty_segment_and_init_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        media_segment(1, [Fragment(1, 0, [], True)])
    with pytest.raises(ValueError, match="at least one track"):
        init_segment([])


def test_codec_strings() -> None:
    avcc, _ = encoded_video(0)
    config = parse_avc_config(avcc)
    assert codecs.avc_codec_string(avcc) == config.codec_string == "avc1.64000a"
    assert (config.width, config.height, config.nal_length_size) == (64, 48, 4)
    assert avcc[-4:] == bytes((0xFD, 0xF8, 0xF8, 0))  # High profile: 4:2:0, 8-bit, no SPS extensions
    assert codecs.aac_codec_string(ASC_LC_48K_STEREO) == "mp4a.40.2"
    assert codecs.aac_codec_string(bytes((0x2B, 0x92, 0x08, 0x00))) == "mp4a.40.5"  # HE-AAC (explicit SBR)
    assert codecs.aac_codec_string(bytes((0xF8, 0x60, 0x00))) == "mp4a.40.35"  # escaped object type
    assert codecs.aac_frame_samples(ASC_LC_48K_STEREO) == 1024
    assert codecs.aac_frame_samples(bytes((0x11, 0x94))) == 960  # frameLengthFlag
    assert codecs.aac_frame_samples(bytes((0x2B, 0x92, 0x08, 0x00))) == 2048
    with pytest.raises(ValueError, match="AVCDecoderConfigurationRecord"):
        codecs.avc_codec_string(b"\x00\x64")


def test_annexb_conversion() -> None:
    sps, pps, idr = b"\x67\x64\x00\x1f\xac", b"\x68\xee\x3c\xb0", b"\x65\x88\x84\x00\x21"
    stream = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x01" + pps + b"\x00\x00\x00\x01" + idr
    assert codecs.split_annexb(stream) == [sps, pps, idr]
    assert codecs.annexb_to_avcc(stream) == b"".join(struct.pack(">I", len(u)) + u for u in (sps, pps, idr))
    with pytest.raises(ValueError, match="1 SPS and 0 PPS"):
        codecs.avcc_from_annexb(b"\x00\x00\x01" + sps)


def package(bframes: int, split_gop: int, base: int, frame_ticks: int, zero_first_cto: bool) -> tuple[bytes, ...]:
    """init, seg0, seg1 of the encoded clip cut after ``split_gop`` GOPs of 6 frames, plus audio."""
    avcc, packets = encoded_video(bframes)
    first_dts = packets[0][1]
    shift = packets[0][0] - first_dts if zero_first_cto else 0  # CMAF style: the first sample presents at tfdt
    samples = [Sample(data, frame_ticks, key, (pts - dts - shift) * frame_ticks) for pts, dts, key, data in packets]
    cut = split_gop * 6
    aac = [Sample(b"aac-frame-%d" % i, 1024) for i in range(12)]  # opaque: demuxed, not decoded
    tracks: list[VideoTrack | AudioTrack] = [VideoTrack.from_avcc(avcc), AudioTrack.from_asc(ASC_LC_48K_STEREO)]
    audio_base = base * 48_000 // 90_000
    seg0 = media_segment(1, [Fragment(1, base, samples[:cut], True), Fragment(2, audio_base, aac[:6], False)])
    seg1 = media_segment(2, [Fragment(1, base + cut * frame_ticks, samples[cut:], True),
                             Fragment(2, audio_base + 6 * 1024, aac[6:], False)])
    return init_segment(tracks), seg0, seg1


@quick
@given(bframes=st.sampled_from([0, 2]), split_gop=st.integers(1, 3), base=st.integers(0, 2**40),
       frame_ticks=st.sampled_from([3000, 3003, 3750, 1500]), zero_first_cto=st.booleans())
def test_init_and_two_segments_decode_continuously(bframes: int, split_gop: int, base: int, frame_ticks: int,
                                                   zero_first_cto: bool) -> None:
    init, seg0, seg1 = package(bframes, split_gop, base, frame_ticks, zero_first_cto)
    _, packets = encoded_video(bframes)
    shift = packets[0][0] - packets[0][1] if zero_first_cto else 0
    with av.open(io.BytesIO(init + seg0 + seg1), "r", format="mp4") as container:
        vstream = container.streams.video[0]
        assert (vstream.codec_context.width, vstream.codec_context.height) == (64, 48)
        video_pts, audio_packets, first_key = [], 0, None
        for packet in container.demux():
            if packet.stream.type == "audio":
                audio_packets += packet.size > 0
                continue
            for frame in packet.decode():
                assert isinstance(frame, av.VideoFrame)
                if first_key is None:
                    first_key = frame.key_frame
                video_pts.append(frame.pts)
    assert first_key and audio_packets == 12
    # Every frame decodes, presentation times run on across the segment boundary with
    # no gap, and they sit on the tfdt timeline: dts0 = base, pts = dts + offset.
    first_dts = packets[0][1]
    expected = sorted(base + (dts - first_dts) * frame_ticks + (pts - dts - shift) * frame_ticks
                      for pts, dts, _, _ in packets)
    got = sorted(p for p in video_pts if p is not None)
    assert len(got) == len(video_pts) == 24
    assert [p - got[0] for p in got] == [p - expected[0] for p in expected]
    if bframes == 0 or not zero_first_cto:
        assert got == expected
    # else: some offsets are negative and FFmpeg shifts the presentation times by the
    # largest of them (its mov demuxer's dts_shift); MSE players take pts = dts + offset.


# Sample timing (``media.transcode.timeline``): what the job puts in each trun.

def test_video_samples_sum_to_the_gop_and_keep_presentation_times() -> None:
    # A B-frame source: decode times 0, 33, 67, 100 ms; the IDR presents at 67 ms.
    frames = [(0, 67, True, b"I"), (33, 167, False, b"P"), (67, 100, False, b"B"), (100, 133, False, b"B")]
    samples = timeline.video_samples(frames, 133)
    assert [s.duration for s in samples] == [33 * 90, 34 * 90, 33 * 90, 33 * 90]
    assert sum(s.duration for s in samples) == 133 * 90
    assert [s.composition_offset for s in samples] == [67 * 90, 134 * 90, 33 * 90, 33 * 90]
    assert [s.sync for s in samples] == [True, False, False, False]
    # An encoder that starts its decode times early (x264 B-frames) is re-anchored at the keyframe.
    # Presentation times stay the source's, so a B-frame's offset may turn negative.
    shifted = timeline.video_samples([(-67, 0, True, b"I"), (-33, 100, False, b"P"), (0, 33, False, b"B")], 100)
    assert [s.duration for s in shifted] == [34 * 90, 33 * 90, 33 * 90]
    assert [s.composition_offset for s in shifted] == [0, 66 * 90, -34 * 90]


def test_gop_times_are_read_in_the_event_time_base() -> None:
    # GopAvailable.pts/duration count time_base_num/time_base_den seconds, not milliseconds.
    assert timeline.gop_ms(2000, 1, 1000) == 2000
    assert timeline.gop_ms(180_000, 1, 90_000) == 2000
    assert timeline.gop_ms(1001, 30_000, 1) == 1001 * 30_000 * 1000  # any positive base
    assert timeline.gop_ms(45, 1, 90_000) == Fraction(1, 2)  # exact: no float on the way
    # The 90 kHz timeline takes a sub-millisecond GOP start exactly.
    assert timeline.ms_to_90k(timeline.gop_ms(4_000_045, 1, 90_000)) == 4_000_045
    assert timeline.ms_to_90k(2000) == 180_000
    with pytest.raises(ValueError):
        timeline.gop_ms(2000, 0, 1000)
    # A duration from a 1/90000 event times the last sample as its 1/1000 twin does.
    frames = [(0, 67, True, b"I"), (33, 167, False, b"P"), (67, 100, False, b"B"), (100, 133, False, b"B")]
    assert timeline.video_samples(frames, timeline.gop_ms(133 * 90, 1, 90_000)) == timeline.video_samples(frames, 133)
    # And one that ends between two milliseconds lands on its 90 kHz tick.
    assert sum(s.duration for s in timeline.video_samples(frames, timeline.gop_ms(133 * 90 + 45, 1, 90_000))) \
        == 133 * 90 + 45


def test_audio_samples_are_whole_frames_and_fill_holes() -> None:
    frames = [(round(i * 1024 / 48), b"a") for i in range(5)] + [(round(8 * 1024 / 48), b"b")]
    samples = timeline.audio_samples(frames, 1024, 48_000)
    # Three frames went missing before the last one (at 171 ms): the frame before the hole stretches.
    assert [s.duration for s in samples] == [1024] * 4 + [171 * 48 - 4 * 1024, 1024]
    assert timeline.audio_samples([], 1024, 48_000) == []


@pytest.mark.parametrize(("source_fps", "fps", "pts", "kept"), [
    (60, 30.0, [0, 17, 33, 50, 67, 83, 100, 117], [0, 33, 67, 100]),
    (30, 30.0, [0, 33, 67, 100, 133], [0, 33, 67, 100, 133]),
    (30.3, 30.0, [0, 33, 66, 99, 132], [0, 33, 66, 99, 132]),  # a rate estimate just above: keep all
    (50, 25.0, [0, 20, 40, 60, 80], [0, 40, 80]),
])
def test_frame_rate_filter(source_fps: float, fps: float, pts: list[int], kept: list[int]) -> None:
    rate = timeline.FrameRateFilter(fps, source_fps)
    assert [p for p in pts if rate.keep(p)] == kept

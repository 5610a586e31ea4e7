"""Property tests for the pure RTMP ingest parsers (``media.ingest``).

Round trips (AMF0 values, chunk streams, FLV files, SPS and AudioSpecificConfig
fields), the same bytes split at any points giving the same messages, and
arbitrary or mutated bytes raising only our ``ProtocolError``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media.ingest import amf0, flv
from media.ingest.amf0 import UNDEFINED, Amf0Date, EcmaArray
from media.ingest.avc import parse_sps
from media.ingest.chunk import ChunkReader, ChunkWriter, RtmpMessage, set_chunk_size
from media.ingest.errors import FlvError, ProtocolError
from media.ingest.handshake import ServerHandshake

DATA = Path(__file__).parent.parent / "data" / "rtmp"
CAPTURE = (DATA / "ffmpeg_publish.bin").read_bytes()
CAPTURE_MESSAGES = ChunkReader().feed(CAPTURE)
VIDEO_CONFIG = flv.parse_video(next(m.payload for m in CAPTURE_MESSAGES if m.type_id == 9)).data
AUDIO_CONFIG = flv.parse_audio(next(m.payload for m in CAPTURE_MESSAGES if m.type_id == 8)).data

# No timing assertions in tests (docs/ARCHITECTURE.md, "Tests"): no deadline; inputs are bounded instead.
quick = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


def mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        if out:
            out[pos % len(out)] = value
    return bytes(out)


edits = st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=4)


# -- AMF0 ---------------------------------------------------------------------------

keys = st.text(max_size=8)
scalars = st.one_of(
    st.floats(allow_nan=False), st.integers(-(2**53), 2**53), st.booleans(), st.text(max_size=20),
    st.none(), st.just(UNDEFINED),
    st.builds(Amf0Date, st.floats(allow_nan=False), st.integers(-(2**15), 2**15 - 1)),
)
amf_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(keys, inner, max_size=4),
        st.dictionaries(keys, inner, max_size=4).map(EcmaArray),
    ),
    max_leaves=20,
)


def same(decoded: Any, value: Any) -> bool:
    """Equal, and the AMF0 kind (object vs ECMA array vs strict array) kept."""
    if isinstance(value, dict):
        return (type(decoded) is type(value) and decoded.keys() == value.keys()
                and all(same(decoded[k], value[k]) for k in value))
    if isinstance(value, list):
        return type(decoded) is list and len(decoded) == len(value) and all(map(same, decoded, value))
    return bool(decoded == value)


@given(st.lists(amf_values, max_size=5))
def test_amf0_round_trip(values: list[Any]) -> None:
    assert same(amf0.decode_all(amf0.encode(*values)), values)


@given(st.binary(max_size=300))
def test_amf0_arbitrary_bytes(data: bytes) -> None:
    try:
        amf0.decode_all(data)
    except ProtocolError:
        pass


@given(amf_values, edits)
def test_amf0_mutated_values(value: Any, changes: list[tuple[int, int]]) -> None:
    try:
        amf0.decode_all(mutate(amf0.encode("connect", 1, value), changes))
    except ProtocolError:
        pass


# -- the chunk stream ---------------------------------------------------------------

csids = st.one_of(st.sampled_from([2, 3, 63, 64, 319, 320, 65599]), st.integers(2, 400))
messages = st.builds(
    RtmpMessage, csids, st.sampled_from([8, 9, 18, 20, 22]), st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1), st.binary(max_size=600),
)


def compress(stream: list[RtmpMessage], chunk_size: int) -> bytes:
    """A second writer that, like ffmpeg's and OBS's, picks fmt 1/2/3 headers when it can."""
    out = bytearray()
    last: dict[int, tuple[int, int, tuple[int, int], int]] = {}

    def basic(fmt: int, csid: int) -> bytes:
        if csid < 64:
            return bytes((fmt << 6 | csid,))
        if csid < 320:
            return bytes((fmt << 6, csid - 64))
        return bytes((fmt << 6 | 1,)) + (csid - 64).to_bytes(2, "little")

    for m in stream:
        prev = last.get(m.csid)
        if prev is None or m.stream_id != prev[3] or m.timestamp < prev[0]:
            fmt, field = 0, m.timestamp
        else:
            field = m.timestamp - prev[0]
            fmt = 1 if (len(m.payload), m.type_id) != prev[2] else 2 if field != prev[1] else 3
        last[m.csid] = (m.timestamp, field, (len(m.payload), m.type_id), m.stream_id)
        ext = struct.pack(">I", field) if field >= 0xFFFFFF else b""
        out += basic(fmt, m.csid)
        if fmt < 3:
            out += min(field, 0xFFFFFF).to_bytes(3, "big")
        if fmt < 2:
            out += len(m.payload).to_bytes(3, "big") + bytes((m.type_id,))
        if fmt == 0:
            out += struct.pack("<I", m.stream_id)
        out += ext + m.payload[:chunk_size]
        for offset in range(chunk_size, len(m.payload), chunk_size):
            out += basic(3, m.csid) + ext + m.payload[offset:offset + chunk_size]
    return bytes(out)


@quick
@given(st.lists(messages, max_size=8), st.integers(1, 700), st.integers(1, 700), st.integers(0, 8),
       st.lists(st.integers(0, 10**6), max_size=12))
def test_chunk_stream_split_anywhere(body: list[RtmpMessage], first_size: int, second_size: int,
                                     at: int, cuts: list[int]) -> None:
    # Start with one chunk size and switch to another mid-stream, as servers do.
    stream = [set_chunk_size(first_size), *body]
    stream.insert(1 + at % (len(body) + 1), set_chunk_size(second_size))
    writer = ChunkWriter()
    encoded = b"".join(writer.encode(m) for m in stream)
    reader = ChunkReader()
    got = [m for piece in split(encoded, cuts) for m in reader.feed(piece)]
    assert got == stream and reader.bytes_received == len(encoded)


@quick
@given(st.lists(st.tuples(st.sampled_from([3, 4, 70, 400]), st.integers(0, 3000), st.binary(max_size=300),
                          st.sampled_from([8, 9])), max_size=12),
       st.integers(1, 300), st.lists(st.integers(0, 10**6), max_size=12), st.booleans())
def test_compressed_headers_accumulate_deltas(items: list[tuple[int, int, bytes, int]], chunk_size: int,
                                             cuts: list[int], huge: bool) -> None:
    # Per chunk stream, non-decreasing times built from deltas (some past 0xFFFFFF).
    clock: dict[int, int] = {}
    stream = []
    for csid, delta, payload, type_id in items:
        clock[csid] = (clock.get(csid, 0) + delta * (2**14 if huge else 1)) % 2**32
        stream.append(RtmpMessage(csid, type_id, clock[csid], 1, payload))
    encoded = ChunkWriter().encode(set_chunk_size(chunk_size)) + compress(stream, chunk_size)
    reader = ChunkReader()
    got = [m for piece in split(encoded, cuts) for m in reader.feed(piece)]
    assert got == [set_chunk_size(chunk_size), *stream]


@quick
@given(st.binary(max_size=2000), st.lists(st.integers(0, 10**6), max_size=8))
def test_chunk_reader_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    reader = ChunkReader(max_message_bytes=4096)
    try:
        for piece in split(data, cuts):
            reader.feed(piece)
    except ProtocolError:
        pass


@quick
@given(edits, st.integers(200, 6000))
def test_chunk_reader_mutated_capture(changes: list[tuple[int, int]], length: int) -> None:
    try:
        ChunkReader().feed(mutate(CAPTURE[:length], changes))
    except ProtocolError:
        pass


@quick
@given(st.binary(max_size=4000), st.booleans(), st.lists(st.integers(0, 10**6), max_size=6))
def test_handshake_arbitrary_bytes(data: bytes, version_3: bool, cuts: list[int]) -> None:
    shake = ServerHandshake()
    try:
        for piece in split(b"\x03" + data if version_3 else data, cuts):
            if shake.done:
                break
            shake.feed(piece)
    except ProtocolError:
        pass


# -- FLV tags, files and codec configuration ----------------------------------------


def only_our_errors(parse: Callable[[bytes], object], data: bytes) -> None:
    try:
        parse(data)
    except ProtocolError:
        pass


@given(st.binary(max_size=64), edits)
def test_tag_and_config_parsers_arbitrary_bytes(data: bytes, changes: list[tuple[int, int]]) -> None:
    for parse in (flv.parse_video, flv.parse_audio, flv.parse_avc_config, flv.parse_aac_config, parse_sps):
        only_our_errors(parse, data)
    only_our_errors(flv.parse_avc_config, mutate(VIDEO_CONFIG, changes))
    only_our_errors(flv.parse_aac_config, mutate(AUDIO_CONFIG, changes))
    for prefix in (b"\x80", b"\x97", b"\x90", b"\x9f", b"\xaf", b"\x17"):
        only_our_errors(flv.parse_video, prefix + data)
        only_our_errors(flv.parse_audio, prefix + data)


tags = st.lists(st.tuples(st.integers(0, 31), st.integers(0, 2**32 - 1), st.binary(max_size=100)), max_size=6)


@given(tags)
def test_flv_file_round_trip(items: list[tuple[int, int, bytes]]) -> None:
    data = flv.file_header() + b"".join(flv.tag(*item) for item in items)
    assert list(flv.iter_file_tags(data)) == items


@given(tags, edits, st.integers(0, 2000), st.binary(max_size=200))
def test_flv_file_arbitrary_and_mutated(items: list[tuple[int, int, bytes]], changes: list[tuple[int, int]],
                                        cut: int, junk: bytes) -> None:
    data = flv.file_header() + b"".join(flv.tag(*item) for item in items)
    for candidate in (mutate(data, changes)[:cut], junk, flv.file_header() + junk):
        only_our_errors(lambda d: list(flv.iter_file_tags(d)), candidate)


@given(st.integers(1, 5), st.integers(0, 2), st.integers(-(2**23), 2**23 - 1), st.binary(max_size=20))
def test_avc_tag_header_round_trip(frame_type: int, packet: int, ct: int, body: bytes) -> None:
    payload = bytes((frame_type << 4 | 7, packet)) + ct.to_bytes(3, "big", signed=True) + body
    tag = flv.parse_video(payload)
    if frame_type == 5:
        assert tag.packet_type == "other"
    else:
        assert tag == flv.VideoTag("avc", frame_type == 1, ["config", "nalu", "end"][packet], ct, body)


class BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> None:
        self.bits += [(value >> (n - 1 - i)) & 1 for i in range(n)]

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(2 * code.bit_length() - 1, code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def to_bytes(self) -> bytes:
        bits = self.bits + [1] + [0] * (-(len(self.bits) + 1) % 8)  # rbsp_stop_one_bit
        return bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))


def escape(rbsp: bytes) -> bytes:
    """Insert emulation prevention bytes (H.264 section 7.4.1)."""
    out, zeros = bytearray(), 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


@st.composite
def sps_fields(draw: st.DrawFn) -> dict[str, Any]:
    profile = draw(st.sampled_from([66, 77, 88, 100, 110, 122, 244]))
    high = profile >= 100
    return {
        "profile": profile,
        "chroma": draw(st.integers(0, 3)) if high else 1,
        "separate": draw(st.booleans()),
        "scaling": draw(st.lists(st.lists(st.integers(-128, 127), max_size=4), max_size=12)) if high else [],
        "poc_type": draw(st.integers(0, 2)),
        "poc_cycle": draw(st.lists(st.integers(-1000, 1000), max_size=4)),
        "width_mbs": draw(st.integers(1, 240)),
        "height_units": draw(st.integers(1, 68)),
        "frame_mbs_only": draw(st.booleans()),
        "crop": draw(st.one_of(st.none(), st.tuples(*[st.integers(0, 40)] * 4))),
    }


def write_scaling_list(w: BitWriter, deltas: list[int], size: int) -> None:
    # Section 7.3.2.1.1.1: a delta that makes nextScale 0 ends the list early.
    last = 8
    for j in range(size):
        delta = deltas[j] if j < len(deltas) else 0
        w.se(delta)
        last = (last + delta + 256) % 256
        if last == 0:
            break


def build_sps(f: dict[str, Any]) -> bytes:
    w = BitWriter()
    for n, value in ((8, f["profile"]), (8, 0), (8, 31)):
        w.u(n, value)
    w.ue(0)  # seq_parameter_set_id
    if f["profile"] >= 100:
        w.ue(f["chroma"])
        if f["chroma"] == 3:
            w.u(1, f["separate"])
        for value in (0, 0):  # bit depths
            w.ue(value)
        w.u(1, 0)
        w.u(1, bool(f["scaling"]))
        if f["scaling"]:
            lists = (f["scaling"] + [[]] * 12)[:8 if f["chroma"] != 3 else 12]
            for i, deltas in enumerate(lists):
                w.u(1, bool(deltas))
                if deltas:
                    write_scaling_list(w, deltas, 16 if i < 6 else 64)
    w.ue(0)  # log2_max_frame_num_minus4
    w.ue(f["poc_type"])
    if f["poc_type"] == 0:
        w.ue(0)
    elif f["poc_type"] == 1:
        w.u(1, 0)
        w.se(1)
        w.se(-1)
        w.ue(len(f["poc_cycle"]))
        for offset in f["poc_cycle"]:
            w.se(offset)
    w.ue(1)  # max_num_ref_frames
    w.u(1, 0)
    w.ue(f["width_mbs"] - 1)
    w.ue(f["height_units"] - 1)
    w.u(1, f["frame_mbs_only"])
    if not f["frame_mbs_only"]:
        w.u(1, 0)
    w.u(1, 1)  # direct_8x8_inference_flag
    w.u(1, f["crop"] is not None)
    for value in f["crop"] or ():
        w.ue(value)
    return b"\x67" + escape(w.to_bytes())


@given(sps_fields())
def test_sps_geometry(f: dict[str, Any]) -> None:
    height_mbs = f["height_units"] * (1 if f["frame_mbs_only"] else 2)
    width, height = f["width_mbs"] * 16, height_mbs * 16
    if f["crop"]:
        array_type = 0 if f["chroma"] == 3 and f["separate"] else f["chroma"]
        unit_x = 2 if array_type in (1, 2) else 1
        unit_y = (2 if array_type == 1 else 1) * (1 if f["frame_mbs_only"] else 2)
        left, right, top, bottom = f["crop"]
        width, height = width - (left + right) * unit_x, height - (top + bottom) * unit_y
    nal = build_sps(f)
    if width <= 0 or height <= 0 or f["width_mbs"] * height_mbs > 139264:
        try:
            parse_sps(nal)
        except FlvError:
            return
        raise AssertionError("a degenerate SPS was accepted")
    info = parse_sps(nal)
    assert (info.width, info.height, info.profile) == (width, height, f["profile"])


@given(st.one_of(st.integers(1, 4), st.integers(6, 28), st.integers(30, 30), st.integers(32, 95)),
       st.one_of(st.integers(0, 12), st.integers(1, 2**24 - 1).map(lambda r: -r)),
       st.sampled_from(sorted({1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8, 11: 7, 12: 8, 13: 24, 14: 8})))
def test_aac_config_round_trip(object_type: int, rate: int, channel_config: int) -> None:
    w = BitWriter()
    if object_type >= 31:
        w.u(5, 31)
        w.u(6, object_type - 32)
    else:
        w.u(5, object_type)
    if rate < 0:
        w.u(4, 15)
        w.u(24, -rate)
    else:
        w.u(4, rate)
    w.u(4, channel_config)
    config = flv.parse_aac_config(w.to_bytes())
    rates = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
    channels = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8, 11: 7, 12: 8, 13: 24, 14: 8}[channel_config]
    expected_rate = -rate if rate < 0 else rates[rate]
    assert config == flv.AacConfig(object_type, expected_rate, channels, f"mp4a.40.{object_type}")

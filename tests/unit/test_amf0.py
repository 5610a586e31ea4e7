from __future__ import annotations

import struct
from pathlib import Path

import pytest

from media.ingest import amf0
from media.ingest.amf0 import UNDEFINED, Amf0Date, EcmaArray
from media.ingest.errors import Amf0Error, ProtocolError

DATA = Path(__file__).parent.parent / "data" / "rtmp"


def test_ffmpeg_connect_command_decodes() -> None:
    values = amf0.decode_all((DATA / "ffmpeg_connect.amf0").read_bytes())
    assert values[:2] == ["connect", 1.0]
    assert values[2]["app"] == "live"
    assert values[2]["flashVer"] == "FMLE/3.0 (compatible; Lavf59.27.100)"
    assert amf0.encode(*values) == (DATA / "ffmpeg_connect.amf0").read_bytes()


def test_truncated_capture_names_the_offset() -> None:
    with pytest.raises(Amf0Error, match=r"^AMF0 object key truncated at offset 100$"):
        amf0.decode_all((DATA / "ffmpeg_connect_truncated.amf0").read_bytes())


def test_known_encodings() -> None:
    assert amf0.encode(1) == b"\x00" + struct.pack(">d", 1.0)
    assert amf0.encode(True, None, UNDEFINED) == b"\x01\x01\x05\x06"
    assert amf0.encode("ab") == b"\x02\x00\x02ab"
    assert amf0.encode({"a": 1.0}) == b"\x03\x00\x01a\x00" + struct.pack(">d", 1.0) + b"\x00\x00\x09"
    assert amf0.encode(EcmaArray(a=None)) == b"\x08\x00\x00\x00\x01\x00\x01a\x05\x00\x00\x09"
    assert amf0.encode([None, False]) == b"\x0a\x00\x00\x00\x02\x05\x01\x00"
    assert amf0.encode(Amf0Date(1.5, -60)) == b"\x0b" + struct.pack(">dh", 1.5, -60)


def test_long_string_past_65535_bytes() -> None:
    text = "é" * 40000  # 80000 UTF-8 bytes
    data = amf0.encode(text)
    assert data[0] == amf0.LONG_STRING and amf0.decode(data) == (text, len(data))
    assert amf0.encode("x" * 65535)[0] == amf0.STRING


def test_types_survive_the_round_trip() -> None:
    values = amf0.decode_all(amf0.encode(EcmaArray(x=1), {"y": [UNDEFINED]}, Amf0Date(0.0, 0)))
    assert type(values[0]) is EcmaArray and type(values[1]) is dict
    assert values[1]["y"][0] is UNDEFINED and values[2] == Amf0Date(0.0, 0)
    assert repr(values[0]) == "EcmaArray({'x': 1.0})" and repr(UNDEFINED) == "UNDEFINED"


def test_decode_reports_the_next_offset() -> None:
    data = amf0.encode("a", 2.0)
    value, offset = amf0.decode(data)
    assert (value, offset) == ("a", 4)
    assert amf0.decode(data, offset) == (2.0, len(data))


def test_ecma_array_count_is_a_hint_and_terminator_optional() -> None:
    # Encoders disagree on the count; the terminator decides.  Some leave it off.
    wrong_count = b"\x08\x00\x00\x00\x00\x00\x01a\x05\x00\x00\x09"
    assert amf0.decode_all(wrong_count) == [{"a": None}]
    assert amf0.decode_all(b"\x08\x00\x00\x00\x01\x00\x01a\x05") == [{"a": None}]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x02\x00\x05ab", "AMF0 string truncated at offset 3"),
        (b"\x00\x00\x00", "AMF0 number truncated at offset 1"),
        (b"\x01", "AMF0 boolean truncated at offset 1"),
        (b"\x0b\x00", "AMF0 date truncated at offset 1"),
        (b"\x0c\x00\x00\x00\x09abc", "AMF0 long string truncated at offset 5"),
        (b"\x0c\xff\xff\xff\xff", "AMF0 long string of 4294967295 bytes at offset 0 is over 1048576"),
        (b"\x03\x00\x01a", "AMF0 value marker truncated at offset 4"),
        (b"\x03\x00", "AMF0 object key truncated at offset 1"),
        (b"\x03\x00\x00", "AMF0 object end truncated at offset 3"),
        (b"\x08\x00\x00", "AMF0 ECMA array truncated at offset 1"),
        (b"\x0a\x00\x00\x00\x02\x05", "AMF0 strict array count 2 at offset 0 is impossible"),
        (b"\x0a\xff\xff\xff\xff", "AMF0 strict array count 4294967295 at offset 0 is impossible"),
        (b"\x07\x00\x01", "AMF0 reference marker 0x07 at offset 0 is not supported"),
        (b"\x11\x02", "AMF0 avmplus-object (AMF3) marker 0x11 at offset 0 is not supported"),
        (b"\x05\x10\x00\x01a", "AMF0 typed object marker 0x10 at offset 1 is not supported"),
        (b"\x09", "AMF0 object-end marker outside an object at offset 0"),
        (b"\x20", "AMF0 unknown marker 0x20 at offset 0"),
        (b"\x02\x00\x02\xff\xfe", "AMF0 string at offset 3 is not valid UTF-8"),
    ],
)
def test_bad_input_says_what_and_where(data: bytes, message: str) -> None:
    with pytest.raises(Amf0Error) as info:
        amf0.decode_all(data)
    assert str(info.value) == message
    assert isinstance(info.value, ProtocolError) and isinstance(info.value, ValueError)


def test_nesting_is_bounded_both_ways() -> None:
    deep: list[object] = []
    inner = deep
    for _ in range(amf0.MAX_DEPTH - 1):
        inner.append([])
        inner = inner[0]  # type: ignore[assignment]
    assert amf0.decode_all(amf0.encode(deep)) == [deep]
    with pytest.raises(Amf0Error, match="nested deeper than 32"):
        amf0.encode([deep])
    too_deep = b"\x0a\x00\x00\x00\x01" * (amf0.MAX_DEPTH + 1) + b"\x05"
    with pytest.raises(Amf0Error, match=r"at offset 160 nested deeper than 32"):
        amf0.decode_all(too_deep)
    cyclic: dict[str, object] = {}
    cyclic["self"] = cyclic
    with pytest.raises(Amf0Error, match="nested deeper"):
        amf0.encode(cyclic)


def test_unencodable_values() -> None:
    with pytest.raises(TypeError, match="cannot encode set as AMF0"):
        amf0.encode({1, 2})
    with pytest.raises(TypeError, match="keys must be str"):
        amf0.encode({1: "x"})
    with pytest.raises(Amf0Error, match="out of range"):
        amf0.encode(10**400)

"""AMF0, the value encoding of RTMP command and data messages.

RTMP 1.0 section 7.1 carries ``connect``, ``createStream``, ``publish`` and
``@setDataFrame``/``onMetaData`` as a sequence of AMF0 values; this module turns
those bytes into Python values and back.  The format is the Action Message
Format AMF0 specification (Adobe, 2006), section 2:

=========================  =================  ===============================
AMF0 type (marker)         Python             notes
=========================  =================  ===============================
number (0x00)              ``float``          ``int`` is encoded as a number
boolean (0x01)             ``bool``
string (0x02) / long       ``str``            long string (0x0C) past 65535
string (0x0C)                                 UTF-8 bytes
object (0x03)              ``dict``           ``str`` keys
null (0x05)                ``None``
undefined (0x06)           ``UNDEFINED``
ECMA array (0x08)          ``EcmaArray``      a ``dict`` subclass
strict array (0x0A)        ``list``
date (0x0B)                ``Amf0Date``
=========================  =================  ===============================

References, movie clips, record sets, XML documents, typed objects and the
switch to AMF3 are refused with ``Amf0Error``: no RTMP publisher we ingest from
sends them.  Decoding is bounded: nesting depth and element counts are named
limits, and every length is checked against the bytes actually present, so
arbitrary input raises ``Amf0Error`` and never allocates beyond its own size.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any

from media.ingest.errors import Amf0Error

__all__ = ["UNDEFINED", "Amf0Date", "EcmaArray", "Undefined", "decode", "decode_all", "encode"]

NUMBER, BOOLEAN, STRING, OBJECT, MOVIECLIP, NULL, UNDEFINED_MARKER, REFERENCE = range(8)
ECMA_ARRAY, OBJECT_END, STRICT_ARRAY, DATE, LONG_STRING, UNSUPPORTED = range(8, 14)
RECORDSET, XML_DOCUMENT, TYPED_OBJECT, AVMPLUS_OBJECT = range(14, 18)

#: Deepest nesting of objects and arrays we decode or encode.  AMF0 sets no limit;
#: RTMP commands nest two or three levels, so 32 is generous and keeps recursion small.
MAX_DEPTH = 32
#: Most properties in one object/ECMA array, or items in one strict array.
MAX_ELEMENTS = 65_536
#: Largest long string (AMF0 2.14 allows 2**32 - 1 bytes); metadata never comes near.
MAX_LONG_STRING_BYTES = 1 << 20
#: A plain string and an object key carry a u16 length (AMF0 2.4).
MAX_SHORT_STRING_BYTES = 0xFFFF

_NAMES = {
    MOVIECLIP: "movieclip", REFERENCE: "reference", UNSUPPORTED: "unsupported",
    RECORDSET: "recordset", XML_DOCUMENT: "XML document", TYPED_OBJECT: "typed object",
    AVMPLUS_OBJECT: "avmplus-object (AMF3)",
}


class Undefined(enum.Enum):
    """The type of ``UNDEFINED``, AMF0's undefined (distinct from null/``None``)."""

    UNDEFINED = "undefined"

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED = Undefined.UNDEFINED


class EcmaArray(dict[str, Any]):
    """An AMF0 ECMA array: an associative array, kept apart from a plain object."""

    def __repr__(self) -> str:
        return f"EcmaArray({dict.__repr__(self)})"


@dataclass(frozen=True)
class Amf0Date:
    """An AMF0 date: milliseconds since the Unix epoch and a time zone (reserved, 0)."""

    ms: float
    tz: int = 0


def encode(*values: Any) -> bytes:
    """Encode values as consecutive AMF0 values."""
    out = bytearray()
    for value in values:
        _encode_value(out, value, 0)
    return bytes(out)


def _encode_key(out: bytearray, key: Any) -> None:
    if not isinstance(key, str):
        raise TypeError(f"AMF0 object keys must be str, not {type(key).__name__}")
    raw = key.encode("utf-8")
    if len(raw) > MAX_SHORT_STRING_BYTES:
        raise Amf0Error(f"AMF0 object key of {len(raw)} bytes is over {MAX_SHORT_STRING_BYTES}")
    out += struct.pack(">H", len(raw)) + raw


def _encode_value(out: bytearray, value: Any, depth: int) -> None:
    if isinstance(value, (dict, list, tuple)) and depth >= MAX_DEPTH:
        raise Amf0Error(f"AMF0 value nested deeper than {MAX_DEPTH}")
    # bool first: it is an int subclass and would otherwise become a number.
    if isinstance(value, bool):
        out += bytes((BOOLEAN, int(value)))
    elif isinstance(value, (int, float)):
        try:
            out += struct.pack(">Bd", NUMBER, float(value))
        except OverflowError:
            raise Amf0Error(f"AMF0 number out of range: {value}") from None
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) <= MAX_SHORT_STRING_BYTES:
            out += struct.pack(">BH", STRING, len(raw)) + raw
        else:
            out += struct.pack(">BI", LONG_STRING, len(raw)) + raw
    elif value is None:
        out.append(NULL)
    elif value is UNDEFINED:
        out.append(UNDEFINED_MARKER)
    elif isinstance(value, Amf0Date):
        out += struct.pack(">Bdh", DATE, value.ms, value.tz)
    elif isinstance(value, dict):
        if isinstance(value, EcmaArray):
            out += struct.pack(">BI", ECMA_ARRAY, len(value))
        else:
            out.append(OBJECT)
        for key, item in value.items():
            _encode_key(out, key)
            _encode_value(out, item, depth + 1)
        out += b"\x00\x00" + bytes((OBJECT_END,))
    elif isinstance(value, (list, tuple)):
        out += struct.pack(">BI", STRICT_ARRAY, len(value))
        for item in value:
            _encode_value(out, item, depth + 1)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


def decode_all(data: bytes) -> list[Any]:
    """Decode every AMF0 value in ``data`` (a whole command or data message body)."""
    decoder = _Decoder(bytes(data))
    values: list[Any] = []
    offset = 0
    while offset < len(data):
        value, offset = decoder.value(offset, 0)
        values.append(value)
    return values


def decode(data: bytes, offset: int = 0) -> tuple[Any, int]:
    """Decode one AMF0 value at ``offset``; return it and the offset just past it."""
    return _Decoder(bytes(data)).value(offset, 0)


class _Decoder:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def need(self, offset: int, n: int, what: str) -> None:
        if offset < 0 or offset + n > len(self.data):
            raise Amf0Error(f"AMF0 {what} truncated at offset {offset}")

    def utf8(self, offset: int, n: int, what: str) -> tuple[str, int]:
        self.need(offset, n, what)
        try:
            return self.data[offset:offset + n].decode("utf-8"), offset + n
        except UnicodeDecodeError:
            raise Amf0Error(f"AMF0 {what} at offset {offset} is not valid UTF-8") from None

    def short_string(self, offset: int, what: str) -> tuple[str, int]:
        self.need(offset, 2, what)
        (n,) = struct.unpack_from(">H", self.data, offset)
        return self.utf8(offset + 2, n, what)

    def value(self, offset: int, depth: int) -> tuple[Any, int]:
        self.need(offset, 1, "value marker")
        marker = self.data[offset]
        body = offset + 1
        if marker == NUMBER:
            self.need(body, 8, "number")
            return struct.unpack_from(">d", self.data, body)[0], body + 8
        if marker == BOOLEAN:
            self.need(body, 1, "boolean")
            return self.data[body] != 0, body + 1
        if marker == STRING:
            return self.short_string(body, "string")
        if marker == LONG_STRING:
            self.need(body, 4, "long string")
            (n,) = struct.unpack_from(">I", self.data, body)
            if n > MAX_LONG_STRING_BYTES:
                raise Amf0Error(
                    f"AMF0 long string of {n} bytes at offset {offset} is over {MAX_LONG_STRING_BYTES}"
                )
            return self.utf8(body + 4, n, "long string")
        if marker == NULL:
            return None, body
        if marker == UNDEFINED_MARKER:
            return UNDEFINED, body
        if marker == DATE:
            self.need(body, 10, "date")
            ms, tz = struct.unpack_from(">dh", self.data, body)
            return Amf0Date(ms, tz), body + 10
        if marker in (OBJECT, ECMA_ARRAY, STRICT_ARRAY):
            if depth >= MAX_DEPTH:
                raise Amf0Error(f"AMF0 value at offset {offset} nested deeper than {MAX_DEPTH}")
            if marker == STRICT_ARRAY:
                return self.strict_array(offset, depth)
            return self.properties(offset, marker, depth)
        if marker == OBJECT_END:
            raise Amf0Error(f"AMF0 object-end marker outside an object at offset {offset}")
        name = _NAMES.get(marker)
        if name is None:
            raise Amf0Error(f"AMF0 unknown marker 0x{marker:02x} at offset {offset}")
        raise Amf0Error(f"AMF0 {name} marker 0x{marker:02x} at offset {offset} is not supported")

    def strict_array(self, offset: int, depth: int) -> tuple[list[Any], int]:
        self.need(offset + 1, 4, "strict array")
        (count,) = struct.unpack_from(">I", self.data, offset + 1)
        # Each item takes at least its marker byte, so a count past the remaining
        # bytes is a lie we can refuse before allocating anything.
        if count > MAX_ELEMENTS or count > len(self.data) - offset - 5:
            raise Amf0Error(f"AMF0 strict array count {count} at offset {offset} is impossible")
        items: list[Any] = []
        pos = offset + 5
        for _ in range(count):
            item, pos = self.value(pos, depth + 1)
            items.append(item)
        return items, pos

    def properties(self, offset: int, marker: int, depth: int) -> tuple[dict[str, Any], int]:
        result: dict[str, Any]
        if marker == ECMA_ARRAY:
            self.need(offset + 1, 4, "ECMA array")
            # The count is only a hint (encoders disagree about it); the
            # empty-key + object-end terminator is what ends the array.
            (count,) = struct.unpack_from(">I", self.data, offset + 1)
            result, pos, what = EcmaArray(), offset + 5, "ECMA array"
        else:
            count, result, pos, what = -1, {}, offset + 1, "object"
        while True:
            if marker == ECMA_ARRAY and pos == len(self.data) and len(result) == count:
                return result, pos  # some encoders leave the terminator off
            key, after_key = self.short_string(pos, f"{what} key")
            if key == "":
                self.need(after_key, 1, f"{what} end")
                if self.data[after_key] == OBJECT_END:
                    return result, after_key + 1
            if len(result) >= MAX_ELEMENTS:
                raise Amf0Error(f"AMF0 {what} at offset {offset} has over {MAX_ELEMENTS} properties")
            result[key], pos = self.value(after_key, depth + 1)

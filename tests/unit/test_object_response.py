"""gateways/object_response.py: Range parsing (RFC 9110 14.1.2) as Starlette's FileResponse answers it."""

from __future__ import annotations

import pytest

from gateways.errors import BadRequest
from gateways.object_response import ByteRange, RangeNotSatisfiable, parse_range


@pytest.mark.parametrize(("header", "expected"), [
    ("bytes=0-99", (0, 100)),
    ("bytes=100-199", (100, 200)),
    ("bytes=100-", (100, 5000)),
    ("bytes=4990-99999", (4990, 5000)),  # an end past the object is cut to it
    ("bytes=-100", (4900, 5000)),  # the last 100 bytes
    ("bytes=-99999", (0, 5000)),
    ("Bytes = 5-9", (5, 10)),
])
def test_single_ranges(header: str, expected: tuple[int, int]) -> None:
    part = parse_range(header, 5000)
    assert part == ByteRange(*expected, 5000)
    assert part.content_range == f"bytes {expected[0]}-{expected[1] - 1}/5000"


@pytest.mark.parametrize("header", ["bytes=0-1,5-9", "items=0-9", "bytes"])
def test_what_is_not_one_byte_range_gets_the_whole_object(header: str) -> None:
    assert parse_range(header, 5000) is None


@pytest.mark.parametrize(("header", "size"), [("bytes=5000-", 5000), ("bytes=9000-9999", 5000), ("bytes=-0", 5000),
                                              ("bytes=0-", 0)])
def test_a_range_past_the_end_is_416_with_the_size(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, size)
    assert caught.value.status == 416 and caught.value.headers == {"Content-Range": f"bytes */{size}"}


@pytest.mark.parametrize("header", ["bytes=-", "bytes=a-b", "bytes=10-5", "bytes=1", "bytes=٣-4",
                                    "bytes=" + "1" * 300 + "-"])
def test_malformed_ranges_are_a_400_with_the_reason(header: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_range(header, 5000)
    assert "Range" in caught.value.detail

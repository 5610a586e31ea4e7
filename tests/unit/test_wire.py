from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topics.errors import SerializationError
from topics.wire import frame, unframe


@given(st.integers(0, 2**32 - 1), st.binary(max_size=64))
def test_frame_round_trip(schema_id: int, body: bytes) -> None:
    got_id, got_body = unframe(frame(schema_id, body))
    assert got_id == schema_id and bytes(got_body) == body


@given(st.binary(max_size=16))
def test_arbitrary_bytes_raise_only_our_error(data: bytes) -> None:
    try:
        unframe(data)
    except SerializationError:
        pass


def test_messages() -> None:
    with pytest.raises(SerializationError, match="shorter than the 5-byte"):
        unframe(b"\x00\x01")
    with pytest.raises(SerializationError, match="unknown magic byte 7"):
        unframe(b"\x07\x00\x00\x00\x01body")

"""A bounded MSB-first bit reader with Exp-Golomb codes.

H.264 parameter sets (ITU-T H.264 section 7.2, descriptors u(n), ue(v), se(v);
Exp-Golomb parsing in section 9.1) and the MPEG-4 AudioSpecificConfig
(ISO/IEC 14496-3 section 1.6.2.1) are bit fields, not byte fields.  Reading
past the end raises ``FlvError`` naming the structure and the bit offset, and
Exp-Golomb prefixes are capped so arbitrary bytes cannot yield huge numbers.
"""

from __future__ import annotations

from media.ingest.errors import FlvError

#: ue(v) values in the syntax we read fit in 32 bits, so a prefix of more than
#: 31 zero bits can only come from corrupt data (H.264 section 9.1).
MAX_EXP_GOLOMB_ZEROS = 31


class BitReader:
    """Read bits, most significant first, from ``data``; ``what`` names it in errors."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.what = what
        self.pos = 0  # in bits
        self._end = len(data) * 8

    def u(self, n: int) -> int:
        """Read an n-bit unsigned integer."""
        if self.pos + n > self._end:
            raise FlvError(f"{self.what} truncated at bit {self.pos} (needs {n} more)")
        value = 0
        for _ in range(n):
            byte = self.data[self.pos >> 3]
            value = (value << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def flag(self) -> bool:
        """Read one bit as a bool."""
        return self.u(1) == 1

    def ue(self) -> int:
        """Read an unsigned Exp-Golomb code, ue(v)."""
        start, zeros = self.pos, 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > MAX_EXP_GOLOMB_ZEROS:
                raise FlvError(f"{self.what} has an Exp-Golomb code too long at bit {start}")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        """Read a signed Exp-Golomb code, se(v): 1, -1, 2, -2, ... for 1, 2, 3, 4, ..."""
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)

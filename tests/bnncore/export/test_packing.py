"""Bit packing against a bit-by-bit reference written in plain Python."""

from __future__ import annotations

import numpy as np
import pytest

from bnncore.export import packing


def reference_pack(codes: list[int], bits: int) -> bytes:
    """Element i occupies stream bits [i·bits, (i+1)·bits), LSB first; stream
    bit j is bit j % 8 of byte j // 8."""
    out = bytearray(-(-len(codes) * bits // 8))
    for i, code in enumerate(codes):
        for b in range(bits):
            j = i * bits + b
            if (code >> b) & 1:
                out[j // 8] |= 1 << (j % 8)
    return bytes(out)


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 61])
def test_codes_pack_as_the_reference_and_back(bits: int, count: int) -> None:
    rng = np.random.default_rng(bits * 100 + count)
    codes = rng.integers(0, 2**bits, size=count)
    packed = packing.pack_codes(codes, bits)
    assert packed.dtype == np.uint8
    assert packed.tobytes() == reference_pack(codes.tolist(), bits)
    assert packed.size == packing.packed_size(count, bits)
    np.testing.assert_array_equal(packing.unpack_codes(packed, bits, count), codes)


def test_signs_are_bit_i_of_byte_i_over_8() -> None:
    negative = np.array([True, False, False, True, True, True, False, False, True])
    packed = packing.pack_signs(negative)
    # byte 0: elements 0..7 → bits 0,3,4,5 set = 1 + 8 + 16 + 32 = 57; byte 1: bit 0
    assert packed.tolist() == [57, 1]
    np.testing.assert_array_equal(packing.unpack_signs(packed, 9), negative)


def test_signs_read_the_array_in_c_order() -> None:
    negative = np.array([[True, True], [False, False]]).T  # a Fortran-ordered view
    # C order of the transposed array: [True, False, True, False] → 0b0101.
    assert packing.pack_signs(negative).tolist() == [5]

"""Bit packing of sign and level codes (pure NumPy).

One bit stream per tensor: element ``i`` of the C-order flattened tensor holds
bits ``[i·k, (i+1)·k)`` of the stream, least significant bit first, and stream
bit ``j`` is bit ``j & 7`` of byte ``j >> 3`` (``numpy.packbits(...,
bitorder="little")``). With ``k = 1`` this is the sign layout: element ``i`` is
bit ``i & 7`` of byte ``i >> 3``, and a set bit means −1 (the sign bit of the
float, as in ``bnncore.engine`` and Larq Compute Engine; format version 1 had
the opposite). Unused bits of the last byte are zero.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "pack_codes",
    "pack_signs",
    "packed_size",
    "unpack_codes",
    "unpack_signs",
]


def packed_size(count: int, bits: int) -> int:
    """Bytes holding ``count`` codes of ``bits`` bits: ``ceil(count·bits / 8)``."""
    return -(-count * bits // 8)


def pack_signs(negative: np.ndarray) -> np.ndarray:
    """Packs a boolean array (``True`` = −1, ``False`` = +1) at 1 bit per element.

    Args:
        negative: Booleans of any shape, read in C order.

    Returns:
        A 1-D ``uint8`` array of ``ceil(size / 8)`` bytes.
    """
    flat = np.ascontiguousarray(negative, dtype=bool).reshape(-1)
    return np.packbits(flat, bitorder="little")


def unpack_signs(packed: np.ndarray, count: int) -> np.ndarray:
    """The booleans :func:`pack_signs` packed (``True`` = −1), as a 1-D array."""
    return np.unpackbits(packed, count=count, bitorder="little").astype(bool)


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Packs unsigned codes below ``2**bits`` at ``bits`` bits per element.

    Args:
        codes: Non-negative integers of any shape, read in C order.
        bits: Bits per code, 1 to 8.

    Returns:
        A 1-D ``uint8`` array of ``ceil(size·bits / 8)`` bytes.
    """
    flat = np.ascontiguousarray(codes).reshape(-1).astype(np.uint8)
    shifts = np.arange(bits, dtype=np.uint8)
    stream = (flat[:, None] >> shifts) & 1  # (count, bits), LSB first
    return np.packbits(stream.reshape(-1), bitorder="little")


def unpack_codes(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The codes :func:`pack_codes` packed, as a 1-D ``uint8`` array."""
    stream = np.unpackbits(packed, count=count * bits, bitorder="little")
    weights = (1 << np.arange(bits, dtype=np.uint16)).astype(np.uint16)
    codes = stream.reshape(count, bits).astype(np.uint16) @ weights
    return codes.astype(np.uint8)

"""Bit packing of sign and level codes: :mod:`bnncore_runtime.packing`."""

from bnncore_runtime.packing import (
    pack_codes,
    pack_signs,
    packed_size,
    unpack_codes,
    unpack_signs,
)

__all__ = [
    "pack_codes",
    "pack_signs",
    "packed_size",
    "unpack_codes",
    "unpack_signs",
]

"""The safetensors container: a bounded, strict reader in NumPy alone.

A safetensors file is an 8-byte little-endian header length ``N``, ``N`` bytes
of JSON (``"__metadata__"``: str → str, then one entry per tensor with
``dtype``, ``shape`` and ``data_offsets`` relative to the data section), then
the data section. The reader below checks all of it — sizes against limits,
JSON types, dtypes, shapes, element counts against byte lengths, offsets that
tile the data section exactly — before it reads a single tensor (a copy of
its byte range, as a little-endian NumPy array). Nothing is ever unpickled or
evaluated. :mod:`bnncore.export` reads files with this parser too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DTYPES",
    "MAX_HEADER_BYTES",
    "MAX_NAME_LENGTH",
    "MAX_RANK",
    "MAX_TENSORS",
    "TensorEntry",
    "WeightsFileError",
    "check_shape",
    "load_json",
    "parse",
]

MAX_HEADER_BYTES = 8 * 2**20
"""Default limit on the JSON header (metadata included), in bytes."""
MAX_TENSORS = 100_000
"""Most tensors one file may hold."""
MAX_RANK = 8
"""Most dimensions of a tensor (stored or encoded)."""
MAX_NAME_LENGTH = 1024
"""Longest tensor name, in characters."""

DTYPES: dict[str, np.dtype[Any]] = {"F32": np.dtype("<f4"), "U8": np.dtype("u1")}
"""The safetensors dtypes this format uses, and their NumPy equivalents."""


class WeightsFileError(ValueError):
    """A weights file that is malformed, over a limit, or not for this model."""


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of the header: dtype code, shape and byte range in the data."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def check_shape(
    field: str, shape: Any, limit: int, why: str = "the limit"
) -> tuple[int, ...]:
    """Validates a shape: a list of at most :data:`MAX_RANK` non-negative ints
    whose product is at most ``limit`` (``why`` says where the limit comes from).

    Raises:
        WeightsFileError: naming ``field`` and the value received.
    """
    if not isinstance(shape, list) or len(shape) > MAX_RANK:
        raise WeightsFileError(
            f"{field}: expected a list of at most {MAX_RANK} dimensions, "
            f"received {_short(shape)}"
        )
    product = 1
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 0:
            raise WeightsFileError(
                f"{field}: dimensions must be non-negative integers, "
                f"received {_short(shape)}"
            )
        product *= dim
        if product > limit:
            raise WeightsFileError(
                f"{field}: shape {_short(shape)} has more than {limit:,} elements "
                f"({why})"
            )
    return tuple(shape)


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise WeightsFileError(f"header: duplicate key {_short(key)}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise WeightsFileError(f"header: {name} is not allowed in JSON")


def load_json(field: str, text: str | bytes) -> Any:
    """Strict JSON: no duplicate keys, no NaN/Infinity, bounded nesting."""
    try:
        return json.loads(
            text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant
        )
    except WeightsFileError:
        raise
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeError
        raise WeightsFileError(f"{field}: not valid JSON ({error})") from None


def parse(
    data: bytes, *, max_header_bytes: int = MAX_HEADER_BYTES
) -> tuple[dict[str, str], dict[str, TensorEntry], dict[str, np.ndarray]]:
    """Validates a safetensors file and reads its tensors.

    Args:
        data: The whole file.
        max_header_bytes: Largest JSON header accepted.

    Returns:
        ``(metadata, entries, arrays)``: the ``__metadata__`` dict, the header
        entry of each tensor, and each tensor as a NumPy array.

    Raises:
        WeightsFileError: what is wrong, with the field and the value received.
    """
    if len(data) < 8:
        raise WeightsFileError(
            f"file: {len(data)} bytes is too short for a safetensors file "
            "(at least 8 bytes of header length)"
        )
    header_length = int.from_bytes(data[:8], "little")
    if header_length > max_header_bytes:
        raise WeightsFileError(
            f"header: length {header_length:,} bytes exceeds the limit "
            f"{max_header_bytes:,}"
        )
    if 8 + header_length > len(data):
        raise WeightsFileError(
            f"header: length {header_length:,} bytes runs past the end of the "
            f"file ({len(data):,} bytes): the file is truncated or corrupted"
        )
    header = load_json("header", bytes(data[8 : 8 + header_length]))
    if not isinstance(header, dict):
        raise WeightsFileError(
            f"header: expected a JSON object, received {_short(header)}"
        )
    data_size = len(data) - 8 - header_length
    metadata = header.pop("__metadata__", None)
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise WeightsFileError(
            "header.__metadata__: expected an object of strings (a bnncore weights "
            f"file has one), received {_short(metadata)}"
        )
    if len(header) > MAX_TENSORS:
        raise WeightsFileError(
            f"header: {len(header):,} tensors exceeds the limit {MAX_TENSORS:,}"
        )
    entries = {name: _entry(name, raw, data_size) for name, raw in header.items()}
    _check_tiling(entries, data_size)
    start = 8 + header_length
    arrays = {
        name: np.frombuffer(
            data,
            dtype=DTYPES[entry.dtype],
            count=math.prod(entry.shape),
            offset=start + entry.begin,
        )
        .reshape(entry.shape)
        .copy()
        for name, entry in entries.items()
    }
    return metadata, entries, arrays


def _entry(name: str, raw: Any, data_size: int) -> TensorEntry:
    where = f"header[{_short(name)}]"
    if not name or len(name) > MAX_NAME_LENGTH:
        raise WeightsFileError(
            f"{where}: tensor names must have 1 to {MAX_NAME_LENGTH} characters"
        )
    if not isinstance(raw, dict) or set(raw) != {"dtype", "shape", "data_offsets"}:
        raise WeightsFileError(
            f"{where}: expected an object with dtype, shape and data_offsets, "
            f"received {_short(raw)}"
        )
    dtype = raw["dtype"]
    if dtype not in DTYPES:
        raise WeightsFileError(
            f"{where}.dtype: received {_short(dtype)}, allowed: {', '.join(DTYPES)}"
        )
    itemsize = DTYPES[dtype].itemsize
    shape = check_shape(
        f"{where}.shape",
        raw["shape"],
        data_size // itemsize,
        f"all that {data_size:,} bytes of data can hold",
    )
    offsets = raw["data_offsets"]
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise WeightsFileError(
            f"{where}.data_offsets: expected [begin, end] with 0 <= begin <= end, "
            f"received {_short(offsets)}"
        )
    if offsets[1] > data_size:
        raise WeightsFileError(
            f"{where}.data_offsets: {offsets} runs past the end of the data section "
            f"({data_size:,} bytes): the file is truncated or corrupted"
        )
    begin, end = offsets
    expected = math.prod(shape) * itemsize
    if end - begin != expected:
        raise WeightsFileError(
            f"{where}: shape {list(shape)} of {dtype} needs {expected:,} bytes but "
            f"data_offsets hold {end - begin:,}"
        )
    return TensorEntry(name, dtype, shape, begin, end)


def _check_tiling(entries: dict[str, TensorEntry], data_size: int) -> None:
    position = 0
    for entry in sorted(entries.values(), key=lambda e: (e.begin, e.end)):
        if entry.begin != position:
            raise WeightsFileError(
                f"header[{_short(entry.name)}].data_offsets: tensors must tile the "
                f"data section without gaps or overlaps; expected begin {position:,}, "
                f"received {entry.begin:,}"
            )
        position = entry.end
    if position != data_size:
        raise WeightsFileError(
            f"file: the tensors cover {position:,} bytes but the data section holds "
            f"{data_size:,}: the file is truncated or has trailing bytes"
        )

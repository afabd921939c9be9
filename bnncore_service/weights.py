"""Uploaded weights: reading an untrusted safetensors file and checking it.

Two kinds of file are accepted, both keyed by the names of
``bnncore.export.weight_names`` (``conv1/kernel``, ``bn1/beta``, ...):

* a **bnncore weights file** (``bnncore.export.write_weights``: sign bits,
  k-bit level codes, folded BatchNorm; its ``__metadata__`` says
  ``"format": "bnncore.weights"``), decoded by ``bnncore.export.read_weights``;
* a **plain safetensors file** of float32 tensors (any other metadata, or none),
  as ``safetensors.numpy.save_file`` writes it. ``read_weights`` refuses such
  files (it requires the bnncore metadata), so this module reads them through
  the same strict container reader (``bnncore.export.container.parse``).

Either way nothing is unpickled or evaluated, every size is bounded before
anything is allocated, and then every name, shape and dtype is compared with
the built model, and every value must be finite. Nothing is stored or assigned
unless all of it fits.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bnncore import export
from bnncore.export import container

__all__ = [
    "CheckedWeights",
    "WeightsRefusedError",
    "check",
    "check_file",
    "load_into",
    "max_file_bytes",
    "read",
]

_EXTRA_ELEMENTS = 1_000_000
"""Decoded values allowed beyond the model's own count (so that a file with a
few extra tensors gets a list of differences, not a size error)."""


class WeightsRefusedError(ValueError):
    """An upload that cannot be used.

    Attributes:
        status: 400 for a file that is not a readable safetensors file, 422 for
            a readable file that does not fit the model.
        differences: Every name/shape/dtype difference (mismatches only).
    """

    def __init__(
        self, status: int, message: str, differences: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.differences = list(differences or [])


@dataclass(frozen=True)
class CheckedWeights:
    """Weights that fit a model: decoded arrays, the file's sha256 and kind."""

    arrays: dict[str, np.ndarray] = field(repr=False)
    sha256: str
    size: int
    format: str  # "bnncore" or "float32"


def max_file_bytes(params: int, max_weights_bytes: int) -> int:
    """The largest weights file that can fit a model of ``params`` values.

    A file that fits holds at most 4 bytes (float32) per value, plus the
    extra tensors still worth listing as differences and a JSON header, so
    anything larger is refused before it is read (and the memory of checking
    an upload is bounded by the model's size, not by what a client sends).

    Args:
        params: The model's parameter count (its version record's ``params``).
        max_weights_bytes: ``BNN_MAX_WEIGHTS_BYTES``.
    """
    fits = 4 * (params + _EXTRA_ELEMENTS) + 8 + container.MAX_HEADER_BYTES
    return min(max_weights_bytes, fits)


def _model_elements(model: Any) -> int:
    return sum(int(np.prod(v.shape)) for v in export.weight_names(model).values())


def _plain_header(data: bytes) -> dict[str, Any] | None:
    """The JSON header of a plain (non-bnncore) safetensors file, else ``None``.

    ``None`` also when the header cannot be read: ``read_weights`` then names
    the problem.
    """
    if len(data) < 8:
        return None
    length = int.from_bytes(data[:8], "little")
    if length > container.MAX_HEADER_BYTES or 8 + length > len(data):
        return None
    try:
        header = container.load_json("header", bytes(data[8 : 8 + length]))
    except export.WeightsFileError:
        return None
    if not isinstance(header, dict):
        return None
    metadata = header.get("__metadata__")
    if isinstance(metadata, dict) and (
        metadata.get("format") == export.FORMAT or "encodings" in metadata
    ):
        return None  # meant as a bnncore file: read_weights checks it
    return header


def read(data: bytes, *, max_bytes: int, max_elements: int) -> tuple[dict, str]:
    """Decodes an uploaded file into float32 arrays keyed by weight name.

    Returns:
        ``(arrays, format)`` with format ``"bnncore"`` or ``"float32"``.

    Raises:
        WeightsRefusedError: (400) the file is malformed or over a limit.
    """
    if not data:
        raise WeightsRefusedError(
            400,
            "weights file: empty body; send the safetensors file as the raw "
            "request body (Content-Type: application/octet-stream)",
        )
    if len(data) > max_bytes:
        raise WeightsRefusedError(
            400, f"weights file: {len(data):,} bytes exceeds the limit {max_bytes:,}"
        )
    try:
        header = _plain_header(data)
        if header is None:
            arrays = export.read_weights(
                data, max_bytes=max_bytes, max_elements=max_elements
            )
            return arrays, "bnncore"
        if "__metadata__" not in header:
            # The container reader requires a metadata object; an empty one
            # changes nothing else (offsets are relative to the data section).
            rest = data[8 + int.from_bytes(data[:8], "little") :]
            text = json.dumps({"__metadata__": {}, **header}).encode()
            data = len(text).to_bytes(8, "little") + text + rest
        _, entries, arrays = container.parse(data)
    except export.WeightsFileError as error:
        raise WeightsRefusedError(400, f"weights file: {error}") from None
    total = sum(int(np.prod(e.shape)) for e in entries.values())
    if total > max_elements:
        raise WeightsRefusedError(
            400,
            f"weights file: {total:,} values exceeds the limit {max_elements:,}",
        )
    return dict(arrays), "float32"


def check(
    model: Any, data: bytes, max_bytes: int, sha256: str | None = None
) -> CheckedWeights:
    """Reads ``data`` and checks it against ``model`` (nothing is assigned).

    Args:
        model: The version's built model.
        data: The uploaded file.
        max_bytes: Largest file accepted (``BNN_MAX_WEIGHTS_BYTES``).
        sha256: The file's digest when already known (hashed while received).

    Raises:
        WeightsRefusedError: 400 for an unreadable file; 422 listing every
            difference for a file that does not fit, or naming the tensors
            holding NaN or infinity.
    """
    limit = min(export.MAX_ELEMENTS, 2 * _model_elements(model) + _EXTRA_ELEMENTS)
    arrays, kind = read(data, max_bytes=max_bytes, max_elements=limit)
    differences = export.mismatches(model, arrays)
    if differences:
        raise _refuse_mismatch(differences)
    not_finite = sorted(n for n, a in arrays.items() if not np.isfinite(a).all())
    if not_finite:
        raise WeightsRefusedError(
            422,
            f"weights file: tensors {not_finite[:10]} hold NaN or infinity; only "
            "finite weights are accepted (nothing was stored)",
        )
    return CheckedWeights(
        arrays=arrays,
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        size=len(data),
        format=kind,
    )


def _refuse_mismatch(differences: list[str]) -> WeightsRefusedError:
    shown = "\n".join(f"  - {d}" for d in differences[:50])
    more = len(differences) - 50
    return WeightsRefusedError(
        422,
        f"the weights file does not fit the model ({len(differences)} "
        f"difference{'s' if len(differences) > 1 else ''}; nothing was "
        f"stored):\n{shown}" + (f"\n  ... and {more} more" if more > 0 else ""),
        differences,
    )


def _header_shapes(header: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """Each tensor of a plain file's header as a zero-memory array of its shape
    and dtype (for :func:`bnncore.export.mismatches`); ``None`` when an entry
    is not plainly readable (the full check then names the problem)."""
    shapes: dict[str, np.ndarray] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict):
            return None
        dtype = container.DTYPES.get(entry.get("dtype"))  # type: ignore[arg-type]
        shape = entry.get("shape")
        if (
            dtype is None
            or not isinstance(shape, list)
            or not all(type(n) is int and 0 <= n <= 2**31 for n in shape)
        ):
            return None
        shapes[name] = np.broadcast_to(np.zeros((), dtype=dtype), tuple(shape))
    return shapes


def check_file(
    model: Any, path: Path, max_bytes: int, sha256: str | None = None
) -> CheckedWeights:
    """:func:`check` of a received file, reading only its header first.

    A plain file whose header already shows that it does not fit the model
    (names, shapes, dtypes) is refused without reading its tensors; any other
    file is then read whole and checked by :func:`check` (the caller bounds
    its size by :func:`max_file_bytes`).

    Raises:
        WeightsRefusedError: as :func:`check`.
    """
    size = os.stat(path).st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if 0 <= length <= container.MAX_HEADER_BYTES and 8 + length <= size:
            try:
                header = container.load_json("header", handle.read(length))
            except export.WeightsFileError as error:
                raise WeightsRefusedError(400, f"weights file: {error}") from None
            metadata = header.get("__metadata__") if isinstance(header, dict) else None
            bnncore_file = isinstance(metadata, dict) and (
                metadata.get("format") == export.FORMAT or "encodings" in metadata
            )
            if isinstance(header, dict) and not bnncore_file:
                shapes = _header_shapes(header)
                if shapes is not None:
                    differences = export.mismatches(model, shapes)
                    if differences:
                        raise _refuse_mismatch(differences)
                if "__metadata__" not in header:
                    # What read() would do, without holding the file twice.
                    text = json.dumps({"__metadata__": {}, **header}).encode()
                    data = len(text).to_bytes(8, "little") + text + handle.read()
                    return check(model, data, max_bytes + len(text) - length, sha256)
    return check(model, path.read_bytes(), max_bytes, sha256)


def load_into(model: Any, data: bytes, settings: Any) -> CheckedWeights:
    """Checks ``data`` against ``model`` and assigns it (all or nothing)."""
    checked = check(model, data, settings.max_weights_bytes)
    export.load_weights(model, checked.arrays)
    return checked

"""What the inference protocols share: the request limits and the decoded
batch, the refusal (:class:`InferenceError`), the tensor checks and the
conversion to the models' ``float32``, and the response writer
(:func:`to_json`). One module per protocol uses them:
``bnncore_service/inference/oip.py`` (Open Inference Protocol V2) and
``bnncore_service/inference/tfserving.py`` (TensorFlow Serving REST).

Everything a request declares (input names, shapes, datatypes, batch size,
element count, requested outputs) is checked against the version's stored
metadata and the limits *before* the tensor data is converted or any model is
loaded or run. The tensor data is then checked element-wise (type, range,
finiteness) while it is converted to the models' ``float32`` inputs.

Every refusal is an :class:`InferenceError` whose message names the field, the
value received and what is allowed.

The memory a request may take is known once its batch size and requested
outputs are: the version's :class:`~bnncore_service.peak.RequestCost` times the rows
plus the JSON response must fit ``BNN_MAX_REQUEST_BYTES``, or the request is
refused (413) before its data is converted (outputs requested in binary count 4
bytes a value instead of JSON's 28). Responses are written by orjson
straight from the NumPy outputs: no Python object per value; each float32 is
written as the shortest decimal of its exact value (what ``json.dumps`` of
``tolist()`` wrote), which reads back as the same float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from bnncore_service.peak import JSON_BYTES_PER_VALUE, RequestCost

__all__ = [
    "BINARY_BYTES_PER_VALUE",
    "DATATYPES",
    "DATATYPE_NAMES",
    "ENGINES",
    "MODEL_DTYPE",
    "Decoded",
    "InferenceError",
    "Limits",
    "as_array",
    "bad",
    "check_limits",
    "check_memory",
    "contiguous",
    "first_offender",
    "fits",
    "nonfinite_mask",
    "shape_text",
    "short",
    "to_json",
    "to_model_dtype",
]

BINARY_BYTES_PER_VALUE = 4
"""Bytes of one output value sent in binary (float32)."""

DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
"""OIP datatypes accepted for inputs, and their NumPy types."""

DATATYPE_NAMES: dict[np.dtype, str] = {dtype: name for name, dtype in DATATYPES.items()}
"""NumPy type → OIP datatype."""

ENGINES = ("auto", "packed", "keras")
"""Values of the request parameter ``engine``."""

MODEL_DTYPE = np.dtype(np.float32)
"""The input type of the service's models (Keras inputs built by the service are
float32; the metadata says FP32): every input is converted to it."""

_F32_MAX = float(np.finfo(np.float32).max)


class InferenceError(Exception):
    """A refused inference request.

    Attributes:
        status: HTTP status (400 bad request, 404, 413 over a limit, 503 busy,
            504 timeout).
        reason: The ``bnn_rejections_total`` reason, for limits and load.
    """

    def __init__(self, status: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def bad(message: str) -> InferenceError:
    """A 400 refusal."""
    return InferenceError(400, message)


@dataclass(frozen=True)
class Limits:
    """Request limits (``BNN_MAX_BATCH``, ``BNN_MAX_TENSOR_ELEMENTS``,
    ``BNN_MAX_REQUEST_BYTES``) and the version's cost (``None``: not checked).
    """

    max_batch: int
    max_tensor_elements: int
    max_request_bytes: int | None = None
    cost: RequestCost | None = None


@dataclass
class Decoded:
    """A decoded request.

    Attributes:
        arrays: One ``float32`` array per model input, in the model's order.
        rows: The batch size.
        outputs: Indexes of the requested outputs, in the requested order.
        engine: The requested engine (``None``: the service default).
        binary: Indexes of the outputs to send in binary (the binary tensor
            data extension), a subset of ``outputs``.
    """

    arrays: list[np.ndarray]
    rows: int
    outputs: list[int]
    engine: str | None = None
    binary: frozenset[int] = frozenset()


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (for messages)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shape_text(shape: list[int]) -> str:
    """``[2, 3]`` (for messages)."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def fits(shape: tuple[int, ...] | list[int], meta: list[int]) -> bool:
    """Whether ``shape`` is the metadata shape ``meta`` (``-1``: any size)."""
    return len(shape) == len(meta) and all(
        m == -1 or m == s for m, s in zip(meta, shape, strict=True)
    )


def check_limits(rows: int, elements: int, limits: Limits, where: str) -> None:
    """413 over ``BNN_MAX_BATCH`` or ``BNN_MAX_TENSOR_ELEMENTS``."""
    if rows > limits.max_batch:
        raise InferenceError(
            413,
            f"{where}: batch size {rows:,} exceeds the limit {limits.max_batch:,} "
            "(BNN_MAX_BATCH); split the request",
            reason="batch_limit",
        )
    if elements > limits.max_tensor_elements:
        raise InferenceError(
            413,
            f"{where}: {elements:,} input elements exceed the limit "
            f"{limits.max_tensor_elements:,} (BNN_MAX_TENSOR_ELEMENTS); split the "
            "request",
            reason="elements_limit",
        )


def check_memory(
    rows: int,
    outputs: list[int],
    limits: Limits,
    where: str,
    binary: frozenset[int] = frozenset(),
) -> None:
    """413 when ``rows`` rows with ``outputs`` (those in ``binary`` at 4 bytes
    a value, the others in JSON) do not fit ``BNN_MAX_REQUEST_BYTES`` (nothing
    converted or run yet)."""
    cost, limit = limits.cost, limits.max_request_bytes
    if cost is None or limit is None:
        return
    as_json = [i for i in outputs if i not in binary]
    as_binary = [i for i in outputs if i in binary]
    response = cost.response_row_bytes(
        as_json, JSON_BYTES_PER_VALUE
    ) + cost.response_row_bytes(as_binary, BINARY_BYTES_PER_VALUE)
    per_row = cost.row_bytes + response
    needed = cost.fixed_bytes + rows * per_row
    if needed <= limit:
        return
    fits = max(limit - cost.fixed_bytes, 0) // max(per_row, 1)
    raise InferenceError(
        413,
        f"{where}: a batch of {rows:,} rows needs up to {needed:,} bytes "
        f"({rows:,} × ({cost.row_bytes:,} bytes of model peak per row + "
        f"{response:,} bytes of response per row) + {cost.fixed_bytes:,} "
        f"bytes independent of the batch), over the limit {limit:,} "
        f"(BNN_MAX_REQUEST_BYTES); "
        + (
            f"at most {fits:,} rows fit: split the request"
            if fits
            else "not one row fits: request fewer outputs or raise the limit"
        ),
        reason="memory_limit",
    )


def first_offender(data: Any, ok: Any) -> Any:
    """The first leaf of nested lists for which ``ok(leaf)`` is false."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif not ok(item):
            return item
    return None


def is_number(value: Any) -> bool:
    """A JSON number NumPy can hold (not a boolean, at most 64 bits)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (not isinstance(value, int) or -(2**63) <= value < 2**64)
    )


def as_array(data: Any, where: str, what: str) -> np.ndarray:
    """Nested lists → an array of booleans or numbers (400 otherwise)."""
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise bad(
            f"{where}: not a rectangular array of {what}: nested lists of unequal "
            "lengths, or lists mixed with single values"
        ) from None
    if array.dtype.kind not in "biuf":
        offender = first_offender(data, lambda v: isinstance(v, bool) or is_number(v))
        raise bad(
            f"{where}: elements must be {what}; received {short(offender)}"
            + (" (an integer beyond 64 bits)" if isinstance(offender, int) else "")
        )
    return array


def to_model_dtype(array: np.ndarray, where: str) -> np.ndarray:
    """Converts checked values to the models' float32 (finite, in range).

    The checks are two reductions (NaN propagates through ``min`` and
    ``max``), which allocate nothing per element: float32 data already
    contiguous is passed on as it is, without a copy."""
    if array.dtype.kind == "f" and array.size:
        low, high = float(array.min()), float(array.max())
        if not (math.isfinite(low) and math.isfinite(high)):
            value = array[~np.isfinite(array)].flat[0]
            raise bad(
                f"{where}: elements must be finite; received {value} (JSON has no "
                "NaN or Infinity)"
            )
        if max(-low, high) > _F32_MAX:
            value = low if -low > high else high
            raise bad(
                f"{where}: {value} is beyond the float32 range of the model's input "
                f"(±{_F32_MAX:.7g})"
            )
    return np.ascontiguousarray(array, dtype=MODEL_DTYPE)


def nonfinite_mask(array: np.ndarray) -> np.ndarray | None:
    """Where ``array`` is NaN or infinite; ``None`` when nowhere."""
    if array.dtype.kind != "f":
        return None
    mask = ~np.isfinite(array)
    return mask if mask.any() else None


def contiguous(array: np.ndarray) -> np.ndarray:
    """A C-contiguous array orjson writes as today's responses read: floats
    widened to float64 (exact), so each value is written as the shortest
    decimal of the float32's exact value, as ``json.dumps(array.tolist())``
    wrote it; it reads back as the same float32."""
    if array.dtype.kind == "f" or array.dtype.kind not in "biu":
        with np.errstate(invalid="ignore"):  # signalling NaNs stay NaN (null)
            return np.ascontiguousarray(array, dtype=np.float64)
    return np.ascontiguousarray(array)


def to_json(content: Any) -> bytes:
    """``content`` as compact JSON; NumPy arrays are written by orjson without
    a Python object per value (non-finite floats as ``null``)."""
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)

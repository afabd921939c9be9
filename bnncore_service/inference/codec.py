"""Request decoding and response encoding: Open Inference Protocol V2 and
TensorFlow Serving REST.

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

The binary tensor data extension (Triton's, used by ``tritonclient`` by
default) is decoded here too: an input whose ``parameters.binary_data_size`` is
set takes its elements from the bytes after the JSON header
(:func:`decode_oip`'s ``binary`` argument), read with ``np.frombuffer`` (no
Python object per value), with the same checks as JSON data; see
``bnncore_service/inference/binary.py`` for the framing.

:func:`parse_oip` is the fast path for the JSON part of an OIP request: orjson
parses it (no pydantic model per request, no Python-level validation per
element) and each input's ``data`` becomes a NumPy array at once. It answers
only for bodies whose result is certain to equal the pydantic parse; for
anything else (a duplicate key, an escape, a number pydantic reads differently,
a field of the wrong type) it answers ``None`` and the caller validates with
pydantic, which then names the error as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from bnncore_service.inference.schemas import (
    InferenceRequest,
    PredictRequest,
    RequestInput,
    RequestOutput,
)
from bnncore_service.peak import JSON_BYTES_PER_VALUE, RequestCost

BINARY_BYTES_PER_VALUE = 4
"""Bytes of one output value sent in binary (float32)."""

__all__ = [
    "DATATYPES",
    "ENGINES",
    "MODEL_DTYPE",
    "Decoded",
    "InferenceError",
    "Limits",
    "decode_oip",
    "decode_tfs",
    "encode_oip",
    "encode_oip_binary",
    "encode_tfs",
    "parse_oip",
    "to_json",
]

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

_NAMES = {dtype: name for name, dtype in DATATYPES.items()}
_ALLOWED = ", ".join(DATATYPES)

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


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shape_text(shape: list[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _fits(shape: tuple[int, ...] | list[int], meta: list[int]) -> bool:
    return len(shape) == len(meta) and all(
        m == -1 or m == s for m, s in zip(meta, shape, strict=True)
    )


def _check_limits(rows: int, elements: int, limits: Limits, where: str) -> None:
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


def _check_memory(
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


def _first_offender(data: Any, ok: Any) -> Any:
    """The first leaf of nested lists for which ``ok(leaf)`` is false."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif not ok(item):
            return item
    return None


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (not isinstance(value, int) or -(2**63) <= value < 2**64)
    )


def _as_array(data: Any, where: str, what: str) -> np.ndarray:
    """Nested lists → an array of booleans or numbers (400 otherwise)."""
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise bad(
            f"{where}: not a rectangular array of {what}: nested lists of unequal "
            "lengths, or lists mixed with single values"
        ) from None
    if array.dtype.kind not in "biuf":
        offender = _first_offender(data, lambda v: isinstance(v, bool) or _is_number(v))
        raise bad(
            f"{where}: elements must be {what}; received {_short(offender)}"
            + (" (an integer beyond 64 bits)" if isinstance(offender, int) else "")
        )
    return array


def _to_model_dtype(array: np.ndarray, where: str) -> np.ndarray:
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


def _tensor(data: list[Any], shape: list[int], datatype: str, where: str) -> np.ndarray:
    """One OIP input's ``data`` checked against its ``shape`` and ``datatype``."""
    count = math.prod(shape)
    if len(data) not in (count, shape[0]):
        raise bad(
            f"{where}.data: received {len(data):,} values; shape "
            f"{_shape_text(shape)} needs {count:,} (flat, row-major) or lists "
            f"nested to that shape"
        )
    dtype = DATATYPES[datatype]
    kind = "true/false" if dtype.kind == "b" else "numbers"
    array = _as_array(data, f"{where}.data", f"JSON {kind}")
    if array.shape not in ((count,), tuple(shape)):
        raise bad(
            f"{where}.data: received nested lists of shape "
            f"{_shape_text(list(array.shape))}; shape {_shape_text(shape)} needs "
            f"{count:,} values flat (row-major) or nested to exactly that shape"
        )
    if dtype.kind == "b":
        if array.dtype.kind != "b":
            raise bad(
                f"{where}.data: BOOL elements must be true or false; received "
                f"{_short(array.flat[0])}"
            )
    elif dtype.kind in "iu":
        if array.dtype.kind not in "iu":
            offender = _first_offender(
                data, lambda v: isinstance(v, int) and not isinstance(v, bool)
            )
            raise bad(
                f"{where}.data: {datatype} elements must be integers; received "
                f"{_short(offender)}"
            )
        info = np.iinfo(dtype)
        low, high = array.min(), array.max()
        if low < info.min or high > info.max:
            value = low if low < info.min else high
            raise bad(
                f"{where}.data: {value} is out of range for {datatype} "
                f"[{info.min}, {info.max}]"
            )
    else:
        if array.dtype.kind == "b":
            raise bad(
                f"{where}.data: {datatype} elements must be numbers; received "
                f"{_short(bool(array.flat[0]))}"
            )
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            value = array[~np.isfinite(array)].flat[0]
            raise bad(
                f"{where}.data: elements must be finite; received {value} (JSON has "
                "no NaN or Infinity)"
            )
        high = float(np.max(np.abs(array))) if array.size else 0.0
        if high > float(np.finfo(dtype).max):
            raise bad(
                f"{where}.data: {high} is out of range for {datatype} "
                f"(±{float(np.finfo(dtype).max):.7g})"
            )
    typed = array.reshape(shape).astype(dtype, copy=False)
    return _to_model_dtype(typed, f"{where}.data")


def _engine(parameters: dict[str, Any] | None) -> str | None:
    if not parameters or "engine" not in parameters:
        return None
    value = parameters["engine"]
    if not isinstance(value, str) or value not in ENGINES:
        raise bad(
            f"parameters.engine: received {_short(value)}; allowed: "
            + ", ".join(repr(e) for e in ENGINES)
        )
    return value


def _flag(parameters: dict[str, Any] | None, key: str, where: str) -> bool | None:
    """A boolean parameter (``None`` when absent)."""
    if not parameters or key not in parameters:
        return None
    value = parameters[key]
    if not isinstance(value, bool):
        raise bad(f"{where}.{key}: received {_short(value)}; allowed: true or false")
    return value


def _no_classification(parameters: dict[str, Any] | None, where: str) -> None:
    if parameters and "classification" in parameters:
        raise bad(
            f"{where}.classification: received {_short(parameters['classification'])}"
            "; the classification extension is not implemented (request the "
            "output tensor and take its top-k)"
        )


def _binary_size(parameters: dict[str, Any] | None, where: str) -> int | None:
    """An input's ``binary_data_size`` (``None`` when absent)."""
    if not parameters or "binary_data_size" not in parameters:
        return None
    value = parameters["binary_data_size"]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise bad(
            f"{where}.binary_data_size: received {_short(value)}; allowed: a "
            "non-negative integer (bytes of the tensor after the JSON header)"
        )
    return value


def _binary_tensor(
    binary: memoryview, offset: int, shape: list[int], datatype: str, where: str
) -> np.ndarray:
    """One input's elements from the binary section (size already checked):
    read in place by ``np.frombuffer`` (little-endian, as the extension
    specifies), checked as JSON data is, converted to float32."""
    dtype = DATATYPES[datatype].newbyteorder("<")
    array = np.frombuffer(
        binary, dtype=dtype, count=math.prod(shape), offset=offset
    ).reshape(shape)
    if dtype.kind == "b":
        raw = array.view(np.uint8)
        if raw.size and int(raw.max()) > 1:
            raise bad(
                f"{where}: BOOL elements must be bytes 0 or 1; received "
                f"{int(raw.max())}"
            )
    converted = _to_model_dtype(array, where)
    if not converted.flags.aligned:  # a float32 tensor at an odd offset
        converted = converted.copy()
    return converted


_REQUEST_KEYS = frozenset(InferenceRequest.model_fields)
_INPUT_KEYS = frozenset(RequestInput.model_fields)
_OUTPUT_KEYS = frozenset(RequestOutput.model_fields)
_MAX_DIM = 2**63 - 1
_INT64_RANGE = float(2**63)
"""orjson reads an integer beyond 64 bits as a float, pydantic as an int: a
float this large may have been such an integer, so it takes the slow path."""
_COLON = ord(":")


class _SlowPathError(Exception):
    """The body needs pydantic's validation (:func:`parse_oip` answers None)."""


def _text(value: Any, limit: int) -> str:
    if type(value) is not str or len(value) > limit:
        raise _SlowPathError
    return value


def _scan(value: Any, counts: list[int]) -> None:
    """Adds the object keys and the ``:`` in strings of a small JSON value
    (``parameters``) to ``counts``; :class:`_SlowPathError` for a float that may have
    been an integer beyond 64 bits."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            counts[0] += len(item)
            for key, child in item.items():
                counts[1] += key.count(":")
                stack.append(child)
        elif kind is list:
            stack.extend(item)
        elif kind is str:
            counts[1] += item.count(":")
        elif kind is float and abs(item) >= _INT64_RANGE:
            raise _SlowPathError


def _parameters(value: Any, counts: list[int]) -> dict[str, Any] | None:
    if value is not None and type(value) is not dict:
        raise _SlowPathError
    if value:
        _scan(value, counts)
    return value


_KEEP_AS_ARRAY = {"b": "b", "i": "iu", "u": "iu", "f": "biuf"}
"""Datatype kind → the array kinds the decoder checks without the lists (its
messages for the others walk the lists, so those keep them)."""


def _data(value: Any, datatype: str) -> Any:
    """An input's ``data`` as a NumPy array, converted once (no pydantic
    validation per element), or the lists when the decoder will refuse them."""
    if value is None:
        return None
    if type(value) is not list:
        raise _SlowPathError
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        return value  # ragged: the decoder names it
    kind = array.dtype.kind
    if kind == "f" and array.size and float(np.abs(array).max()) >= _INT64_RANGE:
        raise _SlowPathError
    dtype = DATATYPES.get(datatype)
    if dtype is None or kind not in _KEEP_AS_ARRAY[dtype.kind]:
        return value
    return array


def _input(value: Any, counts: list[int]) -> RequestInput:
    if type(value) is not dict or not value.keys() <= _INPUT_KEYS:
        raise _SlowPathError
    counts[0] += len(value)
    fields = dict(value)
    name = _text(fields.get("name"), 256)
    datatype = _text(fields.get("datatype"), 16)
    counts[1] += name.count(":") + datatype.count(":")
    shape = fields.get("shape")
    if type(shape) is not list or len(shape) > 16:
        raise _SlowPathError
    for dim in shape:
        if type(dim) is not int or not 0 <= dim <= _MAX_DIM:
            raise _SlowPathError
    if "parameters" in fields:
        fields["parameters"] = _parameters(fields["parameters"], counts)
    if "data" in fields:
        fields["data"] = _data(fields["data"], datatype)
    return RequestInput.model_construct(**fields)


def _output(value: Any, counts: list[int]) -> RequestOutput:
    if type(value) is not dict or not value.keys() <= _OUTPUT_KEYS:
        raise _SlowPathError
    counts[0] += len(value)
    counts[1] += _text(value.get("name"), 256).count(":")
    _parameters(value.get("parameters"), counts)
    return RequestOutput.model_construct(**value)


def parse_oip(raw: bytes) -> InferenceRequest | None:
    """The JSON part of an OIP request, parsed by orjson into the request
    model without validating each element, each input's ``data`` already a
    NumPy array (what :func:`decode_oip` converts it to); ``None`` when the
    body needs pydantic's validation (``InferenceRequest.model_validate_json``
    and the duplicate-key check), which then accepts or refuses it as before.

    The answer equals pydantic's for every body it is given for: orjson
    accepts a subset of what pydantic's parser does (no ``NaN``, no byte
    order mark), every field is checked against the schema's types and
    lengths, and the cases where the two parsers could differ take the slow
    path: a backslash anywhere (escapes), a float of magnitude 2^63 or more
    (orjson's reading of a larger integer), and a repeated key. A repeated key
    is found without a second parse: the body's ``:`` bytes must be exactly
    the parsed keys plus the ``:`` inside the parsed strings (numbers hold
    none; ``data`` holding objects or strings with ``:`` makes them differ, and
    the slow path decides).

    Args:
        raw: The JSON part of the body.

    Returns:
        The request, or ``None``: validate ``raw`` with pydantic instead.
    """
    if b"\\" in raw:
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(body) is not dict or not body.keys() <= _REQUEST_KEYS:
        return None
    counts = [len(body), 0]  # object keys, ':' inside strings
    try:
        fields = dict(body)
        if fields.get("id") is not None:
            counts[1] += _text(fields["id"], 256).count(":")
        if "parameters" in fields:
            fields["parameters"] = _parameters(fields["parameters"], counts)
        inputs = fields.get("inputs")
        if type(inputs) is not list or not 1 <= len(inputs) <= 64:
            return None
        fields["inputs"] = [_input(item, counts) for item in inputs]
        outputs = fields.get("outputs")
        if outputs is not None:
            if type(outputs) is not list or len(outputs) > 64:
                return None
            fields["outputs"] = [_output(item, counts) for item in outputs]
    except _SlowPathError:
        return None
    colons = int(np.count_nonzero(np.frombuffer(raw, np.uint8) == _COLON))
    if colons != counts[0] + counts[1]:
        return None
    return InferenceRequest.model_construct(**fields)


def decode_oip(
    request: InferenceRequest,
    model: str,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    limits: Limits,
    binary: bytes | memoryview | None = None,
) -> Decoded:
    """Checks and decodes an OIP inference request.

    Args:
        request: The structurally validated body (the JSON header, with the
            binary tensor data extension).
        model: The model name (for messages).
        inputs / outputs: The version's metadata (``name``, ``shape`` with -1).
        limits: The request limits.
        binary: The bytes after the JSON header (``None``: the request had no
            ``Inference-Header-Content-Length``); the inputs with
            ``parameters.binary_data_size`` take their data from it, in the
            order of ``request.inputs``, and together must use all of it.

    Raises:
        InferenceError: 400 for a request that does not fit the model, 413 over
            a limit.
    """
    engine = _engine(request.parameters)
    binary_default = bool(_flag(request.parameters, "binary_data_output", "parameters"))
    section = memoryview(b"" if binary is None else binary)
    offsets: dict[int, int] = {}
    binary_used = 0
    names = [t["name"] for t in inputs]
    meta = {t["name"]: list(t["shape"]) for t in inputs}
    given: dict[str, int] = {}
    for index, tensor in enumerate(request.inputs):
        where = f"inputs[{index}]"
        if tensor.name not in meta:
            raise bad(
                f"{where}.name: received {_short(tensor.name)}; model {model!r} has "
                f"inputs {names}"
            )
        if tensor.name in given:
            raise bad(
                f"{where}.name: {tensor.name!r} is also given as "
                f"inputs[{given[tensor.name]}]; give each input once"
            )
        given[tensor.name] = index
        if tensor.datatype not in DATATYPES:
            hint = (
                "BYTES tensors are not supported (the models take numbers)"
                if tensor.datatype == "BYTES"
                else "unknown datatype"
            )
            raise bad(
                f"{where}.datatype: received {_short(tensor.datatype)}: {hint}; "
                f"allowed: {_ALLOWED}"
            )
        expected = meta[tensor.name]
        if not _fits(tensor.shape, expected):
            raise bad(
                f"{where}.shape: received {_shape_text(tensor.shape)}; input "
                f"{tensor.name!r} of model {model!r} has shape "
                f"{_shape_text(expected)} (-1: any size)"
            )
        if 0 in tensor.shape:
            raise bad(
                f"{where}.shape: received {_shape_text(tensor.shape)}; every "
                "dimension must be at least 1"
            )
        size = _binary_size(tensor.parameters, f"{where}.parameters")
        if size is None:
            if tensor.data is None:
                raise bad(
                    f"{where}.data: missing; give the elements as JSON 'data' or "
                    "in binary (parameters.binary_data_size with the "
                    "Inference-Header-Content-Length header)"
                )
            continue
        if tensor.data is not None:
            raise bad(
                f"{where}: received both 'data' and parameters.binary_data_size; "
                "give the elements one way"
            )
        if binary is None:
            raise bad(
                f"{where}.parameters.binary_data_size: received {size:,}, but the "
                "request has no Inference-Header-Content-Length header: send it "
                "with the length of the JSON part, followed by the binary data"
            )
        itemsize = DATATYPES[tensor.datatype].itemsize
        needed = math.prod(tensor.shape) * itemsize
        if size != needed:
            raise bad(
                f"{where}.parameters.binary_data_size: received {size:,} bytes; "
                f"shape {_shape_text(tensor.shape)} of {tensor.datatype} "
                f"({itemsize} bytes each) needs {needed:,}"
            )
        offsets[index] = binary_used
        binary_used += size
    if binary_used != len(section):
        raise bad(
            f"body: {len(section):,} bytes follow the JSON header "
            f"(Inference-Header-Content-Length), but the inputs' "
            f"parameters.binary_data_size add up to {binary_used:,}"
        )
    missing = [name for name in names if name not in given]
    if missing:
        raise bad(
            f"inputs: missing {missing}; model {model!r} has inputs {names} "
            "(each must be given once)"
        )
    first = request.inputs[given[names[0]]]
    rows = first.shape[0]
    for index, tensor in enumerate(request.inputs):
        if tensor.shape[0] != rows:
            raise bad(
                f"inputs[{index}].shape: batch size {tensor.shape[0]} differs from "
                f"{rows} of input {first.name!r}; every input needs the same batch "
                "size (first dimension)"
            )
    elements = sum(math.prod(t.shape) for t in request.inputs)
    _check_limits(rows, elements, limits, "inputs")

    output_names = [t["name"] for t in outputs]
    as_binary: set[int] = set()
    if request.outputs is None:
        selected = list(range(len(outputs)))
        if binary_default:
            as_binary.update(selected)
    else:
        selected = []
        for index, wanted in enumerate(request.outputs):
            where = f"outputs[{index}]"
            if wanted.name not in output_names:
                raise bad(
                    f"{where}.name: received {_short(wanted.name)}; model {model!r} "
                    f"has outputs {output_names}"
                )
            position = output_names.index(wanted.name)
            if position in selected:
                raise bad(f"{where}.name: {wanted.name!r} is requested twice")
            _no_classification(wanted.parameters, f"{where}.parameters")
            flag = _flag(wanted.parameters, "binary_data", f"{where}.parameters")
            if binary_default if flag is None else flag:
                as_binary.add(position)
            selected.append(position)
    chosen = frozenset(as_binary)
    _check_memory(rows, selected, limits, "inputs", chosen)

    arrays = []
    for name in names:
        index = given[name]
        tensor = request.inputs[index]
        if index in offsets:
            arrays.append(
                _binary_tensor(
                    section,
                    offsets[index],
                    tensor.shape,
                    tensor.datatype,
                    f"inputs[{index}] (binary data)",
                )
            )
        else:
            assert tensor.data is not None  # checked above
            arrays.append(
                _tensor(tensor.data, tensor.shape, tensor.datatype, f"inputs[{index}]")
            )
    return Decoded(
        arrays=arrays, rows=rows, outputs=selected, engine=engine, binary=chosen
    )


def _column(values: Any, where: str, expected: list[int], name: str) -> np.ndarray:
    array = _as_array(values, where, "numbers")
    if not _fits(array.shape, expected):
        raise bad(
            f"{where}: received a tensor of shape {_shape_text(list(array.shape))} "
            f"(batch first); input {name!r} has shape {_shape_text(expected)} (-1: "
            "any size)"
        )
    return _to_model_dtype(array, where)


def _named(value: dict[str, Any], names: list[str], where: str, model: str) -> None:
    unknown = [k for k in value if k not in names]
    if unknown:
        raise bad(
            f"{where}: unknown input {_short(unknown[0])}; model {model!r} has "
            f"inputs {names}"
        )
    missing = [n for n in names if n not in value]
    if missing:
        raise bad(f"{where}: missing input(s) {missing}; model {model!r} has {names}")


def decode_tfs(
    request: PredictRequest,
    model: str,
    inputs: list[dict[str, Any]],
    limits: Limits,
) -> tuple[Decoded, bool]:
    """Checks and decodes a TensorFlow Serving ``:predict`` body.

    Returns:
        The decoded batch and whether it used the row format (``instances``).

    Raises:
        InferenceError: 400 for a body that does not fit the model (or that
            gives both ``instances`` and ``inputs``), 413 over a limit.
    """
    if request.signature_name not in (None, "serving_default"):
        raise bad(
            f"signature_name: received {_short(request.signature_name)}; the "
            "models have one signature, 'serving_default'"
        )
    rows_format = request.instances is not None
    if rows_format and request.inputs is not None:
        raise bad(
            "body: received both 'instances' (row format) and 'inputs' (columnar "
            "format); send exactly one of them"
        )
    if not rows_format and request.inputs is None:
        raise bad(
            "body: missing 'instances' (row format) or 'inputs' (columnar format)"
        )
    names = [t["name"] for t in inputs]
    meta = {t["name"]: list(t["shape"]) for t in inputs}
    columns: dict[str, Any]
    where: dict[str, str]
    if rows_format:
        instances = request.instances or []
        if not instances:
            raise bad("instances: received an empty list; send at least one row")
        rows = len(instances)
        _check_limits(rows, 0, limits, "instances")
        objects = [isinstance(item, dict) for item in instances]
        if all(objects):
            for index, item in enumerate(instances):
                _named(item, names, f"instances[{index}]", model)
            columns = {n: [item[n] for item in instances] for n in names}
            where = {n: f"instances[*].{n}" for n in names}
        elif any(objects):
            raise bad(
                f"instances[{objects.index(not objects[0])}]: instances mix objects "
                "and values; use {input name: value} objects for all or for none"
            )
        else:
            if len(names) > 1:
                raise bad(
                    f"instances[0]: model {model!r} has {len(names)} inputs "
                    f"{names}; each instance must be an object {{input name: value}}"
                )
            columns = {names[0]: instances}
            where = {names[0]: "instances"}
    else:
        value = request.inputs
        if isinstance(value, dict):
            _named(value, names, "inputs", model)
            columns = value
            where = {n: f"inputs.{n}" for n in names}
        else:
            if len(names) > 1:
                raise bad(
                    f"inputs: model {model!r} has {len(names)} inputs {names}; "
                    "send an object {input name: tensor}"
                )
            columns = {names[0]: value}
            where = {names[0]: "inputs"}
        sizes = {}
        for name in names:
            column = columns[name]
            if not isinstance(column, list) or not column:
                raise bad(
                    f"{where[name]}: expected a non-empty list with one entry per "
                    f"batch row (batch dimension first); received {_short(column)}"
                )
            sizes[name] = len(column)
        rows = sizes[names[0]]
        for name in names:
            if sizes[name] != rows:
                raise bad(
                    f"{where[name]}: batch size {sizes[name]} differs from {rows} of "
                    f"input {names[0]!r}"
                )
        _check_limits(rows, 0, limits, "inputs")
    known = sum(rows * math.prod(abs(d) for d in meta[n][1:]) for n in names)
    _check_limits(rows, known, limits, "instances" if rows_format else "inputs")
    every = list(range(len(limits.cost.output_elements))) if limits.cost else []
    _check_memory(rows, every, limits, "instances" if rows_format else "inputs")
    arrays = [_column(columns[n], where[n], meta[n], n) for n in names]
    elements = sum(a.size for a in arrays)
    _check_limits(rows, elements, limits, "instances" if rows_format else "inputs")
    return Decoded(arrays=arrays, rows=rows, outputs=[], engine=None), rows_format


def _nonfinite(array: np.ndarray) -> np.ndarray | None:
    if array.dtype.kind != "f":
        return None
    mask = ~np.isfinite(array)
    return mask if mask.any() else None


def _datatype(dtype: np.dtype) -> str:
    return _NAMES.get(np.dtype(dtype), "FP32")


def _contiguous(array: np.ndarray) -> np.ndarray:
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


def encode_oip(
    arrays: list[np.ndarray], selected: list[int], outputs: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """OIP ``$response_output`` objects, and the count of non-finite values.

    ``data`` is the flat NumPy array, for :func:`to_json`. Non-finite values
    (NaN, ±Inf), which JSON cannot carry, are sent as ``null``; the output's
    ``parameters.nonfinite`` counts them.
    """
    encoded, nonfinite, _ = encode_oip_binary(arrays, selected, outputs)
    return encoded, nonfinite


def encode_oip_binary(
    arrays: list[np.ndarray],
    selected: list[int],
    outputs: list[dict[str, Any]],
    binary: frozenset[int] = frozenset(),
) -> tuple[list[dict[str, Any]], int, list[np.ndarray]]:
    """As :func:`encode_oip`, with the outputs in ``binary`` sent in binary:
    each gets ``parameters.binary_data_size`` instead of ``data``, and its
    little-endian bytes (exact, non-finite values included) are in the third
    list returned, in the order of the outputs."""
    encoded = []
    total = 0
    buffers = []
    for index in selected:
        array = arrays[index]
        if index in binary:
            dtype = array.dtype if array.dtype in _NAMES else MODEL_DTYPE
            raw = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<"))
            buffers.append(raw)
            encoded.append(
                {
                    "name": outputs[index]["name"],
                    "shape": list(array.shape),
                    "datatype": _NAMES[dtype],
                    "parameters": {"binary_data_size": raw.nbytes},
                }
            )
            continue
        item: dict[str, Any] = {
            "name": outputs[index]["name"],
            "shape": list(array.shape),
            "datatype": _datatype(array.dtype),
        }
        flat = _contiguous(array).reshape(-1)
        mask = _nonfinite(flat)
        if mask is not None:
            count = int(np.count_nonzero(mask))
            item["parameters"] = {"nonfinite": count}
            total += count
        item["data"] = flat
        encoded.append(item)
    return encoded, total, buffers


def _nested(array: np.ndarray) -> tuple[np.ndarray, int]:
    mask = _nonfinite(array)
    count = 0 if mask is None else int(np.count_nonzero(mask))
    return _contiguous(array), count


def encode_tfs(
    arrays: list[np.ndarray], outputs: list[dict[str, Any]], rows_format: bool
) -> tuple[dict[str, Any], int]:
    """The TF Serving answer (``predictions`` or ``outputs``) and the count of
    non-finite values (sent as ``null``); tensors stay NumPy arrays, nested
    by :func:`to_json`."""
    names = [t["name"] for t in outputs]
    nested = [_nested(a) for a in arrays]
    nonfinite = sum(count for _, count in nested)
    values = [v for v, _ in nested]
    if rows_format:
        if len(values) == 1:
            return {"predictions": values[0]}, nonfinite
        rows = len(values[0])
        predictions = [
            {name: value[row] for name, value in zip(names, values, strict=True)}
            for row in range(rows)
        ]
        return {"predictions": predictions}, nonfinite
    if len(values) == 1:
        return {"outputs": values[0]}, nonfinite
    return {"outputs": dict(zip(names, values, strict=True))}, nonfinite

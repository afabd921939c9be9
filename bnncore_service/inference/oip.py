"""Open Inference Protocol V2 (KServe v2, Triton's HTTP/REST) requests and
answers: :func:`parse_oip` (the fast JSON path), :func:`decode_oip` (checks
and converts a request) and :func:`encode_oip_binary` (the answer's outputs,
JSON or binary). The checks and conversions both protocols share are in
``bnncore_service/inference/tensors.py``.

The binary tensor data extension (Triton's, used by ``tritonclient`` by
default) is decoded here too: an input whose ``parameters.binary_data_size`` is
set takes its elements from the bytes after the JSON header
(:func:`decode_oip`'s ``binary`` argument), read with ``np.frombuffer`` (no
Python object per value), with the same checks as JSON data; see
``bnncore_service/inference/binary.py`` for the framing.

:func:`parse_oip` is the fast path for the JSON part of an OIP request: orjson
parses it (no pydantic model per request, no Python-level validation per
element) into plain objects (:class:`OipRequest`, :class:`OipInput`,
:class:`OipOutput`: the request models' fields, without importing pydantic)
and each input's ``data`` becomes a NumPy array at once. It answers
only for bodies whose result is certain to equal the pydantic parse; for
anything else (a duplicate key, an escape, a number pydantic reads differently,
a field of the wrong type) it answers ``None`` and the caller validates with
pydantic, which then names the error as before.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import orjson

from bnncore_service.inference.tensors import (
    DATATYPE_NAMES,
    DATATYPES,
    ENGINES,
    MODEL_DTYPE,
    Decoded,
    Limits,
    as_array,
    bad,
    check_limits,
    check_memory,
    contiguous,
    first_offender,
    fits,
    nonfinite_mask,
    shape_text,
    short,
    to_model_dtype,
)

__all__ = [
    "OipBody",
    "OipInput",
    "OipOutput",
    "OipRequest",
    "decode_oip",
    "encode_oip",
    "encode_oip_binary",
    "parse_oip",
]


@dataclasses.dataclass(slots=True)
class OipInput:
    """An input tensor of a request read by :func:`parse_oip`: the fields of
    ``schemas.RequestInput``."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any = None


@dataclasses.dataclass(slots=True)
class OipOutput:
    """A requested output read by :func:`parse_oip`: the fields of
    ``schemas.RequestOutput``."""

    name: str
    parameters: dict[str, Any] | None = None


@dataclasses.dataclass(slots=True)
class OipRequest:
    """A request read by :func:`parse_oip`: the fields of
    ``schemas.InferenceRequest``, with the same defaults."""

    inputs: list[OipInput]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[OipOutput] | None = None


class _InputLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def shape(self) -> list[int]: ...
    @property
    def datatype(self) -> str: ...
    @property
    def parameters(self) -> dict[str, Any] | None: ...
    @property
    def data(self) -> Any: ...


class _OutputLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def parameters(self) -> dict[str, Any] | None: ...


class OipBody(Protocol):
    """A request :func:`decode_oip` takes: an :class:`OipRequest` read by
    :func:`parse_oip`, or ``schemas.InferenceRequest`` validated by pydantic."""

    @property
    def id(self) -> str | None: ...
    @property
    def parameters(self) -> dict[str, Any] | None: ...
    @property
    def inputs(self) -> Sequence[_InputLike]: ...
    @property
    def outputs(self) -> Sequence[_OutputLike] | None: ...


def _field_names(kind: type) -> frozenset[str]:
    return frozenset(field.name for field in dataclasses.fields(kind))


REQUEST_KEYS = _field_names(OipRequest)
INPUT_KEYS = _field_names(OipInput)
OUTPUT_KEYS = _field_names(OipOutput)
"""The keys each JSON object of a request may have (the request models'
fields; ``tests/service/test_codec_fast_path.py`` checks them against
``schemas``)."""

_ALLOWED = ", ".join(DATATYPES)


def _tensor(data: list[Any], shape: list[int], datatype: str, where: str) -> np.ndarray:
    """One OIP input's ``data`` checked against its ``shape`` and ``datatype``."""
    count = math.prod(shape)
    if len(data) not in (count, shape[0]):
        raise bad(
            f"{where}.data: received {len(data):,} values; shape "
            f"{shape_text(shape)} needs {count:,} (flat, row-major) or lists "
            f"nested to that shape"
        )
    dtype = DATATYPES[datatype]
    kind = "true/false" if dtype.kind == "b" else "numbers"
    array = as_array(data, f"{where}.data", f"JSON {kind}")
    if array.shape not in ((count,), tuple(shape)):
        raise bad(
            f"{where}.data: received nested lists of shape "
            f"{shape_text(list(array.shape))}; shape {shape_text(shape)} needs "
            f"{count:,} values flat (row-major) or nested to exactly that shape"
        )
    if dtype.kind == "b":
        if array.dtype.kind != "b":
            raise bad(
                f"{where}.data: BOOL elements must be true or false; received "
                f"{short(array.flat[0])}"
            )
    elif dtype.kind in "iu":
        if array.dtype.kind not in "iu":
            offender = first_offender(
                data, lambda v: isinstance(v, int) and not isinstance(v, bool)
            )
            raise bad(
                f"{where}.data: {datatype} elements must be integers; received "
                f"{short(offender)}"
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
                f"{short(bool(array.flat[0]))}"
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
    return to_model_dtype(typed, f"{where}.data")


def _engine(parameters: dict[str, Any] | None) -> str | None:
    if not parameters or "engine" not in parameters:
        return None
    value = parameters["engine"]
    if not isinstance(value, str) or value not in ENGINES:
        raise bad(
            f"parameters.engine: received {short(value)}; allowed: "
            + ", ".join(repr(e) for e in ENGINES)
        )
    return value


def _flag(parameters: dict[str, Any] | None, key: str, where: str) -> bool | None:
    """A boolean parameter (``None`` when absent)."""
    if not parameters or key not in parameters:
        return None
    value = parameters[key]
    if not isinstance(value, bool):
        raise bad(f"{where}.{key}: received {short(value)}; allowed: true or false")
    return value


def _no_classification(parameters: dict[str, Any] | None, where: str) -> None:
    if parameters and "classification" in parameters:
        raise bad(
            f"{where}.classification: received {short(parameters['classification'])}"
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
            f"{where}.binary_data_size: received {short(value)}; allowed: a "
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
    converted = to_model_dtype(array, where)
    if not converted.flags.aligned:  # a float32 tensor at an odd offset
        converted = converted.copy()
    return converted


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


def _input(value: Any, counts: list[int]) -> OipInput:
    if type(value) is not dict or not value.keys() <= INPUT_KEYS:
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
    return OipInput(**fields)


def _output(value: Any, counts: list[int]) -> OipOutput:
    if type(value) is not dict or not value.keys() <= OUTPUT_KEYS:
        raise _SlowPathError
    counts[0] += len(value)
    counts[1] += _text(value.get("name"), 256).count(":")
    _parameters(value.get("parameters"), counts)
    return OipOutput(**value)


def parse_oip(raw: bytes) -> OipRequest | None:
    """The JSON part of an OIP request, parsed by orjson into an
    :class:`OipRequest` without validating each element (and without
    importing pydantic), each input's ``data`` already a NumPy array (what
    :func:`decode_oip` converts it to); ``None`` when the
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
        The request, with the fields and defaults the request models have,
        or ``None``: validate ``raw`` with pydantic instead.
    """
    if b"\\" in raw:
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(body) is not dict or not body.keys() <= REQUEST_KEYS:
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
    return OipRequest(**fields)


def decode_oip(
    request: OipBody,
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
                f"{where}.name: received {short(tensor.name)}; model {model!r} has "
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
                f"{where}.datatype: received {short(tensor.datatype)}: {hint}; "
                f"allowed: {_ALLOWED}"
            )
        expected = meta[tensor.name]
        if not fits(tensor.shape, expected):
            raise bad(
                f"{where}.shape: received {shape_text(tensor.shape)}; input "
                f"{tensor.name!r} of model {model!r} has shape "
                f"{shape_text(expected)} (-1: any size)"
            )
        if 0 in tensor.shape:
            raise bad(
                f"{where}.shape: received {shape_text(tensor.shape)}; every "
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
                f"shape {shape_text(tensor.shape)} of {tensor.datatype} "
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
    check_limits(rows, elements, limits, "inputs")

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
                    f"{where}.name: received {short(wanted.name)}; model {model!r} "
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
    check_memory(rows, selected, limits, "inputs", chosen)

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


def datatype_name(dtype: np.dtype) -> str:
    return DATATYPE_NAMES.get(np.dtype(dtype), "FP32")


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
            dtype = array.dtype if array.dtype in DATATYPE_NAMES else MODEL_DTYPE
            raw = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<"))
            buffers.append(raw)
            encoded.append(
                {
                    "name": outputs[index]["name"],
                    "shape": list(array.shape),
                    "datatype": DATATYPE_NAMES[dtype],
                    "parameters": {"binary_data_size": raw.nbytes},
                }
            )
            continue
        item: dict[str, Any] = {
            "name": outputs[index]["name"],
            "shape": list(array.shape),
            "datatype": datatype_name(array.dtype),
        }
        flat = contiguous(array).reshape(-1)
        mask = nonfinite_mask(flat)
        if mask is not None:
            count = int(np.count_nonzero(mask))
            item["parameters"] = {"nonfinite": count}
            total += count
        item["data"] = flat
        encoded.append(item)
    return encoded, total, buffers

"""TensorFlow Serving REST: ``:predict`` requests and answers
(:func:`decode_tfs`, :func:`encode_tfs`), and the model status and metadata
bodies (:func:`model_status`, :func:`model_metadata`). The checks and
conversions both protocols share are in ``bnncore_service/inference/tensors.py``.

``GET /v1/models/{name}[/versions/{version}]`` answers a
``GetModelStatusResponse`` and ``.../metadata`` a ``GetModelMetadataResponse``,
in the JSON TF Serving writes for these protobufs: int64 fields (versions,
dimension sizes) as strings, default fields present (``"name": ""`` of a
dimension, ``"unknown_rank": false``, an empty ``error_message``).

A ``:predict`` body is read by :func:`parse_predict` without pydantic's
models: pydantic-core's JSON parser (the one pydantic's validation runs, so
the same values) and the request model's checks by hand; what it declines,
pydantic validates and names as before.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from bnncore_service.inference.tensors import (
    Decoded,
    Limits,
    as_array,
    bad,
    check_limits,
    check_memory,
    contiguous,
    fits,
    nonfinite_mask,
    shape_text,
    short,
    to_model_dtype,
)
from bnncore_service.records import VersionRecord

if TYPE_CHECKING:  # the request model, imported by its first validation
    from bnncore_service.inference.schemas import PredictRequest

__all__ = [
    "METHOD_NAME",
    "SIGNATURE_NAME",
    "TF_DTYPE",
    "PredictBody",
    "decode_tfs",
    "encode_tfs",
    "model_metadata",
    "model_status",
    "parse_predict",
]


@dataclasses.dataclass(slots=True)
class PredictBody:
    """A ``:predict`` body read by :func:`parse_predict`: the fields of
    ``schemas.PredictRequest``, with its defaults."""

    signature_name: str | None = None
    instances: list[Any] | None = None
    inputs: Any = None


PREDICT_KEYS = frozenset(field.name for field in dataclasses.fields(PredictBody))
"""The keys a ``:predict`` body may have (``PredictRequest`` forbids others)."""

_MAX_SIGNATURE_NAME = 256
"""``PredictRequest.signature_name``'s ``max_length`` (characters)."""


def parse_predict(raw: bytes) -> PredictBody | None:
    """A ``:predict`` body read as ``PredictRequest.model_validate_json``
    and the duplicate-key check read it, without importing pydantic.

    pydantic-core's ``from_json`` is the JSON parser of pydantic's
    validation: the same numbers (integers of any size, ``NaN`` and
    ``Infinity``), strings and refusals. The model's checks follow: an object
    with only its keys, ``signature_name`` a string of at most 256
    characters or null, ``instances`` a list or null, ``inputs`` anything.

    Args:
        raw: The body.

    Returns:
        The body, or ``None`` for one pydantic's validation should answer
        (it is not JSON, breaks a check, or repeats a key): it refuses it and
        names why.
    """
    from pydantic_core import from_json

    from bnncore_service.strictjson import JSONBodyError, check_duplicate_keys

    try:
        body = from_json(raw)
    except ValueError:
        return None
    if type(body) is not dict or not body.keys() <= PREDICT_KEYS:
        return None
    name = body.get("signature_name")
    if name is not None and (type(name) is not str or len(name) > _MAX_SIGNATURE_NAME):
        return None
    instances = body.get("instances")
    if instances is not None and type(instances) is not list:
        return None
    try:
        check_duplicate_keys(raw)
    except JSONBodyError:
        return None
    return PredictBody(name, instances, body.get("inputs"))


SIGNATURE_NAME = "serving_default"
"""The models' one signature (``:predict`` accepts only this name)."""

METHOD_NAME = "tensorflow/serving/predict"

TF_DTYPE = "DT_FLOAT"
"""Inputs and outputs are float32 (``tensors.MODEL_DTYPE``; the OIP metadata
says FP32), TensorFlow's ``DT_FLOAT``."""


def model_status(versions: list[int]) -> dict[str, Any]:
    """``GetModelStatusResponse`` of registered versions, the latest first (as
    TF Serving orders them). Every registered version is ``AVAILABLE``: the
    service loads a version on its first request."""
    return {
        "model_version_status": [
            {
                "version": str(version),
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
            for version in sorted(versions, reverse=True)
        ]
    }


def _tensor_info(tensor: dict[str, Any]) -> dict[str, Any]:
    return {
        "dtype": TF_DTYPE,
        "tensor_shape": {
            "dim": [{"size": str(size), "name": ""} for size in tensor["shape"]],
            "unknown_rank": False,
        },
        "name": f"{tensor['name']}:0",
    }


def model_metadata(record: VersionRecord) -> dict[str, Any]:
    """``GetModelMetadataResponse`` of a version: its ``serving_default``
    signature, one entry per model input and output (keyed by name, shapes
    with ``-1`` for the batch and any other free dimension)."""
    return {
        "model_spec": {
            "name": record.name,
            "signature_name": "",
            "version": str(record.version),
        },
        "metadata": {
            "signature_def": {
                "signature_def": {
                    SIGNATURE_NAME: {
                        "inputs": {t["name"]: _tensor_info(t) for t in record.inputs},
                        "outputs": {t["name"]: _tensor_info(t) for t in record.outputs},
                        "method_name": METHOD_NAME,
                    }
                }
            }
        },
    }


def _column(values: Any, where: str, expected: list[int], name: str) -> np.ndarray:
    array = as_array(values, where, "numbers")
    if not fits(array.shape, expected):
        raise bad(
            f"{where}: received a tensor of shape {shape_text(list(array.shape))} "
            f"(batch first); input {name!r} has shape {shape_text(expected)} (-1: "
            "any size)"
        )
    return to_model_dtype(array, where)


def _named(value: dict[str, Any], names: list[str], where: str, model: str) -> None:
    unknown = [k for k in value if k not in names]
    if unknown:
        raise bad(
            f"{where}: unknown input {short(unknown[0])}; model {model!r} has "
            f"inputs {names}"
        )
    missing = [n for n in names if n not in value]
    if missing:
        raise bad(f"{where}: missing input(s) {missing}; model {model!r} has {names}")


def decode_tfs(
    request: PredictBody | PredictRequest,
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
            f"signature_name: received {short(request.signature_name)}; the "
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
        check_limits(rows, 0, limits, "instances")
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
                    f"batch row (batch dimension first); received {short(column)}"
                )
            sizes[name] = len(column)
        rows = sizes[names[0]]
        for name in names:
            if sizes[name] != rows:
                raise bad(
                    f"{where[name]}: batch size {sizes[name]} differs from {rows} of "
                    f"input {names[0]!r}"
                )
        check_limits(rows, 0, limits, "inputs")
    known = sum(rows * math.prod(abs(d) for d in meta[n][1:]) for n in names)
    check_limits(rows, known, limits, "instances" if rows_format else "inputs")
    every = list(range(len(limits.cost.output_elements))) if limits.cost else []
    check_memory(rows, every, limits, "instances" if rows_format else "inputs")
    arrays = [_column(columns[n], where[n], meta[n], n) for n in names]
    elements = sum(a.size for a in arrays)
    check_limits(rows, elements, limits, "instances" if rows_format else "inputs")
    return Decoded(arrays=arrays, rows=rows, outputs=[], engine=None), rows_format


def _nested(array: np.ndarray) -> tuple[np.ndarray, int]:
    mask = nonfinite_mask(array)
    count = 0 if mask is None else int(np.count_nonzero(mask))
    return contiguous(array), count


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

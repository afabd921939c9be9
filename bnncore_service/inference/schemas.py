"""Request bodies of the inference endpoints (OpenAPI documentation and the
first, structural validation; the tensor checks are in ``tensors``, ``oip``
and ``tfserving``), and their response bodies (:mod:`.responses`).

The request models are built on first use (``defer_build``): an inference
replica validates a body with pydantic only when the fast parsers decline it
(``oip.parse_oip``) or for a TF Serving predict, so its start does not build
their validators. The response models only document the routes (the handlers
answer plain JSON): they live in :mod:`bnncore_service.inference.responses`,
imported when one of them is first asked for here, e.g. by the FastAPI
routes (``routes/inference.py``); an inference replica imports it only for
its OpenAPI document. Importing and building them at start-up cost about
10 ms of CPU time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict

if TYPE_CHECKING:
    from bnncore_service.inference.responses import (
        InferenceResponse,
        ModelReady,
        PredictResponse,
        ResponseOutput,
        TFSModelMetadata,
        TFSModelStatus,
    )

__all__ = [
    "BINARY_BODY",
    "InferenceRequest",
    "InferenceResponse",
    "ModelReady",
    "PredictRequest",
    "PredictResponse",
    "RequestInput",
    "RequestOutput",
    "ResponseOutput",
    "TFSModelMetadata",
    "TFSModelStatus",
    "request_body",
]

Parameters = dict[str, Any]
"""OIP ``$parameters``: key/value pairs (values: string, number or boolean)."""

Dim = Annotated[int, Strict(), Field(ge=0, le=2**63 - 1)]
"""A dimension: a JSON integer (not ``1.0``, not ``"1"``, not ``true``)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class RequestInput(_Strict):
    """One input tensor (OIP ``$request_input``).

    ``data`` is the tensor's elements in row-major order, flat or nested to
    ``shape``; it is absent when ``parameters.binary_data_size`` gives the
    elements in binary after the JSON header (the binary tensor data
    extension). ``datatype``: BOOL, UINT8, UINT16, UINT32, UINT64, INT8,
    INT16, INT32, INT64, FP16, FP32 or FP64 (BYTES is refused).
    """

    name: Annotated[str, Field(max_length=256)]
    shape: Annotated[list[Dim], Field(max_length=16)]
    datatype: Annotated[str, Field(max_length=16)]
    parameters: Parameters | None = None
    data: list[Any] | None = None


class RequestOutput(_Strict):
    """A requested output (OIP ``$request_output``)."""

    name: Annotated[str, Field(max_length=256)]
    parameters: Parameters | None = None


class InferenceRequest(_Strict):
    """OIP ``$inference_request``.

    ``parameters.engine``: ``"auto"`` (default: the packed engine when the model
    qualifies), ``"packed"`` or ``"keras"`` (TensorFlow path).
    """

    id: Annotated[str, Field(max_length=256)] | None = None
    parameters: Parameters | None = None
    inputs: Annotated[list[RequestInput], Field(min_length=1, max_length=64)]
    outputs: Annotated[list[RequestOutput], Field(max_length=64)] | None = None


class PredictRequest(_Strict):
    """TensorFlow Serving ``:predict`` body: row format (``instances``) or
    columnar format (``inputs``), never both."""

    signature_name: Annotated[str, Field(max_length=256)] | None = None
    instances: list[Any] | None = None
    inputs: Any = None


_RESPONSES = frozenset(
    {
        "InferenceResponse",
        "ModelReady",
        "PredictResponse",
        "ResponseOutput",
        "TFSModelMetadata",
        "TFSModelStatus",
    }
)


def __getattr__(name: str) -> Any:
    """The response models, from :mod:`.responses` (imported on first use)."""
    if name in _RESPONSES:
        module = importlib.import_module("bnncore_service.inference.responses")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(definitions[ref.removeprefix("#/$defs/")], definitions)
        return {k: _inline(v, definitions) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, definitions) for v in node]
    return node


def request_body(
    model: type[BaseModel], description: str | None = None
) -> dict[str, Any]:
    """OpenAPI ``requestBody`` of a route that parses its body itself (with
    ``model.model_validate_json``, faster than FastAPI's ``json.loads``), the
    model's schema inlined."""
    schema = model.model_json_schema()
    body: dict[str, Any] = {
        "required": True,
        "content": {
            "application/json": {"schema": _inline(schema, schema.get("$defs", {}))}
        },
    }
    if description:
        body["description"] = description
    return {"requestBody": body}


BINARY_BODY = (
    "JSON, or with the binary tensor data extension the JSON request followed "
    "by the inputs' raw bytes: the header `Inference-Header-Content-Length` "
    "gives the JSON's length and each binary input's "
    "`parameters.binary_data_size` its bytes (see docs/inference.md)."
)
"""Description of the OIP inference request body."""

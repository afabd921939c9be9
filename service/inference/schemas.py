"""Request and response bodies of the inference endpoints (OpenAPI documentation
and the first, structural validation; the tensor checks are in ``codec``)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "InferenceRequest",
    "InferenceResponse",
    "ModelReady",
    "PredictRequest",
    "PredictResponse",
    "RequestInput",
    "RequestOutput",
    "ResponseOutput",
    "request_body",
]

Parameters = dict[str, Any]
"""OIP ``$parameters``: key/value pairs (values: string, number or boolean)."""

Dim = Annotated[int, Field(ge=0, le=2**63 - 1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestInput(_Strict):
    """One input tensor (OIP ``$request_input``).

    ``data`` is the tensor's elements in row-major order, flat or nested to
    ``shape``. ``datatype``: BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16,
    INT32, INT64, FP16, FP32 or FP64 (BYTES is refused).
    """

    name: Annotated[str, Field(max_length=256)]
    shape: Annotated[list[Dim], Field(max_length=16)]
    datatype: Annotated[str, Field(max_length=16)]
    parameters: Parameters | None = None
    data: list[Any]


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


class ResponseOutput(BaseModel):
    """One output tensor (OIP ``$response_output``); non-finite values are
    ``null`` and counted in ``parameters.nonfinite``."""

    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None
    data: list[float | None]


class InferenceResponse(BaseModel):
    """OIP ``$inference_response``: ``parameters.engine`` says which engine ran
    (``packed`` or ``keras``); ``parameters.nonfinite`` counts null values."""

    model_name: str
    model_version: str
    id: str | None = None
    parameters: Parameters
    outputs: list[ResponseOutput]


class ModelReady(BaseModel):
    """OIP ``$ready_model_response``."""

    name: str
    ready: bool


class PredictRequest(_Strict):
    """TensorFlow Serving ``:predict`` body: row format (``instances``) or
    columnar format (``inputs``), never both."""

    signature_name: Annotated[str, Field(max_length=256)] | None = None
    instances: list[Any] | None = None
    inputs: Any = None


class PredictResponse(BaseModel):
    """TensorFlow Serving ``:predict`` answer: ``predictions`` (row format) or
    ``outputs`` (columnar format)."""

    predictions: list[Any] | None = None
    outputs: Any = None


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(definitions[ref.removeprefix("#/$defs/")], definitions)
        return {k: _inline(v, definitions) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, definitions) for v in node]
    return node


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` of a route that parses its body itself (with
    ``model.model_validate_json``, faster than FastAPI's ``json.loads``), the
    model's schema inlined."""
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _inline(schema, schema.get("$defs", {}))}
            },
        }
    }

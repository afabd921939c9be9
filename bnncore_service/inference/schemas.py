"""Request and response bodies of the inference endpoints (OpenAPI documentation
and the first, structural validation; the tensor checks are in ``tensors``,
``oip`` and ``tfserving``)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict

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
    model_config = ConfigDict(extra="forbid")


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


class ResponseOutput(BaseModel):
    """One output tensor (OIP ``$response_output``); non-finite values are
    ``null`` and counted in ``parameters.nonfinite``. An output sent in binary
    has no ``data``: ``parameters.binary_data_size`` gives its bytes after the
    JSON header."""

    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None
    data: list[float | None] | None = None


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


class TFSStatus(BaseModel):
    """TF Serving ``StatusProto``: ``error_code`` ``"OK"``, empty message."""

    error_code: str
    error_message: str


class TFSVersionStatus(BaseModel):
    """TF Serving ``ModelVersionStatus``: the version (a decimal string) and its
    state, ``AVAILABLE`` for every registered version."""

    version: str
    state: str
    status: TFSStatus


class TFSModelStatus(BaseModel):
    """TF Serving ``GetModelStatusResponse``: the versions, the latest first."""

    model_version_status: list[TFSVersionStatus]


class TFSDim(BaseModel):
    """A dimension: ``size`` is a decimal string, ``"-1"`` for a free one (the
    batch)."""

    size: str
    name: str


class TFSTensorShape(BaseModel):
    dim: list[TFSDim]
    unknown_rank: bool


class TFSTensorInfo(BaseModel):
    """TF Serving ``TensorInfo``: ``dtype`` is ``DT_FLOAT`` (float32)."""

    dtype: str
    tensor_shape: TFSTensorShape
    name: str


class TFSSignatureDef(BaseModel):
    inputs: dict[str, TFSTensorInfo]
    outputs: dict[str, TFSTensorInfo]
    method_name: str


class TFSSignatureDefMap(BaseModel):
    signature_def: dict[str, TFSSignatureDef]


class TFSMetadataField(BaseModel):
    signature_def: TFSSignatureDefMap


class TFSModelSpec(BaseModel):
    name: str
    signature_name: str
    version: str


class TFSModelMetadata(BaseModel):
    """TF Serving ``GetModelMetadataResponse``: the version's one signature,
    ``serving_default`` (``tensorflow/serving/predict``)."""

    model_spec: TFSModelSpec
    metadata: TFSMetadataField


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

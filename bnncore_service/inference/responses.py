"""Response bodies of the inference endpoints, for the OpenAPI document only:
the handlers (:mod:`bnncore_service.inference.handlers`) answer plain JSON,
which the full service's FastAPI routes check against these models.

An inference replica imports this module only to make its document
(``/openapi.json``); :mod:`bnncore_service.inference.schemas` re-exports the
models on first use.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from bnncore_service.inference.schemas import Parameters

__all__ = [
    "InferenceResponse",
    "ModelReady",
    "PredictResponse",
    "ResponseOutput",
    "TFSDim",
    "TFSMetadataField",
    "TFSModelMetadata",
    "TFSModelSpec",
    "TFSModelStatus",
    "TFSSignatureDef",
    "TFSSignatureDefMap",
    "TFSStatus",
    "TFSTensorInfo",
    "TFSTensorShape",
    "TFSVersionStatus",
]


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

"""Response models: estimates, registry entries, model metadata, errors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.schemas.common import Name, StrictModel
from service.schemas.definitions import Definition

__all__ = [
    "DeletedVersion",
    "ErrorResponse",
    "Estimate",
    "EstimateTotals",
    "HealthResponse",
    "LayerEstimate",
    "ModelList",
    "ModelMetadata",
    "ModelSummary",
    "ProfileReport",
    "RegisterRequest",
    "RegisteredModel",
    "ServerMetadata",
    "TensorMetadata",
    "Weight",
]


class ErrorResponse(BaseModel):
    """Every error: one message naming the offending field and value."""

    error: str = Field(examples=["definition.layers[0].units: ..."])


class Weight(BaseModel):
    """One weight of a layer: its bit width is its quantizer's precision, or 32."""

    name: str
    shape: list[int]
    bits: int
    trainable: bool


class LayerEstimate(BaseModel):
    """Analytic numbers for one layer (batch size 1)."""

    name: str
    type: str
    input_precision: int | None
    output_shape: list[int | None]
    params: int
    trainable_params: int
    non_trainable_params: int
    inference_params: int
    params_by_bits: dict[str, int]
    memory_bits: int
    macs: int
    macs_by_bits: dict[str, int]
    bops: int
    activation_elements: int
    weights: list[Weight]


class EstimateTotals(BaseModel):
    """Sums over the layers."""

    params: int
    trainable_params: int
    non_trainable_params: int
    inference_params: int
    params_by_bits: dict[str, int]
    memory_bits: int
    memory_bytes: int
    macs: int
    macs_by_bits: dict[str, int]
    bops: int
    activation_elements: int


class EstimateMemory(BaseModel):
    """What running the model costs in memory (``service/peak.py``), the
    figures inference requests are checked against (``BNN_MAX_REQUEST_BYTES``).

    Attributes:
        row_bytes: Most bytes live at once per row: inputs, the tensors later
            layers still need, and the largest layer's inputs, intermediates
            and output.
        fixed_bytes: Temporaries whatever the batch (quantized kernels).
        peak_layer: The layer where ``row_bytes`` is reached (``""``: the end
            of the run).
        response_row_bytes: Bound of one row's JSON response (all outputs).
        max_batch: Most rows one request may carry under
            ``BNN_MAX_REQUEST_BYTES`` with a JSON response of every output
            (``BNN_MAX_BATCH`` may be lower).
    """

    row_bytes: int
    fixed_bytes: int
    peak_layer: str
    response_row_bytes: int
    max_batch: int


class Estimate(BaseModel):
    """The analytic estimate computed before anything is built."""

    name: str
    inputs: list[list[int | None]]
    outputs: list[list[int | None]]
    layers: list[LayerEstimate]
    totals: EstimateTotals
    memory: EstimateMemory | None = None


class ProfileReport(BaseModel):
    """The JSON report of ``bnncore.models.profile(model).to_dict()``.

    Its full schema is documented with ``bnncore.analysis``; ``model``,
    ``layers`` and ``totals`` are always present.
    """

    model_config = ConfigDict(extra="allow")

    model: dict[str, Any]
    layers: list[dict[str, Any]]
    totals: dict[str, Any]


class RegisterRequest(StrictModel):
    """``POST /v2/models``: a name for the registry and a definition."""

    name: Name
    definition: Definition


class RegisteredModel(BaseModel):
    """One registered version."""

    name: str
    version: int
    content_hash: str
    kind: str
    created_at: str
    params: int
    memory_bytes: int
    created: bool = Field(
        description="False when an identical definition was already registered"
    )


class DeletedVersion(BaseModel):
    """``DELETE /v2/models/{name}/versions/{version}``."""

    name: str
    version: int
    deleted: bool


class ModelSummary(BaseModel):
    """A registry entry in the model list."""

    name: str
    versions: list[int]
    latest_version: int


class ModelList(BaseModel):
    """A page of the registry, ordered by name."""

    models: list[ModelSummary]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class TensorMetadata(BaseModel):
    """An input or output tensor (Open Inference Protocol)."""

    name: str
    datatype: Literal["FP32"]
    shape: list[int] = Field(description="-1 for the batch dimension")


class ModelMetadata(BaseModel):
    """Model metadata in the Open Inference Protocol's shape (plus registry fields)."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    content_hash: str | None = None
    created_at: str | None = None
    weights: Literal["initial", "uploaded"] | None = Field(
        default=None,
        description="'initial': the weights the definition builds with; "
        "'uploaded': a file uploaded with PUT .../weights",
    )
    weights_sha256: str | None = Field(
        default=None, description="sha256 of the uploaded weights file"
    )


class ServerMetadata(BaseModel):
    """``GET /v2``: the Open Inference Protocol's server metadata, plus catalogs."""

    name: str
    version: str
    extensions: list[str]
    layer_types: list[str]
    zoo_models: list[str]
    limits: dict[str, int]


class HealthResponse(BaseModel):
    """``GET /v2/health/live|ready``."""

    status: Literal["live", "ready"]

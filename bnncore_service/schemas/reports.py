"""Response models: estimates, registry entries, model metadata.

The error envelope's model is
:class:`bnncore_service.schemas.errors.ErrorResponse`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from bnncore_service.schemas.common import Name, StrictModel
from bnncore_service.schemas.definitions import Definition

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "ChangeValue",
    "ComparedLayer",
    "ComparedModel",
    "ComparisonReport",
    "DeletedVersion",
    "Estimate",
    "EstimateMemory",
    "EstimateReport",
    "EstimateReportLayer",
    "EstimateReportModel",
    "EstimateReportTotals",
    "EstimateReportWeight",
    "EstimateTotals",
    "HealthResponse",
    "LayerEstimate",
    "ModelList",
    "ModelMetadata",
    "ModelSummary",
    "ProfileReport",
    "RegisterRequest",
    "RegisteredModel",
    "ReportLayer",
    "ReportModel",
    "ReportTotals",
    "ReportWeight",
    "ServerMetadata",
    "TensorMetadata",
    "VersionSummary",
    "Weight",
]


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
    """What running the model costs in memory (``bnncore_service/peak.py``), the
    figures inference requests are checked against (``BNN_MAX_REQUEST_BYTES``)."""

    model_config = ConfigDict(extra="forbid")

    row_bytes: int = Field(
        description="Most bytes live at once per row (inputs, tensors still "
        "needed, the largest layer's inputs, intermediates and output)"
    )
    fixed_bytes: int = Field(
        description="Bytes of temporaries whatever the batch (quantized kernels)"
    )
    peak_layer: str = Field(
        description="The layer where row_bytes is reached ('': the end of the run)"
    )
    response_row_bytes: int = Field(
        description="Bound of one row's JSON response (all outputs)"
    )
    max_batch: int = Field(
        description="Most rows one request may carry under BNN_MAX_REQUEST_BYTES "
        "with a JSON response of every output (BNN_MAX_BATCH may be lower)"
    )


class Estimate(BaseModel):
    """The analytic estimate computed before anything is built: the service's
    working form; clients get :class:`EstimateReport`
    (``bnncore_service.estimate.estimate_report``)."""

    name: str
    inputs: list[list[int | None]]
    outputs: list[list[int | None]]
    layers: list[LayerEstimate]
    totals: EstimateTotals
    memory: EstimateMemory | None = None


# ----------------------------------------------------------------------------
# The profile report (``bnncore.models.profile(model).to_dict()``) and the
# estimate in the same shape
# ----------------------------------------------------------------------------

REPORT_SCHEMA_VERSION: Literal[1] = 1
"""``schema_version`` of the report document (``bnncore.analysis.SCHEMA_VERSION``)."""

BitWidth = Annotated[str, Field(pattern=r"^[1-9][0-9]*$")]
BitCounts = Annotated[
    dict[BitWidth, int],
    # additionalProperties rather than pydantic's patternProperties: what
    # client generators type (openapi-typescript: {[key: string]: number}).
    WithJsonSchema(
        {
            "type": "object",
            "additionalProperties": {"type": "integer"},
            "propertyNames": {"pattern": "^[1-9][0-9]*$"},
        }
    ),
]
"""A count per bit width, keyed by the width as a string (``{"1": 288}``)."""
Dim = Annotated[int, Field(ge=0)] | None
ShapeList = list[Dim]
"""One tensor's shape, batch first (``null`` for an unknown dimension)."""
Shapes = ShapeList | list[ShapeList] | None
"""One shape, a list of shapes (several tensors) or ``null`` (none)."""

_BITS = "keys are bit widths as strings, sorted; zero counts are left out"
_UNKNOWN = "null in an estimate: "


class _Response(BaseModel):
    """Base of the report's parts: every key always present, none other."""

    model_config = ConfigDict(extra="forbid")


_TYPED_BELOW = "Typed by the report and by the estimate"
# The bases declare every key in the report's order (a subclass that retypes a
# field keeps its place), so that an estimate lists its keys as a report does.


class _WeightFields(_Response):
    name: str = Field(description="The variable's name (`kernel`)")
    path: str | None = Field(description=_TYPED_BELOW)
    shape: list[Annotated[int, Field(ge=0)]] = Field(description="Its shape")
    dtype: str = Field(description="Its dtype name (`float32`)")
    bits: int = Field(
        description="Bit width it counts at: its quantizer's precision when "
        "quantized in the forward pass, else its dtype's width"
    )
    trainable: bool = Field(description="Whether the model trains it")
    params: int = Field(description="Number of scalars (the product of `shape`)")
    quantizer: str | None = Field(description=_TYPED_BELOW)
    counted: bool = Field(
        description="False when an earlier layer owns the same variable (shared "
        "weights count once, at their first appearance)"
    )


class ReportWeight(_WeightFields):
    """One weight variable of a layer."""

    path: str = Field(description="The variable's unique path (`model/dense/kernel`)")
    quantizer: str | None = Field(
        description="Name of the quantizer applied to it, or null"
    )


class EstimateReportWeight(_WeightFields):
    """One weight of a layer, as the estimate knows it before building."""

    path: None = Field(
        description=_UNKNOWN + "the path is named by Keras when the model is built"
    )
    quantizer: None = Field(description=_UNKNOWN + "only its bit width is known")


class _LayerFields(_Response):
    name: str = Field(description="The layer's name")
    type: str = Field(description="The layer's class name (`QuantConv2D`)")
    calls: int = Field(description="Times the layer is called in the model")
    input_precision: int | None = Field(
        description="Bits its input_quantizer quantizes inputs to; null: the "
        "layer has no input quantizer"
    )
    output_precision: int | None = Field(description=_TYPED_BELOW)
    input_shape: Shapes = Field(
        description="Input shape(s) of its first call, batch first"
    )
    output_shape: Shapes = Field(
        description="Output shape(s) of its first call, batch first"
    )
    params: int = Field(description="Parameters (weights counted once)")
    trainable_params: int = Field(description="Trainable parameters")
    non_trainable_params: int = Field(description="Non-trainable parameters")
    params_by_bits: BitCounts = Field(description="Parameters by bit width; " + _BITS)
    inference_params: int = Field(
        description="Parameters at inference: BatchNormalization folded into "
        "one scale and one offset per channel"
    )
    inference_params_by_bits: BitCounts = Field(
        description="Inference parameters by bit width; " + _BITS
    )
    memory_bits: int = Field(
        description="Bits to store its inference parameters at their bit widths"
    )
    memory_bits_8bit_floats: int = Field(
        description="memory_bits with every wider parameter stored at 8 bits"
    )
    macs: int = Field(description="Multiply-accumulates of all its calls, batch 1")
    macs_by_bits: BitCounts = Field(
        description="MACs by the wider of input and weight bit width; " + _BITS
    )
    bops: int = Field(
        description="Bit operations: each MAC times input bits times weight bits"
    )
    activation_elements: int = Field(
        description="Output elements of all its calls, batch 1"
    )
    activation_bytes: int | None = Field(description=_TYPED_BELOW)
    peak_activation_bytes: int | None = Field(description=_TYPED_BELOW)
    weights: Sequence[_WeightFields] = Field(description=_TYPED_BELOW)
    layers: Sequence[_LayerFields] = Field(description=_TYPED_BELOW)
    notes: Sequence[str] | None = Field(description=_TYPED_BELOW)


class ReportLayer(_LayerFields):
    """One layer (or operation, or nested model) of a profile; a nested model's
    rows are under ``layers``."""

    output_precision: int = Field(description="Bits of the values it outputs")
    activation_bytes: int = Field(
        description="Bytes of its outputs at output_precision, batch 1"
    )
    peak_activation_bytes: int = Field(
        description="Most bytes of inputs and outputs live during one of its "
        "calls, batch 1 (a nested model: the most of its layers)"
    )
    weights: list[ReportWeight] = Field(description="Its weight variables")
    layers: list[ReportLayer] = Field(
        description="A nested model's layers (one call of it); empty otherwise"
    )
    notes: list[str] = Field(
        description="What could not be counted exactly (unknown dimensions)"
    )


class EstimateReportLayer(_LayerFields):
    """One layer of an estimate: the report's row, computed from the definition
    alone (service-built models are flat, and call each layer once)."""

    output_precision: None = Field(
        description=_UNKNOWN + "it depends on the built layer's output dtype"
    )
    activation_bytes: None = Field(
        description=_UNKNOWN + "it needs output_precision (see "
        "activation_elements for the count)"
    )
    peak_activation_bytes: None = Field(
        description=_UNKNOWN + "it needs the precisions of inputs and outputs "
        "(the estimate's memory is the bound used to admit requests)"
    )
    weights: list[EstimateReportWeight] = Field(description="Its weights")
    layers: list[EstimateReportLayer] = Field(
        description="Always empty: a definition's model has no nested models"
    )
    notes: None = Field(description=_UNKNOWN + "notes are written by the profile")


class _ModelFields(_Response):
    name: str = Field(description="The model's name")
    type: str = Field(description="The model's class name (`Functional`)")
    input_shape: Shapes = Field(
        description="The input's shape, a list of shapes for several inputs, "
        "null for none"
    )
    output_shape: Shapes = Field(
        description="The output's shape, a list of shapes for several outputs, "
        "null for none"
    )
    input_shapes: list[ShapeList] = Field(description="Every input's shape")
    output_shapes: list[ShapeList] = Field(description="Every output's shape")


class ReportModel(_ModelFields):
    """The profiled model."""

    notes: list[str] = Field(
        description="Caveats of the whole profile (a subclassed model's order)"
    )


class EstimateReportModel(_ModelFields):
    """The model a definition builds."""

    notes: None = Field(description=_UNKNOWN + "notes are written by the profile")


class _TotalsFields(_Response):
    params: int = Field(description="Parameters")
    trainable_params: int = Field(description="Trainable parameters")
    non_trainable_params: int = Field(description="Non-trainable parameters")
    inference_params: int = Field(
        description="Parameters at inference (BatchNormalization folded)"
    )
    params_by_bits: BitCounts = Field(description="Parameters by bit width; " + _BITS)
    inference_params_by_bits: BitCounts = Field(
        description="Inference parameters by bit width; " + _BITS
    )
    binary_params: int = Field(description="1-bit parameters")
    float_params: int = Field(description="32-bit parameters")
    memory_bits: int = Field(description="Bits of the inference parameters")
    memory_bytes: int = Field(description="memory_bits in bytes, rounded up")
    memory_bytes_8bit_floats: int = Field(
        description="Bytes with every wider parameter stored at 8 bits"
    )
    float32_equivalent_bytes: int = Field(
        description="Bytes of the inference parameters all at 32 bits"
    )
    compression: float | None = Field(
        description="float32_equivalent_bytes / memory_bytes; null without memory"
    )
    memory_saving: float | None = Field(
        description="1 - memory_bytes / float32_equivalent_bytes; null without "
        "parameters"
    )
    macs: int = Field(description="Multiply-accumulates, batch 1")
    macs_by_bits: BitCounts = Field(description="MACs by bit width; " + _BITS)
    binary_mac_ratio: float | None = Field(
        description="Share of 1-bit MACs; null without MACs"
    )
    ternary_mac_ratio: float | None = Field(
        description="Share of 2-bit MACs; null without MACs"
    )
    bops: int = Field(description="Bit operations")


class ReportTotals(_TotalsFields):
    """Whole-model counts: sums over the top-level layers, ratios of the sums."""

    peak_activation_bytes: int = Field(
        description="The largest peak_activation_bytes of a layer, batch 1"
    )


class EstimateReportTotals(_TotalsFields):
    """Whole-model counts of an estimate (sums over the layers)."""

    peak_activation_bytes: None = Field(
        description=_UNKNOWN + "see memory.row_bytes for the model's peak "
        "memory per row"
    )
    activation_elements: int = Field(
        description="Estimate only: output elements of every layer, batch 1"
    )


class ProfileReport(_Response):
    """The JSON report: ``bnncore.models.profile(model).to_dict()``."""

    schema_version: Literal[1] = Field(
        description="Version of the document; bumped when a key changes "
        "meaning or goes (docs/service.md)"
    )
    model: ReportModel = Field(description="The model")
    layers: list[ReportLayer] = Field(description="Its layers, in order")
    totals: ReportTotals = Field(description="Whole-model counts")


class EstimateReport(_Response):
    """The analytic estimate: the report's shape, computed before anything is
    built; what only the built model can tell is null (each field says)."""

    schema_version: Literal[1] = Field(
        description="Version of the report document this follows"
    )
    model: EstimateReportModel = Field(description="The model the definition builds")
    layers: list[EstimateReportLayer] = Field(description="Its layers, in order")
    totals: EstimateReportTotals = Field(description="Whole-model counts")
    name: str = Field(description="Estimate only (kept): model.name")
    inputs: list[ShapeList] = Field(
        description="Estimate only (kept): model.input_shapes"
    )
    outputs: list[ShapeList] = Field(
        description="Estimate only (kept): model.output_shapes"
    )
    memory: EstimateMemory = Field(
        description="Estimate only: what running the model costs in memory"
    )


class ChangeValue(_Response):
    """One number in model ``a`` and in model ``b`` of a comparison."""

    a: float | None = Field(description="Its value in a (null when undefined)")
    b: float | None = Field(description="Its value in b (null when undefined)")
    delta: float | None = Field(description="b - a; null when either is null")


class ComparedModel(_Response):
    """One side of a comparison."""

    name: str = Field(description="The model's name")


class ComparedLayer(_Response):
    """A layer present in both models, matched by its path."""

    path: str = Field(description="The layer's path (`block/quant_dense`)")
    type_a: str = Field(description="Its class name in a")
    type_b: str = Field(description="Its class name in b")
    changes: dict[str, ChangeValue] = Field(
        description="By key: params, inference_params, memory_bits, macs, bops, "
        "and params_by_bits.N, macs_by_bits.N for each bit width N of either"
    )


class ComparisonReport(_Response):
    """``bnncore.analysis.compare(a, b).to_dict()``: model b against model a."""

    schema_version: Literal[1] = Field(description="Version of the document")
    a: ComparedModel = Field(description="The first model")
    b: ComparedModel = Field(description="The second model")
    totals: dict[str, ChangeValue] = Field(
        description="By key: memory_bytes, memory_bits, float32_equivalent_bytes, "
        "compression, params, inference_params, macs, binary_mac_ratio, bops, "
        "peak_activation_bytes, and params_by_bits.N, "
        "inference_params_by_bits.N, macs_by_bits.N for each bit width N"
    )
    layers: list[ComparedLayer] = Field(description="The layers of both, in a's order")
    only_in_a: list[str] = Field(description="Paths of the layers only a has")
    only_in_b: list[str] = Field(description="Paths of the layers only b has")


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


class VersionSummary(BaseModel):
    """One version in the model list: what a dashboard draws without asking
    for each version's report (nothing is built to answer)."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(description="The version number")
    kind: str = Field(
        description="The definition's kind (Sequential, Graph, Zoo, KerasJSON)"
    )
    content_hash: str = Field(description="SHA-256 of the normalized definition")
    created_at: str = Field(description="When it was registered (ISO 8601, UTC)")
    params: int = Field(description="Parameters (the report's totals.params)")
    params_by_bits: BitCounts | None = Field(
        description="Parameters by bit width (totals.params_by_bits); "
        + _BITS
        + "; null for a zoo definition (known once built: its report) or a "
        "definition over limits lowered since it was registered"
    )
    memory_bytes: int = Field(
        description="Bytes of the inference parameters at their bit widths "
        "(totals.memory_bytes)"
    )
    compression: float | None = Field(
        description="float32_equivalent_bytes / memory_bytes (totals.compression); "
        "null for a zoo definition, a definition over limits lowered since "
        "it was registered, or a model without memory"
    )
    weights_uploaded: bool = Field(
        description="Whether a weights file was uploaded (PUT .../weights); "
        "false: it serves the weights its definition builds with"
    )


class ModelSummary(BaseModel):
    """A registry entry in the model list."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The registered name")
    versions: list[int] = Field(description="Its versions, ascending")
    latest_version: int = Field(description="The highest version")
    version_details: list[VersionSummary] = Field(
        description="Each version's sizes and weights, in the order of "
        "versions (a version deleted while the page is read is left out)"
    )


class ModelList(BaseModel):
    """A page of the registry, ordered by name."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelSummary] = Field(description="The page's models")
    total: int = Field(description="Registered names in all")
    limit: int = Field(description="Most models in a page")
    offset: int = Field(description="Models skipped before this page")
    next_offset: int | None = Field(
        description="The offset of the next page; null on the last"
    )


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

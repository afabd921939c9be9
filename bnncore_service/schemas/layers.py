"""The allow-list of layer types, each with typed and bounded arguments.

A layer is an object with a ``type`` (one of :data:`LAYER_TYPES`) and the
arguments of the corresponding Keras or bnncore constructor, with the same
names and defaults. Only ``channels_last`` data is supported (TensorFlow's CPU
kernels need it). In a graph definition a layer also has ``inputs``.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import keras
from pydantic import (
    Discriminator,
    Field,
    Strict,
    Tag,
    field_validator,
    model_validator,
)

from bnncore import layers as blayers
from bnncore import quantizers as bquantizers
from bnncore_service.layerscale import LayerScale as _LayerScale
from bnncore_service.schemas.common import (
    HARD_MAX_DIM,
    Axis,
    Bool,
    Dim,
    Finite,
    Fraction,
    Name,
    NonNegFloat,
    PosFloat,
    Seed,
    SizeArg,
    StrictModel,
    as_tuple,
    size_tuple,
    type_tag,
)
from bnncore_service.schemas.components import (
    Activation,
    ApproxSignQ,
    Component,
    Constraint,
    DoReFaQ,
    Initializer,
    MagnitudeAwareSignQ,
    NoOpQ,
    Quantizer,
    Regularizer,
    SteHeavisideQ,
    SteSignQ,
    SteTernQ,
    SwishSignQ,
    create_activation,
)

__all__ = ["LAYER_TYPES", "AnyLayer", "LayerSpec"]

ChannelsLast = Literal["channels_last"]
Pad = Literal["valid", "same"]
Rank4 = Annotated[int, Strict(), Field(ge=1, le=4)]
PadInt = Annotated[int, Strict(), Field(ge=0, le=4096)]
Pair = tuple[PadInt, PadInt]


class LayerSpec(StrictModel):
    """Fields shared by every layer.

    Attributes:
        name: Layer name (generated in a Sequential definition when omitted).
        inputs: Names of the layers (or inputs) feeding this one; graph form only.
        trainable: Whether the layer's weights are trainable.
    """

    _keras: ClassVar[Any] = None
    _rank: ClassVar[int] = 0
    _sizes: ClassVar[tuple[str, ...]] = ()
    _min_inputs: ClassVar[int] = 1
    _max_inputs: ClassVar[int] = 1

    type: str
    name: Name | None = None
    inputs: Annotated[list[Name], Field(min_length=1, max_length=64)] | None = None
    trainable: Bool = True

    @model_validator(mode="after")
    def _normalize_sizes(self) -> LayerSpec:
        for field in self._sizes:
            value = getattr(self, field)
            if value is not None:
                try:
                    object.__setattr__(self, field, as_tuple(value, self._rank))
                except ValueError as error:
                    raise ValueError(f"{field}: {error}") from None
        self._check()
        return self

    def _check(self) -> None:
        """Cross-field checks of a layer type (after sizes are normalized)."""

    def constructor_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the layer's constructor, objects created."""
        kwargs: dict[str, Any] = {}
        for field in type(self).model_fields:
            if field in ("type", "inputs"):
                continue
            value = getattr(self, field)
            if field == "activation":
                value = create_activation(value)
            elif isinstance(value, Component):
                value = value.create()
            kwargs[field] = value
        return kwargs

    def create(self) -> Any:
        """Constructs the Keras layer from the validated arguments."""
        return type(self)._keras(**self.constructor_kwargs())


# --------------------------------------------------------------------------
# Weighted layers
# --------------------------------------------------------------------------


class _Biased(LayerSpec):
    activation: Activation | None = None
    use_bias: Bool = True
    bias_initializer: Initializer = "zeros"
    bias_regularizer: Regularizer | None = None
    activity_regularizer: Regularizer | None = None
    bias_constraint: Constraint | None = None


class _Kernel(_Biased):
    kernel_initializer: Initializer = "glorot_uniform"
    kernel_regularizer: Regularizer | None = None
    kernel_constraint: Constraint | None = None


class _InputQuant(LayerSpec):
    input_quantizer: Quantizer | None = None


class _KernelQuant(_InputQuant):
    kernel_quantizer: Quantizer | None = None


class _PadValues(LayerSpec):
    pad_values: Finite = 0.0


class _Dense(_Kernel):
    units: Dim


class Dense(_Dense):
    """``keras.layers.Dense``."""

    _keras = keras.layers.Dense
    type: Literal["Dense"]


class QuantDense(_KernelQuant, _Dense):
    """``bnncore.layers.QuantDense``."""

    _keras = blayers.QuantDense
    type: Literal["QuantDense"]


class _Spatial(LayerSpec):
    _sizes = ("kernel_size", "strides", "dilation_rate")
    kernel_size: SizeArg
    strides: SizeArg = 1
    padding: Pad = "valid"
    data_format: ChannelsLast = "channels_last"
    dilation_rate: SizeArg = 1

    def _check(self) -> None:
        super()._check()
        strides, dilation = size_tuple(self.strides), size_tuple(self.dilation_rate)
        if max(strides) > 1 and max(dilation) > 1:
            raise ValueError(
                f"strides > 1 cannot be combined with dilation_rate > 1 "
                f"(received strides={list(strides)}, "
                f"dilation_rate={list(dilation)})"
            )


class _Conv(_Spatial, _Kernel):
    filters: Dim
    groups: Dim = 1

    def _check(self) -> None:
        super()._check()
        if self.filters % self.groups:
            raise ValueError(
                f"filters must be a multiple of groups (received "
                f"filters={self.filters}, groups={self.groups})"
            )


class _Conv1D(_Conv):
    _rank = 1
    # Widens _Spatial's padding: only 1D convolutions also take "causal".
    padding: Literal["valid", "same", "causal"] = "valid"  # type: ignore[assignment]


class Conv1D(_Conv1D):
    """``keras.layers.Conv1D`` (``padding`` may also be ``"causal"``)."""

    _keras = keras.layers.Conv1D
    type: Literal["Conv1D"]


class Conv2D(_Conv):
    """``keras.layers.Conv2D``."""

    _keras, _rank = keras.layers.Conv2D, 2
    type: Literal["Conv2D"]


class Conv3D(_Conv):
    """``keras.layers.Conv3D``."""

    _keras, _rank = keras.layers.Conv3D, 3
    type: Literal["Conv3D"]


class QuantConv1D(_KernelQuant, _PadValues, _Conv1D):
    """``bnncore.layers.QuantConv1D``."""

    _keras = blayers.QuantConv1D
    type: Literal["QuantConv1D"]

    def _check(self) -> None:
        super()._check()
        if self.padding == "causal" and self.pad_values != 0.0:
            raise ValueError(
                "padding='causal' pads with zeros; pad_values must be 0 (received "
                f"padding='causal', pad_values={self.pad_values!r})"
            )


class QuantConv2D(_KernelQuant, _PadValues, _Conv):
    """``bnncore.layers.QuantConv2D``."""

    _keras, _rank = blayers.QuantConv2D, 2
    type: Literal["QuantConv2D"]


class QuantConv3D(_KernelQuant, _PadValues, _Conv):
    """``bnncore.layers.QuantConv3D``."""

    _keras, _rank = blayers.QuantConv3D, 3
    type: Literal["QuantConv3D"]


class _Transpose(_Spatial, _Kernel):
    filters: Dim


class Conv1DTranspose(_Transpose):
    """``keras.layers.Conv1DTranspose`` (no ``output_padding``)."""

    _keras, _rank = keras.layers.Conv1DTranspose, 1
    type: Literal["Conv1DTranspose"]


class Conv2DTranspose(_Transpose):
    """``keras.layers.Conv2DTranspose`` (no ``output_padding``)."""

    _keras, _rank = keras.layers.Conv2DTranspose, 2
    type: Literal["Conv2DTranspose"]


class Conv3DTranspose(_Transpose):
    """``keras.layers.Conv3DTranspose`` (no ``output_padding``)."""

    _keras, _rank = keras.layers.Conv3DTranspose, 3
    type: Literal["Conv3DTranspose"]


class QuantConv1DTranspose(_KernelQuant, _Transpose):
    """``bnncore.layers.QuantConv1DTranspose``."""

    _keras, _rank = blayers.QuantConv1DTranspose, 1
    type: Literal["QuantConv1DTranspose"]


class QuantConv2DTranspose(_KernelQuant, _Transpose):
    """``bnncore.layers.QuantConv2DTranspose``."""

    _keras, _rank = blayers.QuantConv2DTranspose, 2
    type: Literal["QuantConv2DTranspose"]


class QuantConv3DTranspose(_KernelQuant, _Transpose):
    """``bnncore.layers.QuantConv3DTranspose``."""

    _keras, _rank = blayers.QuantConv3DTranspose, 3
    type: Literal["QuantConv3DTranspose"]


class _Depthwise(_Spatial, _Biased):
    depth_multiplier: Dim = 1
    depthwise_initializer: Initializer = "glorot_uniform"
    depthwise_regularizer: Regularizer | None = None
    depthwise_constraint: Constraint | None = None


class DepthwiseConv1D(_Depthwise):
    """``keras.layers.DepthwiseConv1D``."""

    _keras, _rank = keras.layers.DepthwiseConv1D, 1
    type: Literal["DepthwiseConv1D"]


class DepthwiseConv2D(_Depthwise):
    """``keras.layers.DepthwiseConv2D``."""

    _keras, _rank = keras.layers.DepthwiseConv2D, 2
    type: Literal["DepthwiseConv2D"]


class _DepthwiseQuant(_InputQuant, _PadValues):
    depthwise_quantizer: Quantizer | None = None


class QuantDepthwiseConv1D(_DepthwiseQuant, _Depthwise):
    """``bnncore.layers.QuantDepthwiseConv1D``."""

    _keras, _rank = blayers.QuantDepthwiseConv1D, 1
    type: Literal["QuantDepthwiseConv1D"]


class QuantDepthwiseConv2D(_DepthwiseQuant, _Depthwise):
    """``bnncore.layers.QuantDepthwiseConv2D``."""

    _keras, _rank = blayers.QuantDepthwiseConv2D, 2
    type: Literal["QuantDepthwiseConv2D"]


class _Separable(_Depthwise):
    filters: Dim
    pointwise_initializer: Initializer = "glorot_uniform"
    pointwise_regularizer: Regularizer | None = None
    pointwise_constraint: Constraint | None = None


class SeparableConv1D(_Separable):
    """``keras.layers.SeparableConv1D``."""

    _keras, _rank = keras.layers.SeparableConv1D, 1
    type: Literal["SeparableConv1D"]


class SeparableConv2D(_Separable):
    """``keras.layers.SeparableConv2D``."""

    _keras, _rank = keras.layers.SeparableConv2D, 2
    type: Literal["SeparableConv2D"]


class _SeparableQuant(_DepthwiseQuant):
    pointwise_quantizer: Quantizer | None = None


class QuantSeparableConv1D(_SeparableQuant, _Separable):
    """``bnncore.layers.QuantSeparableConv1D``."""

    _keras, _rank = blayers.QuantSeparableConv1D, 1
    type: Literal["QuantSeparableConv1D"]


class QuantSeparableConv2D(_SeparableQuant, _Separable):
    """``bnncore.layers.QuantSeparableConv2D``."""

    _keras, _rank = blayers.QuantSeparableConv2D, 2
    type: Literal["QuantSeparableConv2D"]


class _Local(_Kernel):
    _sizes = ("kernel_size", "strides")
    filters: Dim
    kernel_size: SizeArg
    strides: SizeArg = 1
    padding: Literal["valid"] = "valid"
    data_format: ChannelsLast = "channels_last"


class LocallyConnected1D(_Local):
    """``bnncore.layers.LocallyConnected1D`` (``padding="valid"`` only)."""

    _keras, _rank = blayers.LocallyConnected1D, 1
    type: Literal["LocallyConnected1D"]


class LocallyConnected2D(_Local):
    """``bnncore.layers.LocallyConnected2D`` (``padding="valid"`` only)."""

    _keras, _rank = blayers.LocallyConnected2D, 2
    type: Literal["LocallyConnected2D"]


class QuantLocallyConnected1D(_KernelQuant, _Local):
    """``bnncore.layers.QuantLocallyConnected1D``."""

    _keras, _rank = blayers.QuantLocallyConnected1D, 1
    type: Literal["QuantLocallyConnected1D"]


class QuantLocallyConnected2D(_KernelQuant, _Local):
    """``bnncore.layers.QuantLocallyConnected2D``."""

    _keras, _rank = blayers.QuantLocallyConnected2D, 2
    type: Literal["QuantLocallyConnected2D"]


LastAxis = Axis | Annotated[list[Axis], Field(min_length=1, max_length=1)]
"""The last axis, in any spelling: ``-1``, ``rank - 1`` (``3`` for images) or
a one-item list of either (as ``Normalization`` writes it); which axis it is
depends on the input's rank, so the estimate checks it."""


def last_axis(axis: int | list[int]) -> int:
    """The one axis of a :data:`LastAxis` value (``[3]`` → ``3``)."""
    return axis[0] if isinstance(axis, list) else axis


class BatchNormalization(LayerSpec):
    """``keras.layers.BatchNormalization`` over the last axis (``axis`` is -1 or
    the input's rank - 1, as ``keras.applications`` writes it)."""

    _keras = keras.layers.BatchNormalization
    type: Literal["BatchNormalization"]
    axis: Axis = -1
    momentum: Fraction = 0.99
    epsilon: Annotated[PosFloat, Field(le=1.0)] = 0.001
    center: Bool = True
    scale: Bool = True
    beta_initializer: Initializer = "zeros"
    gamma_initializer: Initializer = "ones"
    moving_mean_initializer: Initializer = "zeros"
    moving_variance_initializer: Initializer = "ones"
    beta_regularizer: Regularizer | None = None
    gamma_regularizer: Regularizer | None = None
    beta_constraint: Constraint | None = None
    gamma_constraint: Constraint | None = None


class PReLU(LayerSpec):
    """``keras.layers.PReLU``: one slope per element, shared along ``shared_axes``."""

    _keras = keras.layers.PReLU
    type: Literal["PReLU"]
    alpha_initializer: Initializer = "zeros"
    alpha_regularizer: Regularizer | None = None
    alpha_constraint: Constraint | None = None
    shared_axes: Annotated[list[Rank4], Field(min_length=1, max_length=4)] | None = None


FiniteList = Annotated[list[Finite], Field(min_length=1, max_length=HARD_MAX_DIM)]
NonNegList = Annotated[list[NonNegFloat], Field(min_length=1, max_length=HARD_MAX_DIM)]


class Normalization(LayerSpec):
    """``keras.layers.Normalization`` over the last axis: ``(x - mean) /
    sqrt(variance)``.

    ``mean`` and ``variance`` are both given (a number, or one per channel)
    or both ``null`` (then they are weights, uploaded with the others, as
    ``adapt()`` would set them). No ``adapt()`` in the service.
    """

    _keras = keras.layers.Normalization
    type: Literal["Normalization"]
    axis: LastAxis = -1
    mean: Finite | FiniteList | None = None
    variance: NonNegFloat | NonNegList | None = None
    invert: Bool = False

    def _check(self) -> None:
        super()._check()
        if (self.mean is None) != (self.variance is None):
            raise ValueError(
                "mean and variance are given together or not at all (received "
                f"mean={'null' if self.mean is None else 'values'}, "
                f"variance={'null' if self.variance is None else 'values'})"
            )
        lengths = [
            len(v) if isinstance(v, list) else None for v in (self.mean, self.variance)
        ]
        if lengths[0] != lengths[1]:
            shown = ["a number" if n is None else f"{n} values" for n in lengths]
            raise ValueError(
                f"mean and variance must have the same shape (received mean: "
                f"{shown[0]}, variance: {shown[1]})"
            )


class LayerNormalization(LayerSpec):
    """``keras.layers.LayerNormalization`` over the last axis."""

    _keras = keras.layers.LayerNormalization
    type: Literal["LayerNormalization"]
    axis: LastAxis = -1
    epsilon: Annotated[PosFloat, Field(le=1.0)] = 0.001
    center: Bool = True
    scale: Bool = True
    rms_scaling: Literal[False] = False
    beta_initializer: Initializer = "zeros"
    gamma_initializer: Initializer = "ones"
    beta_regularizer: Regularizer | None = None
    gamma_regularizer: Regularizer | None = None
    beta_constraint: Constraint | None = None
    gamma_constraint: Constraint | None = None


# --------------------------------------------------------------------------
# Element-wise layers
# --------------------------------------------------------------------------


class LayerScale(LayerSpec):
    """ConvNeXt's ``LayerScale``: ``x * gamma``, one scale per channel
    (``projection_dim`` channels, each initialized to ``init_values``);
    built from :class:`bnncore_service.layerscale.LayerScale`."""

    _keras = _LayerScale
    type: Literal["LayerScale"]
    init_values: Finite
    projection_dim: Dim


class ActivationLayer(LayerSpec):
    """``keras.layers.Activation``."""

    _keras = keras.layers.Activation
    type: Literal["Activation"]
    activation: Activation


class ReLU(LayerSpec):
    """``keras.layers.ReLU``."""

    _keras = keras.layers.ReLU
    type: Literal["ReLU"]
    max_value: NonNegFloat | None = None
    negative_slope: NonNegFloat = 0.0
    threshold: Finite = 0.0


class LeakyReLU(LayerSpec):
    """``keras.layers.LeakyReLU``."""

    _keras = keras.layers.LeakyReLU
    type: Literal["LeakyReLU"]
    negative_slope: NonNegFloat = 0.3


class ELU(LayerSpec):
    """``keras.layers.ELU``."""

    _keras = keras.layers.ELU
    type: Literal["ELU"]
    alpha: Finite = 1.0


class Softmax(LayerSpec):
    """``keras.layers.Softmax``."""

    _keras = keras.layers.Softmax
    type: Literal["Softmax"]
    axis: Axis = -1


class Dropout(LayerSpec):
    """``keras.layers.Dropout`` (inactive at inference)."""

    _keras = keras.layers.Dropout
    type: Literal["Dropout"]
    rate: Annotated[Fraction, Field(lt=1)]
    seed: Seed | None = None
    noise_shape: (
        Annotated[list[Dim | None], Field(min_length=1, max_length=5)] | None
    ) = None


class Rescaling(LayerSpec):
    """``keras.layers.Rescaling`` with scalar ``scale`` and ``offset``."""

    _keras = keras.layers.Rescaling
    type: Literal["Rescaling"]
    scale: Finite
    offset: Finite = 0.0


class Identity(LayerSpec):
    """``keras.layers.Identity``."""

    _keras = keras.layers.Identity
    type: Literal["Identity"]


def _quantizer_layer(spec: type[Component], doc: str) -> type[LayerSpec]:
    name = spec.__name__.removesuffix("Q")
    namespace = {
        "__doc__": doc,
        "__module__": __name__,
        "__annotations__": {"type": Literal[name]},
        "_keras": spec._target,
    }
    return type(name, (LayerSpec, spec), namespace)


SteSign = _quantizer_layer(SteSignQ, "``bnncore.quantizers.SteSign`` as a layer.")
ApproxSign = _quantizer_layer(ApproxSignQ, "``bnncore.quantizers.ApproxSign``.")
SwishSign = _quantizer_layer(SwishSignQ, "``bnncore.quantizers.SwishSign``.")
SteHeaviside = _quantizer_layer(SteHeavisideQ, "``bnncore.quantizers.SteHeaviside``.")
MagnitudeAwareSign = _quantizer_layer(
    MagnitudeAwareSignQ, "``bnncore.quantizers.MagnitudeAwareSign``."
)
SteTern = _quantizer_layer(SteTernQ, "``bnncore.quantizers.SteTern``.")
DoReFa = _quantizer_layer(DoReFaQ, "``bnncore.quantizers.DoReFa``.")
NoOp = _quantizer_layer(NoOpQ, "``bnncore.quantizers.NoOp``.")
assert bquantizers.SteSign is SteSign._keras  # the allow-list maps to bnncore

# --------------------------------------------------------------------------
# Pooling and shape layers
# --------------------------------------------------------------------------


class _Pool(LayerSpec):
    _sizes = ("pool_size", "strides")
    pool_size: SizeArg = 2
    strides: SizeArg | None = None
    padding: Pad = "valid"
    data_format: ChannelsLast = "channels_last"


def _pool(name: str, rank: int) -> type[LayerSpec]:
    namespace = {
        "__doc__": f"``keras.layers.{name}``.",
        "__module__": __name__,
        "__annotations__": {"type": Literal[name]},
        "_keras": getattr(keras.layers, name),
        "_rank": rank,
    }
    return type(name, (_Pool,), namespace)


class _GlobalPool(LayerSpec):
    data_format: ChannelsLast = "channels_last"
    keepdims: Bool = False


def _global_pool(name: str, rank: int) -> type[LayerSpec]:
    namespace = {
        "__doc__": f"``keras.layers.{name}``.",
        "__module__": __name__,
        "__annotations__": {"type": Literal[name]},
        "_keras": getattr(keras.layers, name),
        "_rank": rank,
    }
    return type(name, (_GlobalPool,), namespace)


_POOLS = [
    _pool(f"{kind}Pooling{rank}D", rank)
    for kind in ("Max", "Average")
    for rank in (1, 2, 3)
]
_GLOBAL_POOLS = [
    _global_pool(f"Global{kind}Pooling{rank}D", rank)
    for kind in ("Max", "Average")
    for rank in (1, 2, 3)
]


class Flatten(LayerSpec):
    """``keras.layers.Flatten``."""

    _keras = keras.layers.Flatten
    type: Literal["Flatten"]
    data_format: ChannelsLast = "channels_last"


class Reshape(LayerSpec):
    """``keras.layers.Reshape``: positive sizes, at most one ``-1``."""

    _keras = keras.layers.Reshape
    type: Literal["Reshape"]
    target_shape: Annotated[
        tuple[Annotated[int, Strict(), Field(ge=-1, le=1 << 20)], ...],
        Field(min_length=1, max_length=4),
    ]

    @field_validator("target_shape")
    @classmethod
    def _one_unknown(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if 0 in value or value.count(-1) > 1:
            raise ValueError(
                f"expected positive sizes and at most one -1, received {list(value)}"
            )
        return value


class Permute(LayerSpec):
    """``keras.layers.Permute``: a permutation of ``1..rank``."""

    _keras = keras.layers.Permute
    type: Literal["Permute"]
    dims: Annotated[tuple[Rank4, ...], Field(min_length=1, max_length=4)]

    @field_validator("dims")
    @classmethod
    def _permutation(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if sorted(value) != list(range(1, len(value) + 1)):
            raise ValueError(
                f"expected a permutation of 1..{len(value)}, received {list(value)}"
            )
        return value


class ZeroPadding1D(LayerSpec):
    """``keras.layers.ZeroPadding1D``: ``p`` or ``[before, after]``."""

    _keras = keras.layers.ZeroPadding1D
    type: Literal["ZeroPadding1D"]
    padding: PadInt | Pair = 1
    data_format: ChannelsLast = "channels_last"

    @field_validator("padding")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int) else tuple(value)


PadItem = PadInt | Pair


def _pairs_per_axis(value: Any, rank: int) -> Any:
    """``p``, ``rank`` integers or ``rank`` pairs → one pair per axis."""
    if isinstance(value, int):
        return ((value, value),) * rank
    if len(value) != rank:
        raise ValueError(
            f"expected an integer, {rank} integers or {rank} "
            f"[before, after] pairs, received {len(value)} items"
        )
    if all(isinstance(v, int) for v in value):
        return tuple((v, v) for v in value)
    if all(isinstance(v, tuple) for v in value):
        return tuple(value)
    raise ValueError("expected all integers or all [before, after] pairs")


class _ZeroPaddingND(LayerSpec):
    data_format: ChannelsLast = "channels_last"
    padding: PadInt | tuple[PadItem, ...] = 1

    @field_validator("padding")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        return _pairs_per_axis(value, cls._rank)


class ZeroPadding2D(_ZeroPaddingND):
    """``keras.layers.ZeroPadding2D``."""

    _keras, _rank = keras.layers.ZeroPadding2D, 2
    type: Literal["ZeroPadding2D"]


class ZeroPadding3D(_ZeroPaddingND):
    """``keras.layers.ZeroPadding3D``."""

    _keras, _rank = keras.layers.ZeroPadding3D, 3
    type: Literal["ZeroPadding3D"]


class Cropping1D(LayerSpec):
    """``keras.layers.Cropping1D``: ``c`` or ``[start, end]`` cropped."""

    _keras = keras.layers.Cropping1D
    type: Literal["Cropping1D"]
    cropping: PadInt | Pair = (1, 1)

    @field_validator("cropping")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int) else tuple(value)


class _CroppingND(LayerSpec):
    data_format: ChannelsLast = "channels_last"
    cropping: PadInt | tuple[PadItem, ...]

    @field_validator("cropping")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        return _pairs_per_axis(value, cls._rank)


class Cropping2D(_CroppingND):
    """``keras.layers.Cropping2D``: an integer, 2 integers or 2 ``[start,
    end]`` pairs."""

    _keras, _rank = keras.layers.Cropping2D, 2
    type: Literal["Cropping2D"]
    cropping: PadInt | tuple[PadItem, ...] = 0


class Cropping3D(_CroppingND):
    """``keras.layers.Cropping3D``: an integer, 3 integers or 3 ``[start,
    end]`` pairs."""

    _keras, _rank = keras.layers.Cropping3D, 3
    type: Literal["Cropping3D"]
    cropping: PadInt | tuple[PadItem, ...] = 1


class UpSampling1D(LayerSpec):
    """``keras.layers.UpSampling1D``."""

    _keras = keras.layers.UpSampling1D
    type: Literal["UpSampling1D"]
    size: Annotated[int, Strict(), Field(ge=1, le=64)] = 2


class UpSampling2D(LayerSpec):
    """``keras.layers.UpSampling2D``."""

    _keras, _rank, _sizes = keras.layers.UpSampling2D, 2, ("size",)
    type: Literal["UpSampling2D"]
    size: (
        Annotated[int, Strict(), Field(ge=1, le=64)]
        | tuple[Annotated[int, Strict(), Field(ge=1, le=64)], ...]
    ) = 2
    data_format: ChannelsLast = "channels_last"
    interpolation: Literal["nearest", "bilinear"] = "nearest"


# --------------------------------------------------------------------------
# Merge layers
# --------------------------------------------------------------------------


class _Merge(LayerSpec):
    _min_inputs, _max_inputs = 2, 64


def _merge(name: str) -> type[LayerSpec]:
    namespace = {
        "__doc__": f"``keras.layers.{name}``: inputs of one rank, sizes equal "
        "or 1 on each axis (broadcast).",
        "__module__": __name__,
        "__annotations__": {"type": Literal[name]},
        "_keras": getattr(keras.layers, name),
    }
    return type(name, (_Merge,), namespace)


_MERGES = [_merge(n) for n in ("Add", "Multiply", "Average", "Maximum", "Minimum")]


class Subtract(_Merge):
    """``keras.layers.Subtract``: exactly two inputs (broadcast as other merges)."""

    _keras, _max_inputs = keras.layers.Subtract, 2
    type: Literal["Subtract"]


class Concatenate(_Merge):
    """``keras.layers.Concatenate`` along ``axis``."""

    _keras = keras.layers.Concatenate
    type: Literal["Concatenate"]
    axis: Axis = -1


class Input(LayerSpec):
    """A model input (graph form): its ``shape`` excludes the batch dimension."""

    type: Literal["Input"]
    shape: Annotated[list[Dim], Field(min_length=1, max_length=4)]
    _min_inputs, _max_inputs = 0, 0

    def create(self) -> Any:
        return keras.Input(shape=tuple(self.shape), name=self.name)


_ALL: list[type[LayerSpec]] = [
    Input,
    Dense,
    QuantDense,
    Conv1D,
    Conv2D,
    Conv3D,
    QuantConv1D,
    QuantConv2D,
    QuantConv3D,
    Conv1DTranspose,
    Conv2DTranspose,
    Conv3DTranspose,
    QuantConv1DTranspose,
    QuantConv2DTranspose,
    QuantConv3DTranspose,
    DepthwiseConv1D,
    DepthwiseConv2D,
    QuantDepthwiseConv1D,
    QuantDepthwiseConv2D,
    SeparableConv1D,
    SeparableConv2D,
    QuantSeparableConv1D,
    QuantSeparableConv2D,
    LocallyConnected1D,
    LocallyConnected2D,
    QuantLocallyConnected1D,
    QuantLocallyConnected2D,
    BatchNormalization,
    Normalization,
    LayerNormalization,
    PReLU,
    LayerScale,
    ActivationLayer,
    ReLU,
    LeakyReLU,
    ELU,
    Softmax,
    Dropout,
    Rescaling,
    Identity,
    SteSign,
    ApproxSign,
    SwishSign,
    SteHeaviside,
    MagnitudeAwareSign,
    SteTern,
    DoReFa,
    NoOp,
    *_POOLS,
    *_GLOBAL_POOLS,
    Flatten,
    Reshape,
    Permute,
    ZeroPadding1D,
    ZeroPadding2D,
    ZeroPadding3D,
    Cropping1D,
    Cropping2D,
    Cropping3D,
    UpSampling1D,
    UpSampling2D,
    *_MERGES,
    Subtract,
    Concatenate,
]

LAYER_TYPES: dict[str, type[LayerSpec]] = {type_tag(cls): cls for cls in _ALL}
"""The allow-list: layer ``type`` → its spec class."""


def _layer_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        tag = value.get("type")
        return tag if isinstance(tag, str) and tag in LAYER_TYPES else None
    return getattr(value, "type", None)


def _build_union() -> Any:
    members = tuple(Annotated[cls, Tag(name)] for name, cls in LAYER_TYPES.items())
    union = members[0]
    for member in members[1:]:
        union = union | member
    return Annotated[
        union,
        Discriminator(
            _layer_tag,
            custom_error_type="unknown_layer_type",
            custom_error_message=(
                "unknown or missing layer type; allowed types: "
                + ", ".join(sorted(LAYER_TYPES))
            ),
        ),
    ]


AnyLayer = _build_union()
"""Any allow-listed layer, chosen by its ``type``."""

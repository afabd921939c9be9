"""The allow-list of layer types, generated from the constructors' signatures.

A layer is an object with a ``type`` (one of :data:`LAYER_TYPES`) and the
arguments of the corresponding Keras or bnncore constructor, with the same
names and defaults. Only ``channels_last`` data is supported (TensorFlow's CPU
kernels need it). In a graph definition a layer also has ``inputs``.

Nothing here restates a constructor. Each layer spec is made from:

* the layer types: those of :data:`bnncore_runtime.layer_rules.RULES` that the
  rules can estimate before building (the service estimates every definition)
  and that are ``definable`` (not the noise layers), plus ``Input``;
* the constructor (``keras.layers.X``, ``bnncore.layers.X`` or
  ``bnncore.quantizers.X``): its arguments and their defaults, read with
  :func:`inspect.signature`;
* :data:`ARGUMENT_TYPES`: the type and bounds of an argument, by its name,
  shared by every layer (``kernel_size``, ``*_initializer``, ...);
* :data:`REFUSED`: arguments the service never accepts, with the reason;
* :data:`OVERRIDES`: the few layers whose arguments need more than their name
  says (a wider ``padding``, a per-layer bound, a default Keras lacks);
* :data:`FAMILIES`: the base spec of a layer by the Keras class it extends,
  which holds the cross-field checks (``filters`` a multiple of ``groups``).

Adding a layer type = its entry in the layer rules (and, only if its
arguments need it, one entry in :data:`OVERRIDES`) + its tests; see
CONTRIBUTING.md.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import keras
from pydantic import AfterValidator, Discriminator, Field, Strict, Tag, model_validator

from bnncore import layers as blayers
from bnncore import quantizers as bquantizers
from bnncore_runtime.layer_rules import RULES
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
    QUANTIZER_TYPES,
    Activation,
    Component,
    Constraint,
    Initializer,
    Quantizer,
    Regularizer,
    create_activation,
)
from bnncore_service.schemas.signatures import model_class, signature_fields

__all__ = [
    "ARGUMENT_TYPES",
    "FAMILIES",
    "LAYER_TYPES",
    "OVERRIDES",
    "REFUSED",
    "AnyLayer",
    "Input",
    "LayerSpec",
    "Override",
    "last_axis",
]

ChannelsLast = Literal["channels_last"]
Pad = Literal["valid", "same"]
Rank4 = Annotated[int, Strict(), Field(ge=1, le=4)]
PadInt = Annotated[int, Strict(), Field(ge=0, le=4096)]
Pair = tuple[PadInt, PadInt]
PadItem = PadInt | Pair


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
        for field_name in self._sizes:
            value = getattr(self, field_name)
            if value is not None:
                try:
                    object.__setattr__(self, field_name, as_tuple(value, self._rank))
                except ValueError as error:
                    raise ValueError(f"{field_name}: {error}") from None
        self._check()
        return self

    def _check(self) -> None:
        """Cross-field checks of a layer type (after sizes are normalized)."""

    def constructor_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the layer's constructor, objects created."""
        kwargs: dict[str, Any] = {}
        for field_name in type(self).model_fields:
            if field_name in ("type", "inputs"):
                continue
            value = getattr(self, field_name)
            if field_name == "activation":
                value = create_activation(value)
            elif isinstance(value, Component):
                value = value.create()
            kwargs[field_name] = value
        return kwargs

    def create(self) -> Any:
        """Constructs the Keras layer from the validated arguments."""
        return type(self)._keras(**self.constructor_kwargs())


_BASE_FIELDS = frozenset(LayerSpec.model_fields)

# --------------------------------------------------------------------------
# Families: the checks of a layer, by the Keras class it extends
# --------------------------------------------------------------------------


class _Spatial(LayerSpec):
    if TYPE_CHECKING:  # the fields the check reads, generated on each spec
        strides: Any
        dilation_rate: Any

    def _check(self) -> None:
        super()._check()
        strides, dilation = size_tuple(self.strides), size_tuple(self.dilation_rate)
        if max(strides) > 1 and max(dilation) > 1:
            raise ValueError(
                f"strides > 1 cannot be combined with dilation_rate > 1 "
                f"(received strides={list(strides)}, "
                f"dilation_rate={list(dilation)})"
            )


class _Conv(_Spatial):
    if TYPE_CHECKING:
        filters: int
        groups: int
        padding: str

    def _check(self) -> None:
        super()._check()
        if self.filters % self.groups:
            raise ValueError(
                f"filters must be a multiple of groups (received "
                f"filters={self.filters}, groups={self.groups})"
            )
        pad_values = getattr(self, "pad_values", 0.0)
        if self.padding == "causal" and pad_values != 0.0:
            raise ValueError(
                "padding='causal' pads with zeros; pad_values must be 0 (received "
                f"padding='causal', pad_values={pad_values!r})"
            )


class _Merge(LayerSpec):
    _min_inputs, _max_inputs = 2, 64


class _Normalization(LayerSpec):
    if TYPE_CHECKING:
        mean: float | list[float] | None
        variance: float | list[float] | None

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


def _keras_layers(*names: str) -> tuple[type, ...]:
    return tuple(getattr(keras.layers, name) for name in names)


def _ranks(pattern: str, ranks: tuple[int, ...] = (1, 2, 3)) -> tuple[str, ...]:
    return tuple(pattern.format(rank) for rank in ranks)


FAMILIES: tuple[tuple[type[LayerSpec], tuple[type, ...]], ...] = (
    (_Conv, _keras_layers(*_ranks("Conv{}D"))),
    (
        _Spatial,
        _keras_layers(
            *_ranks("Conv{}DTranspose"),
            *_ranks("DepthwiseConv{}D", (1, 2)),
            *_ranks("SeparableConv{}D", (1, 2)),
        ),
    ),
    (
        _Merge,
        _keras_layers(
            "Add",
            "Subtract",
            "Multiply",
            "Average",
            "Maximum",
            "Minimum",
            "Concatenate",
        ),
    ),
    (_Normalization, _keras_layers("Normalization")),
)
"""The base spec of a layer whose constructor extends one of these classes
(the first match; ``QuantConv2D`` extends ``keras.layers.Conv2D``): it holds
the family's cross-field checks, or its number of inputs. Any other layer's
base is :class:`LayerSpec`."""

# --------------------------------------------------------------------------
# Argument types, by name
# --------------------------------------------------------------------------

ARGUMENT_TYPES: dict[str, Any] = {
    "activation": Activation,
    "use_bias": Bool,
    "units": Dim,
    "filters": Dim,
    "groups": Dim,
    "depth_multiplier": Dim,
    "projection_dim": Dim,
    "kernel_size": SizeArg,
    "strides": SizeArg,
    "dilation_rate": SizeArg,
    "pool_size": SizeArg,
    "padding": Pad,
    "data_format": ChannelsLast,
    "pad_values": Finite,
    "axis": Axis,
    "momentum": Fraction,
    "epsilon": Annotated[PosFloat, Field(le=1.0)],
    "center": Bool,
    "scale": Bool,
    "invert": Bool,
    "keepdims": Bool,
    "seed": Seed,
    "init_values": Finite,
    "max_value": NonNegFloat,
    "negative_slope": NonNegFloat,
    "threshold": Finite,
    "alpha": Finite,
    "offset": Finite,
    "interpolation": Literal["nearest", "bilinear"],
}
"""The type of a layer argument, by its name, for every layer."""

_SUFFIX_TYPES: dict[str, Any] = {
    "_initializer": Initializer,
    "_regularizer": Regularizer,
    "_constraint": Constraint,
    "_quantizer": Quantizer,
}
"""...and by the end of its name (``kernel_initializer``, ``input_quantizer``)."""

SIZE_ARGUMENTS = ("kernel_size", "strides", "dilation_rate", "pool_size")
"""Arguments given as one integer or one per spatial axis (normalized to one
per axis)."""

REFUSED: dict[str, str] = {
    "lora_rank": "LoRA fine-tuning is training",
    "lora_alpha": "LoRA fine-tuning is training",
    "quantization_config": "Keras's own int8/float8 quantization, not a BNN one",
    "output_padding": "not estimated; the output size follows from the rest",
    "implementation": "the locally connected layer's kernel layout is chosen",
    "renorm": "batch renormalization is training",
    "renorm_clipping": "batch renormalization is training",
    "renorm_momentum": "batch renormalization is training",
    "synchronized": "synchronized statistics are multi-device training",
    "metrics": "training metrics of a quantizer",
}
"""Constructor arguments no layer accepts (an unknown field if sent), and why."""

DEFAULTS: dict[str, Any] = {"data_format": "channels_last"}
"""Defaults that replace the constructor's for every layer: Keras's ``None``
is ``keras.config.image_data_format()``, which the service fixes."""


def _argument_type(name: str) -> Any:
    if name in ARGUMENT_TYPES:
        return ARGUMENT_TYPES[name]
    for suffix, annotation in _SUFFIX_TYPES.items():
        if name.endswith(suffix):
            return annotation
    return None


# --------------------------------------------------------------------------
# Per-layer overrides
# --------------------------------------------------------------------------


def _pair(value: Any) -> Any:
    """``p`` → ``(p, p)``; a pair stays a pair."""
    return (value, value) if isinstance(value, int) else tuple(value)


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


def _one_unknown(value: tuple[int, ...]) -> tuple[int, ...]:
    if 0 in value or value.count(-1) > 1:
        raise ValueError(
            f"expected positive sizes and at most one -1, received {list(value)}"
        )
    return value


def _permutation(value: tuple[int, ...]) -> tuple[int, ...]:
    if sorted(value) != list(range(1, len(value) + 1)):
        raise ValueError(
            f"expected a permutation of 1..{len(value)}, received {list(value)}"
        )
    return value


PadPair = Annotated[PadInt | Pair, AfterValidator(_pair)]


def _pads(rank: int) -> Any:
    return Annotated[
        PadInt | tuple[PadItem, ...],
        AfterValidator(functools.partial(_pairs_per_axis, rank=rank)),
    ]


LastAxis = Axis | Annotated[list[Axis], Field(min_length=1, max_length=1)]
"""The last axis, in any spelling: ``-1``, ``rank - 1`` (``3`` for images) or
a one-item list of either (as ``Normalization`` writes it); which axis it is
depends on the input's rank, so the estimate checks it."""


def last_axis(axis: int | list[int]) -> int:
    """The one axis of a :data:`LastAxis` value (``[3]`` → ``3``)."""
    return axis[0] if isinstance(axis, list) else axis


FiniteList = Annotated[list[Finite], Field(min_length=1, max_length=HARD_MAX_DIM)]
NonNegList = Annotated[list[NonNegFloat], Field(min_length=1, max_length=HARD_MAX_DIM)]
UpSize = Annotated[int, Strict(), Field(ge=1, le=64)]


@dataclass(frozen=True)
class Override:
    """What a layer type needs beyond its constructor's signature.

    Attributes:
        types: Argument types that replace :data:`ARGUMENT_TYPES` for it.
        defaults: Defaults that replace the constructor's (one it lacks).
        extra: Fields for arguments its signature hides in ``**kwargs``:
            ``{name: (type, default)}``.
        sizes: Its size arguments, when not :data:`SIZE_ARGUMENTS`.
        max_inputs: At most this many inputs (merges).
        note: Appended to its description (``"``keras.layers.X``" + note``).
        doc: Its whole description instead.
        constructor: Its class when it is not in ``keras.layers``,
            ``bnncore.layers`` or ``bnncore.quantizers``.
        class_name: Its spec's class name when not the type (a clash).
    """

    types: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    sizes: tuple[str, ...] | None = None
    max_inputs: int | None = None
    note: str = "."
    doc: str | None = None
    constructor: Callable[..., Any] | None = None
    class_name: str | None = None


_CAUSAL = Override(
    types={"padding": Literal["valid", "same", "causal"]},
    note=' (``padding`` may also be ``"causal"``).',
)
_VALID_ONLY = Override(
    types={"padding": Literal["valid"]}, note=' (``padding="valid"`` only).'
)
_NO_OUTPUT_PADDING = Override(note=" (no ``output_padding``).")
_POOL_SIZE_2 = Override(defaults={"pool_size": 2})
_BROADCAST = Override(
    note=": inputs of one rank, sizes equal or 1 on each axis (broadcast)."
)

OVERRIDES: dict[str, Override] = {
    "Conv1D": _CAUSAL,
    "QuantConv1D": Override(types=_CAUSAL.types),
    **{name: _NO_OUTPUT_PADDING for name in _ranks("Conv{}DTranspose")},
    **{name: _VALID_ONLY for name in _ranks("LocallyConnected{}D", (1, 2))},
    **{
        name: Override(types=_VALID_ONLY.types)
        for name in _ranks("QuantLocallyConnected{}D", (1, 2))
    },
    **{name: _POOL_SIZE_2 for name in _ranks("AveragePooling{}D")},
    "BatchNormalization": Override(
        note=" over the last axis (``axis`` is -1 or\n    the input's rank - 1, as "
        "``keras.applications`` writes it)."
    ),
    "Normalization": Override(
        types={
            "axis": LastAxis,
            "mean": Finite | FiniteList,
            "variance": NonNegFloat | NonNegList,
        },
        note=" over the last axis: ``(x - mean) /\n    sqrt(variance)``.\n\n"
        "    ``mean`` and ``variance`` are both given (a number, or one per channel)\n"
        "    or both ``null`` (then they are weights, uploaded with the others, as\n"
        "    ``adapt()`` would set them). No ``adapt()`` in the service.",
    ),
    "LayerNormalization": Override(
        types={"axis": LastAxis},
        extra={"rms_scaling": (Literal[False], False)},
        note=" over the last axis.",
    ),
    "PReLU": Override(
        types={
            "shared_axes": Annotated[list[Rank4], Field(min_length=1, max_length=4)]
        },
        note=": one slope per element, shared along ``shared_axes``.",
    ),
    "LayerScale": Override(
        constructor=_LayerScale,
        doc="ConvNeXt's ``LayerScale``: ``x * gamma``, one scale per channel\n"
        "    (``projection_dim`` channels, each initialized to ``init_values``);\n"
        "    built from :class:`bnncore_service.layerscale.LayerScale`.",
    ),
    "Activation": Override(class_name="ActivationLayer"),
    "Dropout": Override(
        types={
            "rate": Annotated[Fraction, Field(lt=1)],
            "noise_shape": Annotated[
                list[Dim | None], Field(min_length=1, max_length=5)
            ],
        },
        note=" (inactive at inference).",
    ),
    "Rescaling": Override(
        types={"scale": Finite}, note=" with scalar ``scale`` and ``offset``."
    ),
    "Reshape": Override(
        types={
            "target_shape": Annotated[
                tuple[Annotated[int, Strict(), Field(ge=-1, le=1 << 20)], ...],
                Field(min_length=1, max_length=4),
                AfterValidator(_one_unknown),
            ]
        },
        note=": positive sizes, at most one ``-1``.",
    ),
    "Permute": Override(
        types={
            "dims": Annotated[
                tuple[Rank4, ...],
                Field(min_length=1, max_length=4),
                AfterValidator(_permutation),
            ]
        },
        note=": a permutation of ``1..rank``.",
    ),
    "ZeroPadding1D": Override(
        types={"padding": PadPair}, note=": ``p`` or ``[before, after]``."
    ),
    "ZeroPadding2D": Override(types={"padding": _pads(2)}),
    "ZeroPadding3D": Override(types={"padding": _pads(3)}),
    "Cropping1D": Override(
        types={"cropping": PadPair}, note=": ``c`` or ``[start, end]`` cropped."
    ),
    **{
        f"Cropping{rank}D": Override(
            types={"cropping": _pads(rank)},
            note=f": an integer, {rank} integers or {rank} ``[start,\n    "
            "end]`` pairs.",
        )
        for rank in (2, 3)
    },
    "UpSampling1D": Override(types={"size": UpSize}),
    "UpSampling2D": Override(
        types={"size": UpSize | tuple[UpSize, ...]}, sizes=("size",)
    ),
    **{
        name: _BROADCAST
        for name in ("Add", "Multiply", "Average", "Maximum", "Minimum")
    },
    "Subtract": Override(
        max_inputs=2, note=": exactly two inputs (broadcast as other merges)."
    ),
    "Concatenate": Override(note=" along ``axis``."),
}
"""The layer types whose arguments need more than their names say."""

# --------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------

_PUBLIC_MODULES: tuple[tuple[str, Any], ...] = (
    ("bnncore.layers", blayers),
    ("bnncore.quantizers", bquantizers),
    ("keras.layers", keras.layers),
)


def _constructor(name: str, override: Override) -> tuple[str, Any]:
    if override.constructor is not None:
        return "", override.constructor
    for path, module in _PUBLIC_MODULES:
        target = getattr(module, name, None)
        if isinstance(target, type):
            return path, target
    raise LookupError(f"layer type {name!r}: no constructor in {_PUBLIC_MODULES}")


def _family(constructor: Any) -> type[LayerSpec]:
    for base, parents in FAMILIES:
        if issubclass(constructor, parents):
            return base
    return LayerSpec


def _rank(name: str) -> int:
    """The spatial rank a type's name states (``Conv2DTranspose`` → 2)."""
    found = re.search(r"(\d)D(?:Transpose)?$", name)
    return int(found.group(1)) if found else 0


def _layer_spec(name: str) -> type[LayerSpec]:
    override = OVERRIDES.get(name, Override())
    path, constructor = _constructor(name, override)
    doc = override.doc or f"``{path}.{name}``{override.note}"
    if name in QUANTIZER_TYPES:
        # A quantizer used as a layer: its object form plus the layer fields.
        component = QUANTIZER_TYPES[name]
        return model_class(
            name,
            (LayerSpec, component),
            name,
            {},
            doc=f"``{path}.{name}`` as a layer.",
            module=__name__,
            _keras=constructor,
        )
    fields = signature_fields(
        constructor,
        types=_argument_type,
        overrides=override.types,
        defaults={**DEFAULTS, **override.defaults},
        skip=(*_BASE_FIELDS, *REFUSED),
    )
    fields.update(override.extra)
    base = _family(constructor)
    sizes = override.sizes or tuple(f for f in SIZE_ARGUMENTS if f in fields)
    return model_class(
        override.class_name or name,
        base,
        name,
        fields,
        doc=doc,
        module=__name__,
        _keras=constructor,
        _rank=_rank(name),
        _sizes=sizes,
        _max_inputs=override.max_inputs or base._max_inputs,
    )


class Input(LayerSpec):
    """A model input (graph form): its ``shape`` excludes the batch dimension."""

    type: Literal["Input"]
    shape: Annotated[list[Dim], Field(min_length=1, max_length=4)]
    _min_inputs, _max_inputs = 0, 0

    def create(self) -> Any:
        return keras.Input(shape=tuple(self.shape), name=self.name)


LAYER_TYPES: dict[str, type[LayerSpec]] = {
    "Input": Input,
    **{
        name: _layer_spec(name)
        for name, rule in RULES.items()
        if rule.estimable and rule.definable
    },
}
"""The allow-list: layer ``type`` → its spec class. The types are those the
layer rules can estimate (the service estimates every definition before it
builds it), plus ``Input``."""

_BY_CLASS_NAME = {cls.__name__: cls for cls in LAYER_TYPES.values()}


def __getattr__(name: str) -> type[LayerSpec]:
    """A generated spec class by its class name (``layers.Conv2D``)."""
    try:
        return _BY_CLASS_NAME[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def _layer_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        tag = value.get("type")
        return tag if isinstance(tag, str) and tag in LAYER_TYPES else None
    return getattr(value, "type", None)


def _build_union() -> Any:
    members = [Annotated[cls, Tag(name)] for name, cls in LAYER_TYPES.items()]
    return Annotated[
        functools.reduce(operator.or_, members),
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
assert all(type_tag(cls) == name for name, cls in LAYER_TYPES.items())

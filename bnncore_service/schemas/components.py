"""Quantizers, constraints, activations, initializers and regularizers by allow-list.

Each can be named by an alias (``"ste_sign"``) or given as an object with a
``type`` and typed arguments (``{"type": "SteSign", "clip_value": 0.5}``).
Validation resolves aliases to the object form with every default filled in,
so two spellings of the same thing normalize (and hash) identically. Each
object model creates its runtime object with :meth:`create`, calling the
constructor of a class or function from this allow-list — never a lookup by a
client-supplied name in Keras.

The object forms restate no constructor: their fields are read from the
constructors' signatures (:func:`~bnncore_service.schemas.signatures.signature_fields`)
and typed by argument name (:data:`QUANTIZER_ARGUMENT_TYPES`,
:data:`COMPONENT_ARGUMENT_TYPES`); the quantizers, their names and precision
come from ``bnncore.quantizers.registry()``.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import keras
from pydantic import (
    AfterValidator,
    BaseModel,
    Discriminator,
    Field,
    PlainSerializer,
    RootModel,
    Tag,
)

from bnncore import activations as bactivations
from bnncore import constraints as bconstraints
from bnncore import quantizers as bquantizers
from bnncore_service.schemas.common import (
    Axis,
    Bits,
    Bool,
    Finite,
    Fraction,
    NonNegFloat,
    PosFloat,
    Seed,
    StrictModel,
    snake_name,
    type_tag,
)
from bnncore_service.schemas.signatures import (
    REQUIRED,
    constructor_defaults,
    model_class,
    signature_fields,
)

__all__ = [
    "ACTIVATION_ALIASES",
    "QUANTIZER_TYPES",
    "Activation",
    "Constraint",
    "Initializer",
    "Quantizer",
    "QuantizerObject",
    "Regularizer",
]


class Component(StrictModel):
    """An object form: ``type`` plus constructor arguments."""

    _target: ClassVar[Callable[..., Any]]

    if TYPE_CHECKING:  # each concrete component declares it as a one-value Literal
        type: str

    def create(self) -> Any:
        """Calls the allow-listed constructor with the validated arguments."""
        return type(self)._target(**self.model_dump(exclude={"type"}))


def _names(title: str, names: Any) -> type[Enum]:
    """A string enum of allowed names (one shared entry in the JSON schema)."""
    return Enum(title, {name: name for name in names}, type=str)  # type: ignore[return-value]


def _alias_or_object(alias: Any, obj: Any, resolve: Callable[[Any], Any]) -> Any:
    """``alias | obj``, told apart by the JSON type, aliases resolved to objects.

    The object union is wrapped in a named root model so that the JSON schema
    holds it once and refers to it, instead of repeating it in every field.
    """
    wrapper = type(
        alias.__name__.replace("Name", "Object"),
        (RootModel[obj],),
        {"__module__": __name__},
    )

    def resolved(value: Any) -> Any:
        if isinstance(value, RootModel):
            return value.root
        return resolve(value.value if isinstance(value, Enum) else value)

    return Annotated[
        Annotated[alias, Tag("Alias")] | Annotated[wrapper, Tag("Object")],
        Discriminator(lambda v: "Alias" if isinstance(v, str | Enum) else "Object"),
        AfterValidator(resolved),
        PlainSerializer(_dump, return_type=Any),
    ]


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value.value if isinstance(value, Enum) else value


# --------------------------------------------------------------------------
# Quantizers
# --------------------------------------------------------------------------

QUANTIZER_ARGUMENT_TYPES: dict[str, Any] = {
    "clip_value": PosFloat | None,
    "beta": PosFloat,
    "threshold_value": NonNegFloat,
    "ternary_weight_networks": Bool,
    "k_bit": Bits,
    "mode": Literal["activations", "weights"],
    "precision": Bits,
}
"""The type of each quantizer argument, by its name; the defaults are the
constructors' own (``bnncore.quantizers``). ``metrics`` (training metrics of a
kernel) is refused: the service builds models for inference."""


def _summary(cls: type[bquantizers.Quantizer]) -> str:
    """The first line of a quantizer's docstring (Sphinx roles as literals)
    and its precision."""
    line = (cls.__doc__ or "").strip().splitlines()[0]
    line = re.sub(r":\w+:`([^`]+)`", r"``\1``", line).rstrip(".")
    if cls.precision_argument is not None:
        return f"{line} (``{cls.precision_argument}`` bits)."
    return f"{line} ({cls.precision} bit{'s' if cls.precision != 1 else ''})."


def _quantizer_component(cls: type[bquantizers.Quantizer]) -> type[Component]:
    """The object form of a ``bnncore.quantizers`` class, from its signature."""
    fields = signature_fields(
        cls, types=QUANTIZER_ARGUMENT_TYPES.get, skip=("metrics",)
    )
    return model_class(
        f"{cls.__name__}Q",
        Component,
        cls.__name__,
        fields,
        doc=_summary(cls),
        module=__name__,
        _target=cls,
    )


_QUANTIZER_NAMES = bquantizers.registry()
QUANTIZER_TYPES: dict[str, type[Component]] = {
    cls.__name__: _quantizer_component(cls)
    for cls in dict.fromkeys(_QUANTIZER_NAMES.values())
}
"""The object forms: ``bnncore.quantizers`` class name → its spec."""
QuantizerObject: Any = Annotated[
    functools.reduce(operator.or_, QUANTIZER_TYPES.values()),
    Field(discriminator="type"),
]
_QUANTIZER_ALIASES = {
    name: cls.__name__
    for name, cls in sorted(
        _QUANTIZER_NAMES.items(), key=lambda item: item[0] == item[1].__name__
    )
    if all(d is not REQUIRED for d in constructor_defaults(cls).values())
}
"""The names of ``bnncore.quantizers.get`` whose class needs no argument:
aliases first, then class names (a stable sort of the registry's order)."""
QuantizerAlias = _names("QuantizerName", _QUANTIZER_ALIASES)


def quantizer_bits(spec: Component | None) -> int | None:
    """Bit width of a quantizer spec, ``None`` for no quantizer."""
    if spec is None:
        return None
    target: type[bquantizers.Quantizer] = type(spec)._target  # type: ignore[assignment]
    return bquantizers.precision_of(target, spec.model_dump(exclude={"type"}))


def _resolve_quantizer(value: Any) -> Any:
    if isinstance(value, str):
        return QUANTIZER_TYPES[_QUANTIZER_ALIASES[value]](
            type=_QUANTIZER_ALIASES[value]
        )
    return value


Quantizer = _alias_or_object(QuantizerAlias, QuantizerObject, _resolve_quantizer)
"""A quantizer: an alias such as ``"ste_sign"`` or an object with ``type``."""

# --------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------

_KERAS_ACTIVATIONS = [
    "linear",
    "relu",
    "relu6",
    "sigmoid",
    "hard_sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
    "softplus",
    "softsign",
    "elu",
    "selu",
    "gelu",
    "silu",
    "swish",
    "hard_silu",
    "hard_swish",
    "leaky_relu",
    "exponential",
    "mish",
]
_BNN_ACTIVATIONS: dict[str, Callable[..., Any]] = {
    "hard_tanh": bactivations.hard_tanh,
    "leaky_tanh": bactivations.leaky_tanh,
    **bquantizers.function_aliases(),
}
ACTIVATION_ALIASES: dict[str, Callable[..., Any]] = {
    **{name: getattr(keras.activations, name) for name in _KERAS_ACTIVATIONS},
    **_BNN_ACTIVATIONS,
}
ActivationAlias = _names("ActivationName", ACTIVATION_ALIASES)
Activation = _alias_or_object(ActivationAlias, QuantizerObject, lambda v: v)
"""An activation: a name (Keras's or bnncore's) or a quantizer object."""


def create_activation(spec: Any) -> Any:
    """The callable for an activation spec (``None`` → ``None``)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        return ACTIVATION_ALIASES[spec]
    return spec.create()


# --------------------------------------------------------------------------
# Constraints, initializers and regularizers
# --------------------------------------------------------------------------

AxisArg = Axis | Annotated[list[Axis], Field(min_length=1, max_length=6)]

COMPONENT_ARGUMENT_TYPES: dict[str, Any] = {
    "clip_value": PosFloat,
    "max_value": PosFloat,
    "min_value": NonNegFloat,
    "rate": Fraction,
    "axis": AxisArg,
    "value": Finite,
    "mean": Finite,
    "stddev": PosFloat,
    "minval": Finite,
    "maxval": Finite,
    "scale": PosFloat,
    "mode": Literal["fan_in", "fan_out", "fan_avg"],
    "distribution": Literal["truncated_normal", "untruncated_normal", "uniform"],
    "seed": Seed,
    "l1": NonNegFloat,
    "l2": NonNegFloat,
}
"""The type of each constraint, initializer and regularizer argument, by its
name; the defaults are the Keras (or bnncore) constructors' own."""
_COMPONENT_OVERRIDES: dict[str, dict[str, Any]] = {
    "MinMaxNorm": {"max_value": NonNegFloat},
}
_COMPONENT_REFUSED = ("input_axes", "output_axes")
"""Keras's axes of a kernel laid out differently; the service's layers lay out
their kernels as Keras does by default."""


def _component(cls: type, suffix: str, doc: str | None = None) -> type[Component]:
    """The object form of an allow-listed class, from its signature."""
    fields = signature_fields(
        cls,
        types=COMPONENT_ARGUMENT_TYPES.get,
        overrides=_COMPONENT_OVERRIDES.get(cls.__name__, {}),
        skip=_COMPONENT_REFUSED,
    )
    return model_class(
        f"{cls.__name__}{suffix}",
        Component,
        cls.__name__,
        fields,
        doc=doc,
        module=__name__,
        _target=cls,
    )


def _union(specs: Any) -> Any:
    return Annotated[functools.reduce(operator.or_, specs), Field(discriminator="type")]


def _alias_resolver(aliases: dict[str, type[Component]]) -> Callable[[Any], Any]:
    def resolve(value: Any) -> Any:
        if isinstance(value, str):
            cls = aliases[value]
            return cls(type=type_tag(cls))
        return value

    return resolve


WeightClipC = _component(
    bconstraints.WeightClip, "C", "Clip weights to ``[-clip_value, clip_value]``."
)
MaxNormC, NonNegC, UnitNormC, MinMaxNormC = (
    _component(getattr(keras.constraints, name), "C", f"Keras ``{name}``.")
    for name in ("MaxNorm", "NonNeg", "UnitNorm", "MinMaxNorm")
)
ConstraintObject = _union([WeightClipC, MaxNormC, NonNegC, UnitNormC, MinMaxNormC])
_CONSTRAINT_ALIASES: dict[str, type[Component]] = {
    "weight_clip": WeightClipC,
    "WeightClip": WeightClipC,
    "max_norm": MaxNormC,
    "non_neg": NonNegC,
    "unit_norm": UnitNormC,
    "min_max_norm": MinMaxNormC,
}
Constraint = _alias_or_object(
    _names("ConstraintName", _CONSTRAINT_ALIASES),
    ConstraintObject,
    _alias_resolver(_CONSTRAINT_ALIASES),
)

_INITIALIZERS = [
    _component(getattr(keras.initializers, name), "I")
    for name in (
        "Zeros",
        "Ones",
        "Constant",
        "RandomNormal",
        "TruncatedNormal",
        "RandomUniform",
        "VarianceScaling",
        "GlorotUniform",
        "GlorotNormal",
        "HeUniform",
        "HeNormal",
        "LecunUniform",
        "LecunNormal",
    )
]
InitializerObject = _union(_INITIALIZERS)
_INITIALIZER_ALIASES: dict[str, type[Component]] = {}
for _cls in _INITIALIZERS:
    _type = type_tag(_cls)
    _INITIALIZER_ALIASES[snake_name(_type)] = _cls
    _INITIALIZER_ALIASES[_type] = _cls
Initializer = _alias_or_object(
    _names("InitializerName", _INITIALIZER_ALIASES),
    InitializerObject,
    _alias_resolver(_INITIALIZER_ALIASES),
)

L1R, L2R, L1L2R = (
    _component(getattr(keras.regularizers, name), "R") for name in ("L1", "L2", "L1L2")
)
RegularizerObject = _union([L1R, L2R, L1L2R])
_REGULARIZER_ALIASES: dict[str, type[Component]] = {
    "l1": L1R,
    "L1": L1R,
    "l2": L2R,
    "L2": L2R,
    "l1_l2": L1L2R,
    "L1L2": L1L2R,
}
Regularizer = _alias_or_object(
    _names("RegularizerName", _REGULARIZER_ALIASES),
    RegularizerObject,
    _alias_resolver(_REGULARIZER_ALIASES),
)


def create(spec: Any) -> Any:
    """The runtime object of any component spec; ``None`` stays ``None``."""
    return None if spec is None else spec.create()

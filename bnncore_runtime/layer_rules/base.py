"""The types of the layer rules and the helpers the rules share.

:class:`LayerRule` and what it answers with (:class:`Weight`,
:class:`MacTerm`, :class:`Fold`, :class:`RuleError`), and the small
functions every family of rules uses: sizes per axis, window geometry (from
:mod:`bnncore_runtime.geometry`), rank and axis checks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bnncore_runtime.geometry import axis_geometry, same_padding

Shape = tuple[int, ...]
"""A shape without the batch dimension."""

MaybeShape = Sequence[int | None] | None
"""A shape whose sizes may be unknown (``None``), or no shape at all."""

LayerArgs = Any
"""Anything exposing a layer's constructor arguments as attributes: a built
Keras layer, a service layer spec, a ``SimpleNamespace``."""

Factor = Callable[[str], int]
"""Elements created per element by the quantizer or activation held in a
constructor argument (``"input_quantizer"``, ``"activation"``); 0 for none."""


class RuleError(ValueError):
    """Inputs or arguments a layer cannot take.

    Attributes:
        field: The constructor argument at fault (``"cropping"``), or ``None``
            when the inputs themselves do not fit.
        message: What is wrong, with the values received and what is allowed.
    """

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Weight:
    """A weight a layer creates.

    Attributes:
        name: Its Keras name (``"kernel"``, ``"moving_mean"``).
        shape: Its shape.
        trainable: False for statistics (``moving_mean``, ``count``) even in a
            trainable layer.
        dtype: Its dtype name.
    """

    name: str
    shape: Shape
    trainable: bool = True
    dtype: str = "float32"

    @property
    def size(self) -> int:
        """Number of values."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class MacTerm:
    """A kernel that multiplies inputs.

    Attributes:
        weight: The kernel's weight name.
        positions: How many times each of its weights is used in one call at
            batch 1 (``None`` when a size it depends on is unknown).
    """

    weight: str
    positions: int | None


@dataclass(frozen=True)
class Fold:
    """The inference form of a normalization that folds into ``per_channel``
    values per channel (a scale and an offset), counted at the width of the
    weight ``channels`` (one value per channel) whatever else it has."""

    channels: str = "moving_mean"
    per_channel: int = 2

    def params(self, channels: int) -> int:
        """Inference parameters of a layer with ``channels`` channels."""
        return self.per_channel * channels


OutputRule = Callable[[LayerArgs, Sequence[Shape]], Shape]
WeightsRule = Callable[[LayerArgs, Sequence[Shape], Shape], tuple[Weight, ...]]
MacsRule = Callable[[LayerArgs, Sequence[MaybeShape], MaybeShape], tuple[MacTerm, ...]]
CountRule = Callable[[LayerArgs, Sequence[Shape], Shape], int]


def no_weights(layer: LayerArgs, shapes: Sequence[Shape], out: Shape) -> tuple:
    return ()


def no_elements(layer: LayerArgs, shapes: Sequence[Shape], out: Shape) -> int:
    return 0


@dataclass(frozen=True)
class LayerRule:
    """The rules of one layer type (see the module docstring).

    Attributes:
        name: The type (Keras class name, or the bnncore ``Quant*`` name).
        rank: Spatial rank (1 for ``Conv1D``), 0 where it does not apply.
        output_shape: Output shape from the arguments and the input shapes;
            ``None`` for a type only the profile knows (it needs the built
            layer, whose Keras shapes it reads).
        weights: The weights created, from the arguments, the input shapes
            and the output shape (``None`` likewise).
        macs: The kernels that multiply inputs (``None``: no MACs).
        weights_without_macs: Its weights are applied element-wise or looked
            up: 0 MACs and nothing to note.
        fold: How it folds for inference, if it does.
        quantized: ``(argument, weight)``: the quantizer argument applied to
            a weight in the forward pass.
        quantizers: Every quantizer argument (the input's too).
        padded: Whether ``padding="same"`` makes a padded copy of the input.
        intermediates: Elements created besides the output and the parts
            common to all layers (:func:`intermediate_elements`).
        fixed: Batch-independent elements besides quantized kernel copies
            (:func:`fixed_elements`).
        definable: Whether the service's definitions may use the type, when
            it is estimable (False: read by the profile and the runtime only,
            like the noise layers, whose arguments the service does not type).
    """

    name: str
    output_shape: OutputRule | None
    weights: WeightsRule | None = no_weights
    rank: int = 0
    macs: MacsRule | None = None
    weights_without_macs: bool = False
    fold: Fold | None = None
    quantized: tuple[tuple[str, str], ...] = ()
    quantizers: tuple[str, ...] = ()
    padded: bool = False
    intermediates: CountRule = no_elements
    fixed: CountRule = no_elements
    definable: bool = True
    _quantizer_of: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_weight = {weight: argument for argument, weight in self.quantized}
        object.__setattr__(self, "_quantizer_of", by_weight)

    @property
    def estimable(self) -> bool:
        """Whether a definition's layer of this type can be counted before it
        is built (its output shape and weights follow from its arguments)."""
        return self.output_shape is not None and self.weights is not None

    def quantizer_of(self, weight: str) -> str | None:
        """The argument quantizing ``weight`` in the forward pass, if any."""
        return self._quantizer_of.get(weight)


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


def dtype_bits(dtype: Any) -> int:
    """Bit width of a dtype name (``"float32"`` → 32, ``"bool"`` → 8)."""
    name = str(getattr(dtype, "name", dtype))
    if name == "bool":
        return 8
    match = re.search(r"(\d+)", name)
    return int(match.group(1)) if match else 32


def per_axis(value: Any, rank: int) -> tuple[int, ...]:
    """A size argument as one value per spatial axis (``3`` → ``(3, 3)``)."""
    if isinstance(value, int):
        return (value,) * rank
    return tuple(value)


def prod_or_none(sizes: Iterable[int | None] | None) -> int | None:
    """Product of sizes; ``None`` if there are none or one is unknown."""
    if sizes is None:
        return None
    sizes = list(sizes)
    if any(n is None for n in sizes):
        return None
    return math.prod(sizes)  # type: ignore[arg-type]


def spatial_sizes(layer: LayerArgs, shape: MaybeShape) -> MaybeShape:
    """The spatial sizes of a shape without batch, by ``data_format``."""
    if shape is None:
        return None
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return shape[1:]
    return shape[:-1]


def check_rank(name: str, shape: Shape, rank: int) -> None:
    if len(shape) != rank:
        raise RuleError(
            None,
            f"{name} expects inputs of rank {rank} (without the batch dimension), "
            f"received shape {list(shape)}",
        )


def bias_weight(layer: LayerArgs, shape: Shape) -> tuple[Weight, ...]:
    return (Weight("bias", shape),) if getattr(layer, "use_bias", False) else ()


def window_length(n: int, k: int, s: int, d: int, padding: str) -> int:
    extent = (k - 1) * d + 1
    if padding == "valid" and n < extent:
        raise RuleError(
            None,
            f"input size {n} is smaller than the kernel/pool extent {extent} "
            "with padding='valid'",
        )
    return axis_geometry(n, k, s, d, padding)[1]


def window_args(layer: LayerArgs, rank: int) -> tuple[tuple[int, ...], ...]:
    """``(kernel or pool size, strides, dilation)`` per spatial axis."""
    kernel = getattr(layer, "kernel_size", None) or layer.pool_size
    kernel = per_axis(kernel, rank)
    strides = per_axis(getattr(layer, "strides", None) or kernel, rank)
    dilation = per_axis(getattr(layer, "dilation_rate", None) or 1, rank)
    return kernel, strides, dilation


def padded_elements(layer: LayerArgs, shape: Shape, rank: int) -> int:
    """Elements of the input padded for ``same`` (0 for ``valid``)."""
    if getattr(layer, "padding", "valid") == "valid":
        return 0
    kernel, strides, dilation = window_args(layer, rank)
    sizes = [
        n + sum(same_padding(n, k, s, d))
        for n, k, s, d in zip(shape[:-1], kernel, strides, dilation, strict=False)
    ]
    return math.prod(sizes) * shape[-1]


def check_last_axis(name: str, layer: LayerArgs, shape: Shape) -> None:
    """Normalizations work on the last axis only: ``-1`` or ``len(shape)``."""
    axis = layer.axis
    one = axis[0] if isinstance(axis, list | tuple) else axis
    if one not in (-1, len(shape)):
        raise RuleError(
            "axis",
            f"{axis!r} is not the last axis of inputs of shape {[None, *shape]} "
            f"(allowed: -1 or {len(shape)}; only the last axis is supported)",
        )


def same_shape(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
    return tuple(shapes[0])


def per_input(factor: int) -> CountRule:
    def count(layer: LayerArgs, shapes: Sequence[Shape], out: Shape) -> int:
        return factor * math.prod(shapes[0])

    return count


def per_output(factor: int) -> CountRule:
    def count(layer: LayerArgs, shapes: Sequence[Shape], out: Shape) -> int:
        return factor * math.prod(out)

    return count


def layer_type(layer: LayerArgs) -> str:
    """The type name of a layer's arguments: a spec's ``type``, else the
    class name of a Keras layer."""
    name = getattr(layer, "type", None)
    return name if isinstance(name, str) else type(layer).__name__

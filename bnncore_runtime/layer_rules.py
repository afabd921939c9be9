"""The layer rules: what each layer type is, in one table (no TensorFlow).

:data:`RULES` maps a layer type (the Keras class name, or a bnncore ``Quant*``
name) to its :class:`LayerRule`, which says, from the layer's constructor
arguments and its input shapes (batch excluded):

* ``output_shape``: the output shape, or :class:`RuleError` when the inputs
  do not fit (rank, sizes, merges) or an argument does not fit the inputs;
* ``weights``: the weights the layer creates (name, shape, dtype, trainable),
  and ``quantized``: which constructor argument quantizes which weight;
* ``macs``: the kernels that multiply inputs and how many times each of their
  weights is used in one call at batch 1 (``None``: the type makes no MACs);
* ``fold``: the inference form of a normalization that folds into one scale
  and one offset per channel (BatchNormalization);
* ``padded`` and :mod:`bnncore_runtime.geometry`: the window geometry;
* ``intermediates``: the elements of the tensors the layer's operations create
  besides its output (:func:`intermediate_elements`, :func:`fixed_elements`).

The profile (``bnncore.analysis.counting``) applies the table to built Keras
layers, the service's estimate (``bnncore_service.estimate``) to a definition
before anything is built, so both count alike by construction. Arguments are
read as attributes (``layer.units``, ``layer.kernel_size``): a built Keras
layer, a service layer spec and a ``types.SimpleNamespace`` all work.

Adding a layer type = one entry here + its tests (``tests/bnncore/analysis/
test_layer_rules.py``: its answers against hand-computed counts and Keras's
own layer).

Example:
    >>> from types import SimpleNamespace
    >>> from bnncore_runtime.layer_rules import rule_for
    >>> rule = rule_for("Conv2D")
    >>> conv = SimpleNamespace(filters=8, kernel_size=3, strides=1,
    ...                        padding="same", groups=1, use_bias=True)
    >>> out = rule.output_shape(conv, [(32, 32, 3)])
    >>> out, [w.shape for w in rule.weights(conv, [(32, 32, 3)], out)]
    ((32, 32, 8), [(3, 3, 3, 8), (8,)])
    >>> rule.macs(conv, [(32, 32, 3)], out)
    (MacTerm(weight='kernel', positions=1024),)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bnncore_runtime.geometry import axis_geometry, same_padding, transpose_length

__all__ = [
    "ACTIVATION_FACTORS",
    "DEFAULT_FACTOR",
    "QUANTIZER_FACTORS",
    "RULES",
    "Fold",
    "LayerRule",
    "MacTerm",
    "RuleError",
    "Weight",
    "WeightsRule",
    "dtype_bits",
    "fixed_elements",
    "intermediate_elements",
    "layer_type",
    "rule_for",
    "rule_of",
]

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


def _no_weights(layer: LayerArgs, shapes: Sequence[Shape], out: Shape) -> tuple:
    return ()


def _none(layer: LayerArgs, shapes: Sequence[Shape], out: Shape) -> int:
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
    """

    name: str
    output_shape: OutputRule | None
    weights: WeightsRule | None = _no_weights
    rank: int = 0
    macs: MacsRule | None = None
    weights_without_macs: bool = False
    fold: Fold | None = None
    quantized: tuple[tuple[str, str], ...] = ()
    quantizers: tuple[str, ...] = ()
    padded: bool = False
    intermediates: CountRule = _none
    fixed: CountRule = _none
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


def _sizes(value: Any, rank: int) -> tuple[int, ...]:
    """A size argument as one value per spatial axis (``3`` → ``(3, 3)``)."""
    if isinstance(value, int):
        return (value,) * rank
    return tuple(value)


def _prod(sizes: Iterable[int | None] | None) -> int | None:
    """Product of sizes; ``None`` if there are none or one is unknown."""
    if sizes is None:
        return None
    sizes = list(sizes)
    if any(n is None for n in sizes):
        return None
    return math.prod(sizes)  # type: ignore[arg-type]


def _spatial(layer: LayerArgs, shape: MaybeShape) -> MaybeShape:
    """The spatial sizes of a shape without batch, by ``data_format``."""
    if shape is None:
        return None
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return shape[1:]
    return shape[:-1]


def _check_rank(name: str, shape: Shape, rank: int) -> None:
    if len(shape) != rank:
        raise RuleError(
            None,
            f"{name} expects inputs of rank {rank} (without the batch dimension), "
            f"received shape {list(shape)}",
        )


def _bias(layer: LayerArgs, shape: Shape) -> tuple[Weight, ...]:
    return (Weight("bias", shape),) if getattr(layer, "use_bias", False) else ()


def _window_length(n: int, k: int, s: int, d: int, padding: str) -> int:
    extent = (k - 1) * d + 1
    if padding == "valid" and n < extent:
        raise RuleError(
            None,
            f"input size {n} is smaller than the kernel/pool extent {extent} "
            "with padding='valid'",
        )
    return axis_geometry(n, k, s, d, padding)[1]


def _window(layer: LayerArgs, rank: int) -> tuple[tuple[int, ...], ...]:
    """``(kernel or pool size, strides, dilation)`` per spatial axis."""
    kernel = getattr(layer, "kernel_size", None) or layer.pool_size
    kernel = _sizes(kernel, rank)
    strides = _sizes(getattr(layer, "strides", None) or kernel, rank)
    dilation = _sizes(getattr(layer, "dilation_rate", None) or 1, rank)
    return kernel, strides, dilation


def _padded_elements(layer: LayerArgs, shape: Shape, rank: int) -> int:
    """Elements of the input padded for ``same`` (0 for ``valid``)."""
    if getattr(layer, "padding", "valid") == "valid":
        return 0
    kernel, strides, dilation = _window(layer, rank)
    sizes = [
        n + sum(same_padding(n, k, s, d))
        for n, k, s, d in zip(shape[:-1], kernel, strides, dilation, strict=False)
    ]
    return math.prod(sizes) * shape[-1]


def _last_axis(name: str, layer: LayerArgs, shape: Shape) -> None:
    """Normalizations work on the last axis only: ``-1`` or ``len(shape)``."""
    axis = layer.axis
    one = axis[0] if isinstance(axis, list | tuple) else axis
    if one not in (-1, len(shape)):
        raise RuleError(
            "axis",
            f"{axis!r} is not the last axis of inputs of shape {[None, *shape]} "
            f"(allowed: -1 or {len(shape)}; only the last axis is supported)",
        )


def _same(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
    return tuple(shapes[0])


# ----------------------------------------------------------------------------
# Weighted layers
# ----------------------------------------------------------------------------


def _dense_out(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
    return (*shapes[0][:-1], layer.units)


def _dense_weights(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
    kernel = Weight("kernel", (shapes[0][-1], layer.units))
    return (kernel, *_bias(layer, (layer.units,)))


def _dense_macs(layer: LayerArgs, shapes: Sequence[MaybeShape], out: MaybeShape):
    return (MacTerm("kernel", _prod(None if out is None else out[:-1])),)


def _spatial_out(rank: int, channels: Callable[[LayerArgs, Shape], int]):
    def output_shape(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
        shape = tuple(shapes[0])
        _check_rank(layer_type(layer), shape, rank + 1)
        kernel, strides, dilation = _window(layer, rank)
        spatial = [
            _window_length(n, k, s, d, layer.padding)
            for n, k, s, d in zip(shape[:-1], kernel, strides, dilation, strict=True)
        ]
        return (*spatial, channels(layer, shape))

    return output_shape


def _transpose_out(rank: int):
    def output_shape(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
        shape = tuple(shapes[0])
        _check_rank(layer_type(layer), shape, rank + 1)
        kernel, strides, dilation = _window(layer, rank)
        spatial = [
            transpose_length(n, k, s, d, layer.padding)
            for n, k, s, d in zip(shape[:-1], kernel, strides, dilation, strict=True)
        ]
        return (*spatial, layer.filters)

    return output_shape


def _filters(layer: LayerArgs, shape: Shape) -> int:
    return int(layer.filters)


def _multiplied(layer: LayerArgs, shape: Shape) -> int:
    return int(shape[-1] * layer.depth_multiplier)


def _conv_weights(rank: int):
    def weights(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
        channels, groups = shapes[0][-1], getattr(layer, "groups", 1)
        if channels % groups:
            raise RuleError(
                None,
                f"input channels {channels} are not a multiple of groups={groups}",
            )
        kernel = (*_sizes(layer.kernel_size, rank), channels // groups, layer.filters)
        return (Weight("kernel", kernel), *_bias(layer, (layer.filters,)))

    return weights


def _output_positions(layer: LayerArgs, shapes: Sequence[MaybeShape], out):
    return (MacTerm("kernel", _prod(_spatial(layer, out))),)


def _transpose_weights(rank: int):
    def weights(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
        kernel = (*_sizes(layer.kernel_size, rank), layer.filters, shapes[0][-1])
        return (Weight("kernel", kernel), *_bias(layer, (layer.filters,)))

    return weights


def _transpose_macs(layer: LayerArgs, shapes: Sequence[MaybeShape], out):
    # Every input value meets every kernel weight.
    first = shapes[0] if shapes else None
    return (MacTerm("kernel", _prod(_spatial(layer, first))),)


def _transpose_intermediates(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
    # The column buffer of the gradient-of-convolution TensorFlow runs.
    kernel = math.prod(_sizes(layer.kernel_size, len(shapes[0]) - 1))
    return math.prod(shapes[0][:-1]) * kernel * layer.filters


def _depthwise_weights(rank: int):
    def weights(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
        channels = shapes[0][-1]
        kernel = (*_sizes(layer.kernel_size, rank), channels, layer.depth_multiplier)
        bias = _bias(layer, (channels * layer.depth_multiplier,))
        return (Weight("kernel", kernel), *bias)

    return weights


def _separable_weights(rank: int):
    def weights(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
        channels, multiplier = shapes[0][-1], layer.depth_multiplier
        depthwise = (*_sizes(layer.kernel_size, rank), channels, multiplier)
        pointwise = (*(1,) * rank, channels * multiplier, layer.filters)
        return (
            Weight("depthwise_kernel", depthwise),
            Weight("pointwise_kernel", pointwise),
            *_bias(layer, (layer.filters,)),
        )

    return weights


def _separable_macs(layer: LayerArgs, shapes: Sequence[MaybeShape], out):
    positions = _prod(_spatial(layer, out))
    return (
        MacTerm("depthwise_kernel", positions),
        MacTerm("pointwise_kernel", positions),
    )


def _separable_intermediates(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
    # The depthwise result, before the pointwise kernel.
    return math.prod(out[:-1]) * shapes[0][-1] * layer.depth_multiplier


def _grouped_intermediates(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
    if getattr(layer, "groups", 1) > 1:  # inputs and outputs regrouped
        return math.prod(shapes[0]) + math.prod(out)
    return 0


def _local_weights(rank: int):
    def weights(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
        positions = math.prod(out[:-1])
        window = math.prod(_sizes(layer.kernel_size, rank)) * shapes[0][-1]
        kernel = Weight("kernel", (positions, window, layer.filters))
        return (kernel, *_bias(layer, (*out[:-1], layer.filters)))

    return weights


def _local_macs(layer: LayerArgs, shapes: Sequence[MaybeShape], out):
    return (MacTerm("kernel", 1),)  # no weight sharing: each weight used once


def _local_intermediates(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
    shape = shapes[0]
    window = _sizes(layer.kernel_size, len(shape) - 1)
    steps = list(shape)
    gathered = 0
    for axis, (k, n) in enumerate(zip(window, out[:-1], strict=True)):
        steps[axis] = n * k  # the windows gathered along one more axis
        gathered += math.prod(steps)
    patches = math.prod(out[:-1]) * math.prod(window) * shape[-1]
    return gathered + 2 * patches + 2 * math.prod(out)


def _local_fixed(layer: LayerArgs, shapes: Sequence[Shape], out: Shape) -> int:
    window = _sizes(layer.kernel_size, len(out) - 1)
    kernel = math.prod(out[:-1]) * math.prod(window) * shapes[0][-1] * layer.filters
    # The einsum may lay the kernel out anew; the gather indices (int64): one
    # (output position, kernel offset) grid per spatial axis.
    return kernel + 2 * sum(n * k for n, k in zip(out[:-1], window, strict=True))


def _batch_norm_out(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
    _last_axis("BatchNormalization", layer, shapes[0])
    return tuple(shapes[0])


def _scale_center(layer: LayerArgs, channels: int) -> tuple[Weight, ...]:
    weights = (Weight("gamma", (channels,)),) if layer.scale else ()
    return weights + ((Weight("beta", (channels,)),) if layer.center else ())


def _batch_norm_weights(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
    channels = shapes[0][-1]
    return (
        *_scale_center(layer, channels),
        Weight("moving_mean", (channels,), trainable=False),
        Weight("moving_variance", (channels,), trainable=False),
    )


def _layer_norm_out(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
    _last_axis("LayerNormalization", layer, shapes[0])
    return tuple(shapes[0])


def _layer_norm_weights(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
    return _scale_center(layer, shapes[0][-1])


def _normalization_out(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
    shape = tuple(shapes[0])
    _last_axis("Normalization", layer, shape)
    if getattr(layer, "mean", None) is not None:
        for name in ("mean", "variance"):
            value = getattr(layer, name)
            if isinstance(value, list) and len(value) not in (1, shape[-1]):
                raise RuleError(
                    name,
                    f"{len(value)} values for {shape[-1]} channels (allowed: one "
                    "number, or one value per channel)",
                )
    return shape


def _normalization_weights(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
    if getattr(layer, "mean", None) is not None:  # constants, not weights
        return ()
    channels = shapes[0][-1]
    return (
        Weight("mean", (channels,), trainable=False),
        Weight("variance", (channels,), trainable=False),
        Weight("count", (), trainable=False, dtype="int64"),
    )


def _layer_scale_weights(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
    channels = shapes[0][-1]
    if layer.projection_dim != channels:
        raise RuleError(
            "projection_dim",
            f"{layer.projection_dim} but the input has {channels} channels "
            "(allowed: the input's channels)",
        )
    return (Weight("gamma", (channels,)),)


def _prelu_weights(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
    shape = shapes[0]
    alpha = list(shape)
    for axis in layer.shared_axes or []:
        if axis > len(shape):
            raise RuleError(
                "shared_axes",
                f"axis {axis} is out of range for inputs of rank {len(shape)}",
            )
        alpha[axis - 1] = 1
    return (Weight("alpha", tuple(alpha)),)


# ----------------------------------------------------------------------------
# Shape layers
# ----------------------------------------------------------------------------


def _pool_out(rank: int):
    def output_shape(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
        shape = tuple(shapes[0])
        _check_rank(layer_type(layer), shape, rank + 1)
        pool = _sizes(layer.pool_size, rank)
        strides = _sizes(layer.strides or layer.pool_size, rank)
        spatial = [
            _window_length(n, p, s, 1, layer.padding)
            for n, p, s in zip(shape[:-1], pool, strides, strict=True)
        ]
        return (*spatial, shape[-1])

    return output_shape


def _global_pool_out(rank: int):
    def output_shape(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
        shape = tuple(shapes[0])
        _check_rank(layer_type(layer), shape, rank + 1)
        return (*(1,) * rank, shape[-1]) if layer.keepdims else (shape[-1],)

    return output_shape


def _flatten_out(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
    return (math.prod(shapes[0]),)


def _reshape_out(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
    target = list(layer.target_shape)
    total = math.prod(shapes[0])
    known = math.prod(v for v in target if v != -1)
    if -1 in target:
        if total % known:
            raise RuleError("target_shape", f"{target} cannot hold {total} elements")
        target[target.index(-1)] = total // known
    if math.prod(target) != total:
        raise RuleError(
            "target_shape",
            f"{target} has {math.prod(target)} elements, the input "
            f"{list(shapes[0])} has {total}",
        )
    return tuple(target)


def _permute_out(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
    shape = tuple(shapes[0])
    _check_rank(layer_type(layer), shape, len(layer.dims))
    return tuple(shape[d - 1] for d in layer.dims)


def _pairs(value: Any, rank: int) -> tuple[tuple[int, int], ...]:
    """A padding or cropping argument as one ``(before, after)`` pair per axis."""
    if isinstance(value, int):
        return ((value, value),) * rank
    items = tuple(value)
    if rank == 1 and len(items) == 2 and all(isinstance(v, int) for v in items):
        return (items,)
    return tuple((v, v) if isinstance(v, int) else tuple(v) for v in items)


def _zero_padding_out(rank: int):
    def output_shape(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
        shape = tuple(shapes[0])
        pads = _pairs(layer.padding, rank)
        _check_rank(layer_type(layer), shape, rank + 1)
        spatial = (n + a + b for n, (a, b) in zip(shape, pads, strict=False))
        return (*spatial, shape[-1])

    return output_shape


def _cropping_out(rank: int):
    def output_shape(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
        shape = tuple(shapes[0])
        crops = _pairs(layer.cropping, rank)
        _check_rank(layer_type(layer), shape, rank + 1)
        spatial = []
        for n, (a, b) in zip(shape, crops, strict=False):
            if a + b >= n:
                raise RuleError(
                    "cropping",
                    f"{[list(c) for c in crops]} leaves nothing of the input "
                    f"{list(shape)}",
                )
            spatial.append(n - a - b)
        return (*spatial, shape[-1])

    return output_shape


def _upsampling_out(rank: int):
    def output_shape(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
        shape = tuple(shapes[0])
        _check_rank(layer_type(layer), shape, rank + 1)
        size = _sizes(layer.size, rank)
        return (*(n * s for n, s in zip(shape, size, strict=False)), shape[-1])

    return output_shape


def _upsampling2d_intermediates(layer: LayerArgs, shapes: Sequence[Shape], out):
    # Nearest: one repeat per axis (a tile, then its reshape); bilinear: a
    # resize. The first axis' step counted twice covers both.
    shape = shapes[0]
    first_step = out[0] * shape[1] * shape[2]
    return 2 * first_step + math.prod(out)


def _concatenate_out(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
    shape = tuple(shapes[0])
    rank, axis = len(shape), layer.axis
    if not (-rank <= axis <= rank) or axis in (0, -rank - 1):
        raise RuleError(
            "axis", f"{axis} is not a feature axis of inputs of rank {rank}"
        )
    index = axis - 1 if axis > 0 else rank + axis
    for other in shapes[1:]:
        if len(other) != rank or any(
            a != b
            for i, (a, b) in enumerate(zip(shape, other, strict=True))
            if i != index
        ):
            raise RuleError(
                None,
                f"inputs {[list(s) for s in shapes]} differ outside the "
                f"concatenation axis {axis}",
            )
    return tuple(
        sum(s[i] for s in shapes) if i == index else shape[i] for i in range(rank)
    )


def _merge_out(name: str) -> OutputRule:
    def output_shape(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
        # Keras broadcasts: inputs of one rank whose sizes agree or are 1
        # (a squeeze-and-excitation scale [1, 1, C] times a [H, W, C] map).
        shape = shapes[0]
        if any(len(other) != len(shape) for other in shapes[1:]) or any(
            len({n for n in sizes if n != 1}) > 1 for sizes in zip(*shapes, strict=True)
        ):
            raise RuleError(
                None,
                f"{name} needs inputs of one rank whose sizes are equal or 1 on "
                f"each axis, received {[list(s) for s in shapes]}",
            )
        return tuple(max(sizes) for sizes in zip(*shapes, strict=True))

    return output_shape


def _merge_intermediates(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
    return len(shapes) * math.prod(out)  # a running sum (or extreme), then a mean


def _dropout_out(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
    shape = tuple(shapes[0])
    noise = getattr(layer, "noise_shape", None)
    if noise is not None:
        full = (None, *shape)
        if len(noise) != len(full) or any(
            n not in (None, 1, m) for n, m in zip(noise, full, strict=False)
        ):
            raise RuleError(
                "noise_shape",
                f"{noise} does not fit inputs of shape {list(full)} (allowed: one "
                "entry per axis, batch first, each null, 1 or the input's size)",
            )
    return shape


def _softmax_out(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
    shape = tuple(shapes[0])
    if not -len(shape) <= layer.axis <= len(shape):
        raise RuleError("axis", f"out of range for rank {len(shape)}")
    return shape


def _per_input(factor: int) -> CountRule:
    def count(layer: LayerArgs, shapes: Sequence[Shape], out: Shape) -> int:
        return factor * math.prod(shapes[0])

    return count


def _per_output(factor: int) -> CountRule:
    def count(layer: LayerArgs, shapes: Sequence[Shape], out: Shape) -> int:
        return factor * math.prod(out)

    return count


# ----------------------------------------------------------------------------
# Intermediate tensors: per-element factors of quantizers and activations
# ----------------------------------------------------------------------------

DEFAULT_FACTOR = 12
"""Elements created per input element by an elementwise function missing from
the tables below (a test fails when an allowed one is missing)."""

QUANTIZER_FACTORS: dict[str, int] = {
    "SteSign": 4,
    "ApproxSign": 4,
    "SwishSign": 4,
    "SteHeaviside": 4,
    "MagnitudeAwareSign": 11,
    "SteTern": 8,
    "DoReFa": 6,
    "NoOp": 1,
}
"""Elements a quantizer's operations create per input element (its output
included), from TensorFlow's graph of each."""

ACTIVATION_FACTORS: dict[str, int] = {
    "linear": 0,
    "relu": 1,
    "relu6": 1,
    "sigmoid": 1,
    "hard_sigmoid": 4,
    "tanh": 1,
    "softmax": 2,
    "log_softmax": 2,
    "softplus": 1,
    "softsign": 1,
    "elu": 1,
    "selu": 1,
    "gelu": 6,
    "silu": 4,
    "swish": 4,
    "hard_silu": 5,
    "hard_swish": 5,
    "leaky_relu": 1,
    "exponential": 1,
    "mish": 4,
    "hard_tanh": 3,
    "leaky_tanh": 11,
    "ste_sign": 4,
    "approx_sign": 4,
    "swish_sign": 4,
    "ste_heaviside": 4,
    "magnitude_aware_sign": 11,
    "ste_tern": 8,
    "dorefa_quantizer": 6,
}
"""Elements an activation creates per element (its output included)."""


def intermediate_elements(
    rule: LayerRule,
    layer: LayerArgs,
    shapes: Sequence[Shape],
    out: Shape,
    factor: Factor,
) -> int:
    """Elements of every tensor a layer's operations create besides its output.

    Common to all types: the quantized input, the activation's temporaries,
    the bias addition's result and the padded input (``padding="same"``);
    then the type's own (:attr:`LayerRule.intermediates`).

    Args:
        rule: The layer's rule.
        layer: Its arguments.
        shapes: Its input shapes (batch excluded).
        out: Its output shape.
        factor: Elements per element of the quantizer or activation held in an
            argument (:data:`QUANTIZER_FACTORS`, :data:`ACTIVATION_FACTORS`).
    """
    first, o = math.prod(shapes[0]), math.prod(out)
    total = factor("input_quantizer") * first + factor("activation") * o
    if getattr(layer, "use_bias", False):
        total += o  # the bias addition writes a new tensor
    if rule.padded:
        total += _padded_elements(layer, tuple(shapes[0]), rule.rank)
    return total + rule.intermediates(layer, shapes, out)


def fixed_elements(
    rule: LayerRule,
    layer: LayerArgs,
    shapes: Sequence[Shape],
    out: Shape,
    factor: Factor,
    weights: Iterable[Any] | None = None,
) -> int:
    """Batch-independent elements: each quantized kernel times its
    quantizer's factor, plus the type's own (:attr:`LayerRule.fixed`).

    Args:
        rule / layer / shapes / out / factor: As :func:`intermediate_elements`.
        weights: The layer's weights (``name``, ``shape``) if already known,
            else the rule's.
    """
    if weights is None:
        weights = (rule.weights or _no_weights)(layer, shapes, out)
    sizes = {w.name: math.prod(w.shape) for w in weights}
    total = sum(
        factor(argument) * sizes.get(weight, 0) for argument, weight in rule.quantized
    )
    return total + rule.fixed(layer, shapes, out)


# ----------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------

_INPUT_Q = ("input_quantizer",)
_KERNEL_Q = (("kernel_quantizer", "kernel"),)
_DEPTHWISE_Q = (("depthwise_quantizer", "kernel"),)
_SEPARABLE_Q = (
    ("depthwise_quantizer", "depthwise_kernel"),
    ("pointwise_quantizer", "pointwise_kernel"),
)


def _quant(rule: LayerRule, quantized: tuple[tuple[str, str], ...]) -> LayerRule:
    """The ``Quant*`` variant of a rule: same counts, quantizer arguments."""
    quantizers = (*_INPUT_Q, *(argument for argument, _ in quantized))
    return replace(
        rule, name=f"Quant{rule.name}", quantized=quantized, quantizers=quantizers
    )


def _dense() -> list[LayerRule]:
    dense = LayerRule(
        "Dense",
        _dense_out,
        _dense_weights,
        macs=_dense_macs,
        intermediates=_grouped_intermediates,
    )
    return [dense, _quant(dense, _KERNEL_Q)]


def _convolutions() -> list[LayerRule]:
    rules = []
    for rank in (1, 2, 3):
        conv = LayerRule(
            f"Conv{rank}D",
            _spatial_out(rank, _filters),
            _conv_weights(rank),
            rank=rank,
            macs=_output_positions,
            padded=True,
            intermediates=_grouped_intermediates,
        )
        transpose = LayerRule(
            f"Conv{rank}DTranspose",
            _transpose_out(rank),
            _transpose_weights(rank),
            rank=rank,
            macs=_transpose_macs,
            padded=True,
            intermediates=_transpose_intermediates,
        )
        rules += [conv, _quant(conv, _KERNEL_Q)]
        rules += [transpose, _quant(transpose, _KERNEL_Q)]
    for rank in (1, 2):
        depthwise = LayerRule(
            f"DepthwiseConv{rank}D",
            _spatial_out(rank, _multiplied),
            _depthwise_weights(rank),
            rank=rank,
            macs=_output_positions,
            padded=True,
        )
        separable = LayerRule(
            f"SeparableConv{rank}D",
            _spatial_out(rank, _filters),
            _separable_weights(rank),
            rank=rank,
            macs=_separable_macs,
            padded=True,
            intermediates=_separable_intermediates,
        )
        local = LayerRule(
            f"LocallyConnected{rank}D",
            _spatial_out(rank, _filters),
            _local_weights(rank),
            rank=rank,
            macs=_local_macs,
            intermediates=_local_intermediates,
            fixed=_local_fixed,
        )
        rules += [depthwise, _quant(depthwise, _DEPTHWISE_Q)]
        rules += [separable, _quant(separable, _SEPARABLE_Q)]
        rules += [local, _quant(local, _KERNEL_Q)]
    return rules


def _normalizations() -> list[LayerRule]:
    return [
        LayerRule(
            "BatchNormalization",
            _batch_norm_out,
            _batch_norm_weights,
            weights_without_macs=True,
            fold=Fold(),
            intermediates=_per_input(3),
        ),
        LayerRule(
            "Normalization",
            _normalization_out,
            _normalization_weights,
            weights_without_macs=True,
            intermediates=_per_input(2),  # (x - mean), then its quotient
        ),
        LayerRule(
            "LayerNormalization",
            _layer_norm_out,
            _layer_norm_weights,
            weights_without_macs=True,
            # Mean, centred input, its square, variance, scaled and shifted
            # copies (measured: 6.5 per element at 2 channels, reductions
            # included).
            intermediates=_per_input(8),
        ),
        LayerRule(
            "LayerScale",
            _same,
            _layer_scale_weights,
            intermediates=_per_output(1),  # the product is the output
        ),
        LayerRule(
            "PReLU",
            _same,
            _prelu_weights,
            weights_without_macs=True,
            intermediates=_per_output(5),
        ),
        # Known to the profile only (not in the service's definitions).
        LayerRule("GroupNormalization", None, None, weights_without_macs=True),
        LayerRule("Embedding", None, None, weights_without_macs=True),
    ]


def _activations() -> list[LayerRule]:
    rules = [
        LayerRule("Activation", _same),  # its factor: the ``activation`` argument
        # Slope, threshold and ceiling: a select each.
        LayerRule("ReLU", _same, intermediates=_per_output(8)),
        LayerRule("LeakyReLU", _same, intermediates=_per_output(2)),
        LayerRule("ELU", _same, intermediates=_per_output(4)),
        LayerRule("Softmax", _softmax_out, intermediates=_per_output(3)),
        LayerRule("Dropout", _dropout_out),
        LayerRule("Rescaling", _same, intermediates=_per_output(2)),
        LayerRule("Identity", _same),
    ]
    # bnncore's quantizers used as layers.
    rules += [
        LayerRule(name, _same, intermediates=_per_input(factor))
        for name, factor in QUANTIZER_FACTORS.items()
    ]
    return rules


def _shape_layers() -> list[LayerRule]:
    rules = []
    for rank in (1, 2, 3):
        for kind in ("Max", "Average"):
            rules.append(
                LayerRule(
                    f"{kind}Pooling{rank}D", _pool_out(rank), rank=rank, padded=True
                )
            )
            rules.append(
                LayerRule(f"Global{kind}Pooling{rank}D", _global_pool_out(rank))
            )
        rules.append(LayerRule(f"ZeroPadding{rank}D", _zero_padding_out(rank)))
        rules.append(LayerRule(f"Cropping{rank}D", _cropping_out(rank)))
    rules += [
        LayerRule("Flatten", _flatten_out),
        LayerRule("Reshape", _reshape_out),
        LayerRule("Permute", _permute_out),
        LayerRule("UpSampling1D", _upsampling_out(1), intermediates=_per_output(1)),
        LayerRule(
            "UpSampling2D",
            _upsampling_out(2),
            intermediates=_upsampling2d_intermediates,
        ),
        LayerRule("Concatenate", _concatenate_out),
    ]
    rules += [
        LayerRule(name, _merge_out(name), intermediates=_merge_intermediates)
        for name in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
    ]
    return rules


RULES: dict[str, LayerRule] = {
    rule.name: rule
    for rule in (
        *_dense(),
        *_convolutions(),
        *_normalizations(),
        *_activations(),
        *_shape_layers(),
    )
}
"""Layer type → its rules."""


def layer_type(layer: LayerArgs) -> str:
    """The type name of a layer's arguments: a spec's ``type``, else the
    class name of a Keras layer."""
    name = getattr(layer, "type", None)
    return name if isinstance(name, str) else type(layer).__name__


def rule_for(name: str) -> LayerRule:
    """The rule of the layer type ``name``.

    Raises:
        KeyError: naming the type and the known ones.
    """
    try:
        return RULES[name]
    except KeyError:
        raise KeyError(
            f"No layer rule for type {name!r} (known: {', '.join(sorted(RULES))})"
        ) from None


def rule_of(layer: Any) -> LayerRule | None:
    """The rule of a layer object: of its class or its nearest base class in
    the table (a subclass of ``Dense`` counts as a ``Dense``), else ``None``."""
    for cls in type(layer).__mro__:
        rule = RULES.get(cls.__name__)
        if rule is not None:
            return rule
    return None

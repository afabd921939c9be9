"""The rules of the layers with weights: dense, convolutions (plain,
transposed, depthwise, separable, locally connected), normalizations, PReLU
and LayerScale, each with its bnncore ``Quant*`` variant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

from bnncore_runtime.geometry import transpose_length
from bnncore_runtime.layer_rules.base import (
    Fold,
    LayerArgs,
    LayerRule,
    MacTerm,
    MaybeShape,
    RuleError,
    Shape,
    Weight,
    bias_weight,
    check_last_axis,
    check_rank,
    layer_type,
    per_axis,
    per_input,
    per_output,
    prod_or_none,
    same_shape,
    spatial_sizes,
    window_args,
    window_length,
)


def _dense_out(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
    return (*shapes[0][:-1], layer.units)


def _dense_weights(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
    kernel = Weight("kernel", (shapes[0][-1], layer.units))
    return (kernel, *bias_weight(layer, (layer.units,)))


def _dense_macs(layer: LayerArgs, shapes: Sequence[MaybeShape], out: MaybeShape):
    return (MacTerm("kernel", prod_or_none(None if out is None else out[:-1])),)


def _spatial_out(rank: int, channels: Callable[[LayerArgs, Shape], int]):
    def output_shape(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
        shape = tuple(shapes[0])
        check_rank(layer_type(layer), shape, rank + 1)
        kernel, strides, dilation = window_args(layer, rank)
        spatial = [
            window_length(n, k, s, d, layer.padding)
            for n, k, s, d in zip(shape[:-1], kernel, strides, dilation, strict=True)
        ]
        return (*spatial, channels(layer, shape))

    return output_shape


def _transpose_out(rank: int):
    def output_shape(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
        shape = tuple(shapes[0])
        check_rank(layer_type(layer), shape, rank + 1)
        kernel, strides, dilation = window_args(layer, rank)
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
        kernel = (*per_axis(layer.kernel_size, rank), channels // groups, layer.filters)
        return (Weight("kernel", kernel), *bias_weight(layer, (layer.filters,)))

    return weights


def _output_positions(layer: LayerArgs, shapes: Sequence[MaybeShape], out):
    return (MacTerm("kernel", prod_or_none(spatial_sizes(layer, out))),)


def _transpose_weights(rank: int):
    def weights(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
        kernel = (*per_axis(layer.kernel_size, rank), layer.filters, shapes[0][-1])
        return (Weight("kernel", kernel), *bias_weight(layer, (layer.filters,)))

    return weights


def _transpose_macs(layer: LayerArgs, shapes: Sequence[MaybeShape], out):
    # Every input value meets every kernel weight.
    first = shapes[0] if shapes else None
    return (MacTerm("kernel", prod_or_none(spatial_sizes(layer, first))),)


def _transpose_intermediates(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
    # The column buffer of the gradient-of-convolution TensorFlow runs.
    kernel = math.prod(per_axis(layer.kernel_size, len(shapes[0]) - 1))
    return math.prod(shapes[0][:-1]) * kernel * layer.filters


def _depthwise_weights(rank: int):
    def weights(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
        channels = shapes[0][-1]
        kernel = (*per_axis(layer.kernel_size, rank), channels, layer.depth_multiplier)
        bias = bias_weight(layer, (channels * layer.depth_multiplier,))
        return (Weight("kernel", kernel), *bias)

    return weights


def _separable_weights(rank: int):
    def weights(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
        channels, multiplier = shapes[0][-1], layer.depth_multiplier
        depthwise = (*per_axis(layer.kernel_size, rank), channels, multiplier)
        pointwise = (*(1,) * rank, channels * multiplier, layer.filters)
        return (
            Weight("depthwise_kernel", depthwise),
            Weight("pointwise_kernel", pointwise),
            *bias_weight(layer, (layer.filters,)),
        )

    return weights


def _separable_macs(layer: LayerArgs, shapes: Sequence[MaybeShape], out):
    positions = prod_or_none(spatial_sizes(layer, out))
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
        window = math.prod(per_axis(layer.kernel_size, rank)) * shapes[0][-1]
        kernel = Weight("kernel", (positions, window, layer.filters))
        return (kernel, *bias_weight(layer, (*out[:-1], layer.filters)))

    return weights


def _local_macs(layer: LayerArgs, shapes: Sequence[MaybeShape], out):
    return (MacTerm("kernel", 1),)  # no weight sharing: each weight used once


def _local_intermediates(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
    shape = shapes[0]
    window = per_axis(layer.kernel_size, len(shape) - 1)
    steps = list(shape)
    gathered = 0
    for axis, (k, n) in enumerate(zip(window, out[:-1], strict=True)):
        steps[axis] = n * k  # the windows gathered along one more axis
        gathered += math.prod(steps)
    patches = math.prod(out[:-1]) * math.prod(window) * shape[-1]
    return gathered + 2 * patches + 2 * math.prod(out)


def _local_fixed(layer: LayerArgs, shapes: Sequence[Shape], out: Shape) -> int:
    window = per_axis(layer.kernel_size, len(out) - 1)
    kernel = math.prod(out[:-1]) * math.prod(window) * shapes[0][-1] * layer.filters
    # The einsum may lay the kernel out anew; the gather indices (int64): one
    # (output position, kernel offset) grid per spatial axis.
    return kernel + 2 * sum(n * k for n, k in zip(out[:-1], window, strict=True))


def _batch_norm_out(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
    check_last_axis("BatchNormalization", layer, shapes[0])
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
    check_last_axis("LayerNormalization", layer, shapes[0])
    return tuple(shapes[0])


def _layer_norm_weights(layer: LayerArgs, shapes: Sequence[Shape], out: Shape):
    return _scale_center(layer, shapes[0][-1])


def _normalization_out(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
    shape = tuple(shapes[0])
    check_last_axis("Normalization", layer, shape)
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
            intermediates=per_input(3),
        ),
        LayerRule(
            "Normalization",
            _normalization_out,
            _normalization_weights,
            weights_without_macs=True,
            intermediates=per_input(2),  # (x - mean), then its quotient
        ),
        LayerRule(
            "LayerNormalization",
            _layer_norm_out,
            _layer_norm_weights,
            weights_without_macs=True,
            # Mean, centred input, its square, variance, scaled and shifted
            # copies (measured: 6.5 per element at 2 channels, reductions
            # included).
            intermediates=per_input(8),
        ),
        LayerRule(
            "LayerScale",
            same_shape,
            _layer_scale_weights,
            intermediates=per_output(1),  # the product is the output
        ),
        LayerRule(
            "PReLU",
            same_shape,
            _prelu_weights,
            weights_without_macs=True,
            intermediates=per_output(5),
        ),
        # Known to the profile only (not in the service's definitions).
        LayerRule("GroupNormalization", None, None, weights_without_macs=True),
        LayerRule("Embedding", None, None, weights_without_macs=True),
    ]


def rules() -> list[LayerRule]:
    """The rules of the layers with weights."""
    return [*_dense(), *_convolutions(), *_normalizations()]

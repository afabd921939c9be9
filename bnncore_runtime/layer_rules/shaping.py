"""The rules of the layers without weights: pooling, reshaping, padding,
cropping, upsampling, merges, activations and bnncore's quantizers used as
layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bnncore_runtime.layer_rules.base import (
    LayerArgs,
    LayerRule,
    OutputRule,
    RuleError,
    Shape,
    check_rank,
    layer_type,
    per_axis,
    per_input,
    per_output,
    same_shape,
    window_length,
)
from bnncore_runtime.layer_rules.memory import QUANTIZER_FACTORS


def _pool_out(rank: int):
    def output_shape(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
        shape = tuple(shapes[0])
        check_rank(layer_type(layer), shape, rank + 1)
        pool = per_axis(layer.pool_size, rank)
        strides = per_axis(layer.strides or layer.pool_size, rank)
        spatial = [
            window_length(n, p, s, 1, layer.padding)
            for n, p, s in zip(shape[:-1], pool, strides, strict=True)
        ]
        return (*spatial, shape[-1])

    return output_shape


def _global_pool_out(rank: int):
    def output_shape(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
        shape = tuple(shapes[0])
        check_rank(layer_type(layer), shape, rank + 1)
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
    check_rank(layer_type(layer), shape, len(layer.dims))
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
        check_rank(layer_type(layer), shape, rank + 1)
        spatial = (n + a + b for n, (a, b) in zip(shape, pads, strict=False))
        return (*spatial, shape[-1])

    return output_shape


def _cropping_out(rank: int):
    def output_shape(layer: LayerArgs, shapes: Sequence[Shape]) -> Shape:
        shape = tuple(shapes[0])
        crops = _pairs(layer.cropping, rank)
        check_rank(layer_type(layer), shape, rank + 1)
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
        check_rank(layer_type(layer), shape, rank + 1)
        size = per_axis(layer.size, rank)
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


def _activations() -> list[LayerRule]:
    rules = [
        LayerRule("Activation", same_shape),  # its factor: the ``activation`` argument
        # Slope, threshold and ceiling: a select each.
        LayerRule("ReLU", same_shape, intermediates=per_output(8)),
        LayerRule("LeakyReLU", same_shape, intermediates=per_output(2)),
        LayerRule("ELU", same_shape, intermediates=per_output(4)),
        LayerRule("Softmax", _softmax_out, intermediates=per_output(3)),
        LayerRule("Dropout", _dropout_out),
        # Noise layers: identities at inference, no weights. Read by the
        # profile and the runtime; the service does not type their arguments.
        LayerRule("GaussianNoise", same_shape, definable=False),
        LayerRule("GaussianDropout", same_shape, definable=False),
        LayerRule("AlphaDropout", _dropout_out, definable=False),
        LayerRule("Rescaling", same_shape, intermediates=per_output(2)),
        LayerRule("Identity", same_shape),
    ]
    # bnncore's quantizers used as layers.
    rules += [
        LayerRule(name, same_shape, intermediates=per_input(factor))
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
        LayerRule("UpSampling1D", _upsampling_out(1), intermediates=per_output(1)),
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


def rules() -> list[LayerRule]:
    """The rules of the layers without weights."""
    return [*_activations(), *_shape_layers()]

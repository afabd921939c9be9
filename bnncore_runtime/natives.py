"""Native implementations of the layers the engine does not binarize.

Given plain parameters (kernels as arrays, epilogue ops, window sizes), each
function returns the native implementation of one layer; the Keras front end
(:mod:`bnncore.engine.floatops`) and the export front end
(:mod:`bnncore_runtime.layers`) read those parameters from their models.

Two kinds (see "Exactness" in docs/engine.md):

* exact: the same float32 operations as Keras, in the same order, so the same
  bits on every CPU: elementwise layers (batch norm as ``x * inv + shift`` with
  TensorFlow's own ``inv`` and ``shift``, ReLU, hard tanh, sign), max pooling,
  adds, concatenation, flatten and the inference-time identities;
* reference order: float 2D and depthwise convolutions in the compiled core
  (each output one chain of fused multiply-adds over the taps in row-major
  order and the input channels in order; depthwise: a product then an add per
  tap), and, where the result never reaches a binarization, global average
  pooling (a float64 sum rounded once), dense layers (the convolution's chain)
  and softmax. These agree with Keras within a bound derived from the
  summation length, which :attr:`Native.bound` states per output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bnncore_runtime import kernels as K
from bnncore_runtime.geometry import window
from bnncore_runtime.steps import BinaryKernel

__all__ = [
    "UNIT_ROUNDOFF",
    "Native",
    "NativeConv",
    "add",
    "alias",
    "binary_kernel",
    "binary_kernel_from_signs",
    "concat",
    "conv",
    "decreasing_channels",
    "dense",
    "elementwise",
    "flatten",
    "gamma",
    "global_avg_pool",
    "is_monotone_op",
    "max_pool",
    "softmax",
    "window",
]

NativeFn = Callable[[list[np.ndarray], int], np.ndarray]
# bound(inputs, output) -> elementwise bound on |native - Keras| for equal inputs.
BoundFn = Callable[[list[np.ndarray], np.ndarray], np.ndarray]

UNIT_ROUNDOFF = 2.0**-24  # float32, round to nearest
# Slack for one exp() on each side: libm's expf and TensorFlow's vectorized exp
# are each within a few units in the last place.
_EXP_ROUNDOFF = 8 * UNIT_ROUNDOFF


def gamma(n: int) -> float:
    """Higham's gamma_n = n·u / (1 - n·u): any float32 sum of n products has an
    error of at most gamma_n times the sum of their magnitudes (with or without
    fused multiply-adds, in any order)."""
    nu = n * UNIT_ROUNDOFF
    return nu / (1.0 - nu)


def _exact(inputs: list[np.ndarray], output: np.ndarray) -> np.ndarray:
    return np.zeros(np.shape(output), np.float64)


@dataclass
class Native:
    """A native implementation of a layer.

    Attributes:
        fn: ``fn(inputs, threads) -> output``.
        constants: Arrays ``fn`` keeps (counted as resident weights).
        bound: ``bound(inputs, output)``: elementwise bound on the difference
            from the Keras layer run on the same inputs (zeros where the
            operations are Keras's own).
        monotone: Each output is monotone in each input (so the outputs at
            the ends of input intervals bound the outputs inside them).
        lowering: What ``fn`` computes, for the compiled core's programs
            (:mod:`bnncore.engine.program`): ``("add",)``, ``("concat", axis)``,
            ``("alias",)`` (a view of the input: flatten, identities),
            ``("fmaxpool", pool, strides, padding)``, ``("elementwise", ops)``,
            ``("gap",)``, ``("softmax",)``, ``("dense", kernel, bias, ops,
            softmax)``; None: only ``fn``.
    """

    fn: NativeFn
    constants: list[np.ndarray]
    bound: BoundFn = _exact
    monotone: bool = True
    lowering: tuple[Any, ...] | None = None


def elementwise(ops: list[tuple[Any, ...]]) -> NativeFn | None:
    """``fn`` applying epilogue ops as NumPy float32 operations (Keras's own),
    or None for ops it cannot apply."""

    def run(xs: list[np.ndarray], threads: int) -> np.ndarray:
        y = np.asarray(xs[0], dtype=np.float32)
        for op in ops:
            code = op[0]
            if code == K.OP_MULADD:
                y = np.add(np.multiply(y, op[1]), op[2])
            elif code == K.OP_RELU:
                y = np.maximum(y, np.float32(0))
            elif code == K.OP_CLIP:
                y = np.minimum(np.maximum(y, np.float32(op[1])), np.float32(op[2]))
            elif code == K.OP_SIGN:
                y = np.where(y < 0, np.float32(-1), np.float32(1))
        return y

    supported = (K.OP_MULADD, K.OP_RELU, K.OP_CLIP, K.OP_SIGN)
    if not all(op[0] in supported for op in ops):
        return None
    return run


def elementwise_native(ops: list[tuple[Any, ...]]) -> Native | None:
    """An elementwise layer (batch norm, activations) as its epilogue ops."""
    fn = elementwise(ops)
    constants = [a for op in ops for a in op[1:] if isinstance(a, np.ndarray)]
    if fn is None:
        return None
    return Native(fn, constants, lowering=("elementwise", list(ops)))


def max_pool(pool: tuple[int, int], strides: tuple[int, int], padding: str) -> Native:
    """Float max pooling of NHWC values (exact: a maximum never rounds)."""

    def run(xs: list[np.ndarray], threads: int) -> np.ndarray:
        x = np.asarray(xs[0], dtype=np.float32)
        (pt, oh), (pl, ow) = (
            window(x.shape[1], pool[0], strides[0], 1, padding),
            window(x.shape[2], pool[1], strides[1], 1, padding),
        )
        return K.fmaxpool(x, pool, strides, (pt, pl), (oh, ow), threads)

    return Native(run, [], lowering=("fmaxpool", pool, strides, padding))


def add() -> Native:
    """The sum of two or more values of one shape, in argument order."""

    def run(xs: list[np.ndarray], threads: int) -> np.ndarray:
        total = np.asarray(xs[0], dtype=np.float32)
        for x in xs[1:]:
            total = np.add(total, np.asarray(x, dtype=np.float32))
        return total

    return Native(run, [], lowering=("add",))


def concat(axis: int) -> Native:
    """Concatenation along ``axis``."""

    def run(xs: list[np.ndarray], threads: int) -> np.ndarray:
        return np.concatenate([np.asarray(x, dtype=np.float32) for x in xs], axis)

    return Native(run, [], lowering=("concat", axis))


def flatten() -> Native:
    """``Flatten`` of channels-last values: a view."""
    return Native(
        lambda xs, threads: np.reshape(xs[0], (np.shape(xs[0])[0], -1)),
        [],
        lowering=("alias",),
    )


def alias() -> Native:
    """The identity (dropout and noise layers at inference)."""
    return Native(lambda xs, threads: xs[0], [], lowering=("alias",))


def global_avg_pool(shape: tuple[int, ...], keepdims: bool) -> Native:
    """Global average pooling of NHWC values of ``shape`` in the reference
    order (a float64 sum rounded once, then the division)."""
    pixels = shape[1] * shape[2]

    def gap(xs: list[np.ndarray], threads: int) -> np.ndarray:
        return K.global_avg_pool(xs[0], keepdims=keepdims)

    def gap_bound(xs: list[np.ndarray], out: np.ndarray) -> np.ndarray:
        # Keras: a float32 sum of `pixels` terms, then a division; here one
        # rounding of the exact mean.
        mean = np.mean(np.abs(xs[0]), axis=(1, 2), keepdims=keepdims, dtype=np.float64)
        return np.asarray((gamma(pixels) + 3 * UNIT_ROUNDOFF) * mean)

    return Native(gap, [], gap_bound, lowering=("gap",))


def softmax() -> Native:
    """Softmax over the last axis in the reference order."""

    def run(xs: list[np.ndarray], threads: int) -> np.ndarray:
        return K.softmax(xs[0])

    def softmax_bound(xs: list[np.ndarray], out: np.ndarray) -> np.ndarray:
        return _softmax_bound(out, np.zeros((*out.shape[:-1], 1)))

    return Native(run, [], softmax_bound, monotone=False, lowering=("softmax",))


def _softmax_bound(p: np.ndarray, logit_bound: np.ndarray) -> np.ndarray:
    """Bound on a softmax output difference when each logit of a row may differ
    by ``logit_bound`` (per row).

    Moving the logits by at most ``d`` moves each probability by a factor within
    ``exp(±2d)``. On each side, ``z = x - max(x)`` rounds (a relative error of
    ``u·|z|`` in ``exp(z)``, with ``|z_i| = log(p_max / p_i)`` read back from the
    output), exp itself is within a few units in the last place, and the sum
    of the row and the division round.
    """
    p = np.abs(np.asarray(p, np.float64))
    tiny = np.finfo(np.float32).tiny
    z = np.log(np.max(p, axis=-1, keepdims=True) / np.maximum(p, tiny))
    shift = UNIT_ROUNDOFF * z + _EXP_ROUNDOFF
    spread = np.sum(p * shift, axis=-1, keepdims=True) / np.maximum(
        np.sum(p, axis=-1, keepdims=True), tiny
    )
    relative = 2 * (shift + spread + gamma(p.shape[-1] + 1))
    return p * (np.expm1(2 * logit_bound) + relative)


def dense(
    kernel: np.ndarray,
    bias: np.ndarray | None,
    ops: list[tuple[Any, ...]] | None,
    use_softmax: bool,
) -> Native | None:
    """A float dense layer in the reference order (the convolution's chain
    over the inputs, then the bias), then its activation: ``ops`` (no sign),
    or softmax when ``use_softmax``. None when the activation cannot run."""
    kernel = np.ascontiguousarray(np.asarray(kernel, dtype=np.float32))
    act: Callable[[np.ndarray], np.ndarray]
    if use_softmax:
        ops = []
        act = K.softmax
    else:
        tail = None if ops is None else elementwise(ops)
        if tail is None or any(o[0] == K.OP_SIGN for o in ops or []):
            return None  # a sign's decision would need Keras's own rounding

        def act_tail(y: np.ndarray) -> np.ndarray:
            return tail([y], 1) if ops else y

        act = act_tail

    kernel4 = kernel.reshape(1, 1, *kernel.shape)

    def run(xs: list[np.ndarray], threads: int) -> np.ndarray:
        x = np.asarray(xs[0], dtype=np.float32)
        lead = x.shape[:-1]
        rows = x.reshape(-1, 1, 1, x.shape[-1])
        y = K.fconv(rows, kernel4, (1, 1), (1, 1), (0, 0), (1, 1), threads=threads)
        y = y.reshape(*lead, kernel.shape[1])
        if bias is not None:
            y = np.add(y, bias)
        return act(y)

    length = kernel.shape[0] + (bias is not None)
    magnitudes = np.abs(kernel).astype(np.float64)
    bias_magnitudes = 0.0 if bias is None else np.abs(bias).astype(np.float64)

    def dense_bound(xs: list[np.ndarray], out: np.ndarray) -> np.ndarray:
        total = np.abs(np.asarray(xs[0], np.float64)) @ magnitudes + bias_magnitudes
        logits = 2 * gamma(length) * total
        if use_softmax:  # the activations after are exact or 1-Lipschitz
            return _softmax_bound(out, np.max(logits, axis=-1, keepdims=True))
        return logits

    constants = [kernel] if bias is None else [kernel, bias]
    lowering = ("dense", kernel4, bias, list(ops or []), use_softmax)
    return Native(run, constants, dense_bound, monotone=False, lowering=lowering)


@dataclass
class NativeConv:
    """A float (depthwise) convolution in the compiled core.

    Attributes:
        run: ``run(x, threads)``: the convolution of NHWC ``x``, without bias.
        kernel: The kernel it keeps.
        ops: Epilogue ops for the layer's bias and activation.
        bound: ``bound(x)``: elementwise bound on the difference between
            ``run(x)`` and any float32 evaluation of the same sums (Keras's):
            ``2·gamma_n`` times the convolution of ``|x|`` with ``|kernel|``,
            ``n`` the number of products in one output.
        spread: ``spread(d)``: bound on how far the outputs move when each
            input moves by at most ``d`` (the convolution of ``d`` with
            ``|kernel|``, rounded up).
    """

    run: Callable[[np.ndarray, int], np.ndarray]
    kernel: np.ndarray
    ops: list[tuple[Any, ...]]
    bound: Callable[[np.ndarray], np.ndarray]
    spread: Callable[[np.ndarray], np.ndarray]
    geometry: Callable[[tuple[int, ...]], dict[str, int]] | None = None
    pad_value: float = 0.0


def conv(
    kernel: np.ndarray,
    depthwise: bool,
    pad_value: float,
    ops: list[tuple[Any, ...]],
    ksize: tuple[int, int],
    strides: tuple[int, int],
    dilation: tuple[int, int],
    padding: str,
) -> NativeConv | None:
    """A float 2D (``depthwise``) convolution in the compiled core, or None
    when the core does not run it (strides and dilation both above 1, or an
    epilogue it cannot apply).

    Args:
        kernel: The kernel as the forward pass uses it, ``(kh, kw, cin, cout)``
            (depthwise: ``(kh, kw, cin, multiplier)``).
        depthwise: A depthwise convolution.
        pad_value: The value of padded taps.
        ops: Epilogue ops for the layer's bias and activation.
        ksize, strides, dilation, padding: The layer's window.
    """
    kernel = np.ascontiguousarray(np.asarray(kernel, dtype=np.float32))
    if elementwise([op for op in ops if op[0] != K.OP_BIAS]) is None:
        return None
    if max(strides) > 1 and max(dilation) > 1:
        return None

    def windows(shape: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, int]]:
        pt, oh = window(shape[1], ksize[0], strides[0], dilation[0], padding)
        pl, ow = window(shape[2], ksize[1], strides[1], dilation[1], padding)
        return (pt, pl), (oh, ow)

    def geometry(shape: tuple[int, ...]) -> dict[str, int]:
        """The core's fconv dims for an input of ``shape`` (n, h, w, cin)."""
        (pt, pl), (oh, ow) = windows(shape)
        n, h, w, cin = shape
        mult = kernel.shape[3] if depthwise else 1
        cout = cin * mult if depthwise else kernel.shape[3]
        return dict(
            n=n, h=h, w=w, cin=cin, kh=ksize[0], kw=ksize[1], sh=strides[0],
            sw=strides[1], dh=dilation[0], dw=dilation[1], pt=pt, pl=pl, oh=oh,
            ow=ow, cout=cout, depth_mult=mult, depthwise=int(depthwise),
        )  # fmt: skip

    def conv(x: np.ndarray, w: np.ndarray, pad: float, threads: int) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        pads, sizes = windows(x.shape)
        return K.fconv(
            x, w, strides, dilation, pads, sizes,
            depthwise=depthwise, pad_value=pad, threads=threads,
        )  # fmt: skip

    def run(x: np.ndarray, threads: int) -> np.ndarray:
        return conv(x, kernel, pad_value, threads)

    length = ksize[0] * ksize[1] * (1 if depthwise else kernel.shape[2])
    magnitudes = np.abs(kernel)

    def bound(x: np.ndarray) -> np.ndarray:
        total = conv(np.abs(x), magnitudes, abs(pad_value), 1).astype(np.float64)
        # The float32 sum of magnitudes is itself within gamma_n of the exact one.
        return 2 * gamma(length) * (1 + gamma(length)) * total

    def spread(d: np.ndarray) -> np.ndarray:
        total = conv(np.asarray(d, np.float32), magnitudes, 0.0, 1)
        return (1 + 2 * gamma(length)) * total.astype(np.float64)

    return NativeConv(run, kernel, ops, bound, spread, geometry, pad_value)


def binary_kernel(
    values: np.ndarray, kind: str, pixels: int = 1, groups: int = 1
) -> BinaryKernel | None:
    """Packs a binary layer's kernel; None unless it is ``±s_c`` per channel.

    Args:
        values: The kernel as the forward pass uses it (quantized), Keras's
            layout: ``(cin, cout)`` dense, ``(k, cin, cout)`` 1D or
            ``(kh, kw, cin_per_group, cout)`` 2D convolution.
        kind: ``"dense"`` or ``"conv"``.
        pixels: For a dense layer reading a flattened ``(pixels, channels)``
            packed tensor: its kernel rows are packed pixel by pixel, as a
            convolution of width ``pixels``.
        groups: Convolution groups.
    """
    values = np.asarray(values, dtype=np.float32)
    cout = values.shape[-1]
    if kind == "dense":
        values = values.reshape(1, pixels, values.shape[0] // pixels, cout)
    elif values.ndim == 3:  # Conv1D (k, cin, cout) -> (1, k, cin, cout)
        values = values[np.newaxis]
    magnitude = np.abs(values).reshape(-1, cout)
    scale = magnitude[0]
    if not np.all(magnitude == scale) or not np.all(scale > 0):
        return None
    if np.any(~np.isfinite(scale)):
        return None
    panels = K.pack_weights(values < 0, groups)
    scale_vec = None if np.all(scale == 1.0) else np.ascontiguousarray(scale)
    kh, kw, cin_g, _ = values.shape
    return BinaryKernel(panels, scale_vec, (kh, kw, cin_g, cout))


def is_monotone_op(code: int) -> bool:
    """Ops that act per channel and keep or reverse the order of values."""
    return code in (K.OP_SCALE, K.OP_BIAS, K.OP_MULADD, K.OP_RELU, K.OP_CLIP, K.OP_SIGN)


def decreasing_channels(ops: list[tuple[Any, ...]], channels: int) -> np.ndarray:
    """Channels on which the composition of monotone ``ops`` is non-increasing."""
    flip = np.zeros(channels, dtype=bool)
    for op in ops:
        if op[0] in (K.OP_SCALE, K.OP_MULADD):
            flip ^= np.asarray(op[1]) < 0
    return flip


def binary_kernel_from_signs(
    negative: np.ndarray,
    scale: np.ndarray | None,
    kind: str,
    pixels: int = 1,
    groups: int = 1,
) -> BinaryKernel | None:
    """:func:`binary_kernel` of the values ``where(negative, -1, 1) * scale``,
    made from the signs without the float values (a file's packed kernel).

    Args:
        negative: Booleans in the kernel's Keras layout.
        scale: The per-output-channel magnitude, or None for 1.
        kind, pixels, groups: As for :func:`binary_kernel`.
    """
    negative = np.asarray(negative, dtype=bool)
    cout = negative.shape[-1]
    if kind == "dense":
        negative = negative.reshape(1, pixels, negative.shape[0] // pixels, cout)
    elif negative.ndim == 3:
        negative = negative[np.newaxis]
    scale_vec = None
    if scale is not None:
        scale = np.asarray(scale, dtype=np.float32).reshape(-1)
        if scale.shape != (cout,) or not np.all(scale > 0):
            return None
        if np.any(~np.isfinite(scale)):
            return None
        scale_vec = None if np.all(scale == 1.0) else np.ascontiguousarray(scale)
    panels = K.pack_weights(negative, groups)
    kh, kw, cin_g, _ = negative.shape
    return BinaryKernel(panels, scale_vec, (kh, kw, cin_g, cout))

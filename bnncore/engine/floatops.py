"""Layers the engine does not binarize: native NumPy/C code or the layer itself.

Two kinds of native implementation (see "Exactness" in docs/engine.md):

* exact: the same float32 operations as Keras, in the same order, so the same
  bits on every CPU: elementwise layers (batch norm as ``x * inv + shift`` with
  TensorFlow's own ``inv`` and ``shift``, ReLU, hard tanh, sign), max pooling,
  adds, concatenation, flatten and the inference-time identities;
* reference order: float 2D and depthwise convolutions in the compiled core
  (each output one chain of fused multiply-adds over the taps in row-major
  order and the input channels in order; depthwise: a product then an add per
  tap), and, where the result never reaches a binarization, global average
  pooling (a float64 sum rounded once), dense layers (the convolution's chain)
  and softmax. TensorFlow sums in an order of its own that depends on the CPU,
  so these agree with Keras within a bound derived from the summation length,
  which :attr:`Native.bound` states per output.

Everything else runs through the Keras layer: convolution and dense layers call
their ``call`` directly (the same TensorFlow ops as the Keras forward pass,
without the per-call bookkeeping of ``__call__``), other layers are called
normally with ``training=False``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from bnncore import quantizers
from bnncore.engine import kernels as K
from bnncore.engine import recognize as R
from bnncore.engine.graph import Node, TensorRef
from bnncore.layers.base import QuantizerBase
from bnncore.layers.forward import same_padding_amounts

__all__ = [
    "UNIT_ROUNDOFF",
    "Native",
    "NativeConv",
    "float_conv",
    "gamma",
    "native",
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


def window(
    size: int, k: int, s: int, d: int, padding: str
) -> tuple[int, int]:  # fmt: skip
    """``(pad before, output size)`` of one spatial axis of a convolution or
    pooling window (``"valid"`` or ``"same"``)."""
    if padding == "same":
        return same_padding_amounts(size, k, s, d)[0], -(-size // s)
    return 0, (size - (k - 1) * d - 1) // s + 1


# Layers whose ``call(inputs)`` is their whole forward pass at inference.
_CALL_DIRECTLY = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
    keras.layers.Dense,
)


def calls_directly(op: Any) -> bool:
    """True when ``op.call(x)`` may replace ``op(x, training=False)``."""
    return isinstance(op, (*_CALL_DIRECTLY, QuantizerBase))


def _elementwise(ops: list[tuple[Any, ...]]) -> NativeFn | None:
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


def _max_pool(layer: Any, rank: int) -> NativeFn | None:
    if (
        not isinstance(layer, keras.layers.MaxPooling2D)
        or layer.data_format != "channels_last"
        or rank != 4
    ):
        return None
    pool, strides, padding = tuple(layer.pool_size), tuple(layer.strides), layer.padding

    def run(xs: list[np.ndarray], threads: int) -> np.ndarray:
        x = np.asarray(xs[0], dtype=np.float32)
        (pt, oh), (pl, ow) = (
            window(x.shape[1], pool[0], strides[0], 1, padding),
            window(x.shape[2], pool[1], strides[1], 1, padding),
        )
        return K.fmaxpool(x, pool, strides, (pt, pl), (oh, ow), threads)

    return run


def _is_add(node: Node) -> bool:
    if isinstance(node.op, keras.layers.Add):
        return True
    return (
        not isinstance(node.op, keras.layers.Layer)
        and type(node.op).__name__ == "Add"
        and len(node.inputs) == 2
        and not node.kwargs
    )


def _same_shapes(shapes: list[Any]) -> bool:
    return bool(shapes) and all(s is not None and s == shapes[0] for s in shapes)


def native(node: Node, specs: dict[Any, Any], sensitive: bool = True) -> Native | None:
    """A native implementation of ``node`` and the constants it keeps, or None.

    Args:
        node: The graph node.
        specs: Symbolic tensors of the graph's values (shapes).
        sensitive: Whether the node's output reaches a binarization. If not,
            implementations that sum in the reference order rather than
            TensorFlow's (global average pooling, dense, softmax) are allowed.
    """
    op = node.op
    shapes = [tuple(specs[v].shape) if v in specs else None for v in node.inputs]
    plain = (
        len(node.inputs) == 1
        and len(node.args) == 1
        and isinstance(node.args[0], TensorRef)
        and all(v is None or k in ("training", "mask") for k, v in node.kwargs.items())
    )
    if _is_add(node) and len(node.inputs) >= 2 and _same_shapes(shapes):

        def add(xs: list[np.ndarray], threads: int) -> np.ndarray:
            total = np.asarray(xs[0], dtype=np.float32)
            for x in xs[1:]:
                total = np.add(total, np.asarray(x, dtype=np.float32))
            return total

        return Native(add, [], lowering=("add",))
    if isinstance(op, keras.layers.Concatenate) and _same_rank(shapes):
        axis = op.axis

        def concat(xs: list[np.ndarray], threads: int) -> np.ndarray:
            return np.concatenate([np.asarray(x, dtype=np.float32) for x in xs], axis)

        return Native(concat, [], lowering=("concat", axis))
    if not plain or not isinstance(op, keras.layers.Layer) or shapes[0] is None:
        return None
    rank = len(shapes[0])
    if isinstance(op, keras.layers.Flatten) and op.data_format == "channels_last":
        return Native(
            lambda xs, threads: np.reshape(xs[0], (np.shape(xs[0])[0], -1)),
            [],
            lowering=("alias",),
        )
    if R.is_identity_layer(op):
        return Native(lambda xs, threads: xs[0], [], lowering=("alias",))
    pool = _max_pool(op, rank)
    if pool is not None:
        return Native(pool, [], lowering=("fmaxpool", tuple(op.pool_size),
                                          tuple(op.strides), op.padding))  # fmt: skip
    if not sensitive:
        found = _terminal(op, shapes[0])
        if found is not None:
            return found
    if isinstance(op, keras.layers.BatchNormalization):
        constants = R.batch_norm_constants(op, rank)
        if constants is None:
            return None
        muladd: list[tuple[Any, ...]] = [(K.OP_MULADD, *constants)]
        fn = _elementwise(muladd)
        return (
            None
            if fn is None
            else Native(fn, list(constants), lowering=("elementwise", muladd))
        )
    if isinstance(op, quantizers.Quantizer) and not R.is_sign(op):
        return None
    ops = R.elementwise_ops(op, rank)
    if ops is None:
        return None
    fn = _elementwise(ops)
    return None if fn is None else Native(fn, [], lowering=("elementwise", ops))


def _same_rank(shapes: list[Any]) -> bool:
    return all(s is not None for s in shapes) and len({len(s) for s in shapes}) == 1


def _conv_kernel(op: Any) -> tuple[np.ndarray, bool, float] | None:
    """(kernel as used in the forward pass, depthwise?, padding value) or None."""
    depthwise = isinstance(op, keras.layers.DepthwiseConv2D)
    if not (depthwise or type(op) in (keras.layers.Conv2D,) or _is_quant_conv(op)):
        return None
    if op.data_format != "channels_last" or getattr(op, "groups", 1) != 1:
        return None
    if isinstance(op, QuantizerBase):
        if op.input_quantizer is not None:
            return None
        kernel = np.asarray(op.quantized_weights["kernel"], dtype=np.float32)
        pad_value = float(op.pad_values)
    else:
        kernel = np.asarray(op.kernel, dtype=np.float32)
        pad_value = 0.0
    return np.ascontiguousarray(kernel), depthwise, pad_value


def _is_quant_conv(op: Any) -> bool:
    from bnncore.layers import QuantConv2D, QuantDepthwiseConv2D

    return isinstance(op, QuantConv2D | QuantDepthwiseConv2D)


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


def float_conv(op: Any, shape: tuple | None) -> NativeConv | None:
    """The native version of a float 2D (depthwise) convolution, or None when the
    layer is not one the core runs (see the module docstring)."""
    if shape is None or len(shape) != 4 or None in shape[1:]:
        return None
    found = _conv_kernel(op)
    if found is None:
        return None
    kernel, depthwise, pad_value = found
    act = R.activation_ops(op.activation)
    if act is None or _elementwise(act) is None:
        return None
    ops: list[tuple[Any, ...]] = []
    if op.use_bias:
        bias = np.ascontiguousarray(np.asarray(op.bias, dtype=np.float32))
        ops.append((K.OP_BIAS, bias))
    ops.extend(act)
    ksize, strides = tuple(op.kernel_size), tuple(op.strides)
    dilation, padding = tuple(op.dilation_rate), op.padding
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


def _terminal(op: Any, shape: tuple | None) -> Native | None:
    """Global average pooling, dense and softmax in the reference order."""
    if shape is None or None in shape[1:]:
        return None
    if isinstance(op, keras.layers.GlobalAveragePooling2D):
        if op.data_format != "channels_last" or len(shape) != 4:
            return None
        keep = op.keepdims
        pixels = shape[1] * shape[2]

        def gap(xs: list[np.ndarray], threads: int) -> np.ndarray:
            return K.global_avg_pool(xs[0], keepdims=keep)

        def gap_bound(xs: list[np.ndarray], out: np.ndarray) -> np.ndarray:
            # Keras: a float32 sum of `pixels` terms, then a division; here one
            # rounding of the exact mean.
            mean = np.mean(np.abs(xs[0]), axis=(1, 2), keepdims=keep, dtype=np.float64)
            return np.asarray((gamma(pixels) + 3 * UNIT_ROUNDOFF) * mean)

        return Native(gap, [], gap_bound, lowering=("gap",))
    softmax_layer = isinstance(op, keras.layers.Softmax) and op.axis in (
        -1,
        len(shape) - 1,
    )
    if softmax_layer or (
        isinstance(op, keras.layers.Activation)
        and op.activation is keras.activations.softmax
    ):

        def softmax(xs: list[np.ndarray], threads: int) -> np.ndarray:
            return K.softmax(xs[0])

        def softmax_bound(xs: list[np.ndarray], out: np.ndarray) -> np.ndarray:
            return _softmax_bound(out, np.zeros((*out.shape[:-1], 1)))

        return Native(softmax, [], softmax_bound, monotone=False, lowering=("softmax",))
    if type(op) is not keras.layers.Dense and not _is_quant_dense(op):
        return None
    return _dense(op, shape)


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


def _is_quant_dense(op: Any) -> bool:
    from bnncore.layers import QuantDense

    return isinstance(op, QuantDense) and op.input_quantizer is None


def _dense(op: Any, shape: tuple) -> Native | None:
    if isinstance(op, QuantizerBase):
        kernel = np.asarray(op.quantized_weights["kernel"], dtype=np.float32)
    else:
        kernel = np.asarray(op.kernel, dtype=np.float32)
    kernel = np.ascontiguousarray(kernel)
    bias = np.asarray(op.bias, dtype=np.float32) if op.use_bias else None
    softmax = op.activation is keras.activations.softmax
    act: Callable[[np.ndarray], np.ndarray]
    ops: list[tuple[Any, ...]] | None = []
    if softmax:
        act = K.softmax
    else:
        ops = R.activation_ops(op.activation)
        tail = None if ops is None else _elementwise(ops)
        if tail is None or any(o[0] == K.OP_SIGN for o in ops or []):
            return None  # a sign's decision would need Keras's own rounding

        def act_tail(y: np.ndarray) -> np.ndarray:
            return tail([y], 1) if ops else y

        act = act_tail

    kernel4 = kernel.reshape(1, 1, *kernel.shape)

    def dense(xs: list[np.ndarray], threads: int) -> np.ndarray:
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
        if softmax:  # the activations after are exact or 1-Lipschitz
            return _softmax_bound(out, np.max(logits, axis=-1, keepdims=True))
        return logits

    constants = [kernel] if bias is None else [kernel, bias]
    lowering = ("dense", kernel4, bias, list(ops or []), softmax)
    return Native(dense, constants, dense_bound, monotone=False, lowering=lowering)

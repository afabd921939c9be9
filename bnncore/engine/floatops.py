"""Layers the engine does not binarize: native NumPy/C code or the layer itself.

Native implementations exist only where they give exactly Keras's float32
result: elementwise layers (batch norm as ``x * inv + shift`` with TensorFlow's
own ``inv`` and ``shift``, ReLU, hard tanh, sign), max pooling, adds,
concatenation, flatten and the inference-time identities (dropout, noise).
Float 2D convolutions and depthwise convolutions run in the compiled core,
which rounds like TensorFlow's CPU kernels (a chain of fused multiply-adds for
convolutions, product-then-add for depthwise ones). TensorFlow picks its kernels
by shape and handles a few tail pixels differently, so each such layer is first
run both ways on a random probe input (batch 1 and 2): it runs natively only if
at least ``PROBE_EXACT_FRACTION`` of the outputs are bit-identical and the rest
differ by float32 rounding only (``PROBE_TOLERANCE``); otherwise TensorFlow runs
it.

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
    "PROBE_EXACT_FRACTION",
    "PROBE_TOLERANCE",
    "TERMINAL_TOLERANCE",
    "NativeConv",
    "float_conv",
    "native",
]

NativeFn = Callable[[list[np.ndarray], int], np.ndarray]

PROBE_EXACT_FRACTION = 0.95
PROBE_TOLERANCE = 1e-6  # relative to the largest output magnitude
TERMINAL_TOLERANCE = 5e-6  # same, for layers whose output is never binarized

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
        pads, sizes = [], []
        for size, p, s in zip(x.shape[1:3], pool, strides, strict=True):
            if padding == "same":
                pads.append(same_padding_amounts(size, p, s, 1)[0])
                sizes.append(-(-size // s))
            else:
                pads.append(0)
                sizes.append((size - p) // s + 1)
        return K.fmaxpool(x, pool, strides, tuple(pads), tuple(sizes), threads)

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


def native(
    node: Node, specs: dict[Any, Any], sensitive: bool = True
) -> tuple[NativeFn, list[np.ndarray]] | None:
    """A native implementation of ``node`` and the constants it keeps, or None.

    Args:
        node: The graph node.
        specs: Symbolic tensors of the graph's values (shapes).
        sensitive: Whether the node's output reaches a binarization. If not,
            implementations whose results differ from TensorFlow's by float32
            rounding only (global average pooling, dense, softmax) are allowed.
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

        return add, []
    if isinstance(op, keras.layers.Concatenate) and _same_rank(shapes):
        axis = op.axis

        def concat(xs: list[np.ndarray], threads: int) -> np.ndarray:
            return np.concatenate([np.asarray(x, dtype=np.float32) for x in xs], axis)

        return concat, []
    if not plain or not isinstance(op, keras.layers.Layer) or shapes[0] is None:
        return None
    rank = len(shapes[0])
    if isinstance(op, keras.layers.Flatten) and op.data_format == "channels_last":
        return (lambda xs, threads: np.reshape(xs[0], (np.shape(xs[0])[0], -1))), []
    if R.is_identity_layer(op):
        return (lambda xs, threads: xs[0]), []
    pool = _max_pool(op, rank)
    if pool is not None:
        return pool, []
    if not sensitive:
        found = _terminal(op, shapes[0])
        if found is not None:
            return found
    if isinstance(op, keras.layers.BatchNormalization):
        constants = R.batch_norm_constants(op, rank)
        if constants is None:
            return None
        fn = _elementwise([(K.OP_MULADD, *constants)])
        return None if fn is None else (fn, list(constants))
    if isinstance(op, quantizers.Quantizer) and not R.is_sign(op):
        return None
    ops = R.elementwise_ops(op, rank)
    if ops is None:
        return None
    fn = _elementwise(ops)
    return None if fn is None else (fn, [])


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
    """A float (depthwise) convolution the compiled core reproduces.

    Attributes:
        run: ``run(x, threads)``: the convolution of NHWC ``x``, without bias.
        kernel: The kernel it keeps.
        ops: Epilogue ops for the layer's bias and activation.
    """

    run: Callable[[np.ndarray, int], np.ndarray]
    kernel: np.ndarray
    ops: list[tuple[Any, ...]]


def float_conv(op: Any, shape: tuple | None) -> NativeConv | None:
    """The native version of a float 2D (depthwise) convolution, if it passes the
    probe (see the module docstring); None otherwise."""
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

    def run(x: np.ndarray, threads: int) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        pads, sizes = [], []
        for size, k, s, d in zip(x.shape[1:3], ksize, strides, dilation, strict=True):
            if padding == "same":
                pads.append(same_padding_amounts(size, k, s, d)[0])
                sizes.append(-(-size // s))
            else:
                pads.append(0)
                sizes.append((size - (k - 1) * d - 1) // s + 1)
        return K.fconv(
            x, kernel, strides, dilation, tuple(pads), tuple(sizes),
            depthwise=depthwise, pad_value=pad_value, threads=threads,
        )  # fmt: skip

    def full(xs: list[np.ndarray], threads: int) -> np.ndarray:
        y = run(xs[0], threads)
        if op.use_bias:
            y = np.add(y, ops[0][1])
        tail = _elementwise(act)
        return tail([y], threads) if (act and tail) else y

    if not _probe(op, full, shape[1:], strict=True):
        return None
    return NativeConv(run, kernel, ops)


def _terminal(op: Any, shape: tuple | None) -> tuple[NativeFn, list[np.ndarray]] | None:
    """Global average pooling, dense and softmax, exact up to float32 rounding."""
    if shape is None or None in shape[1:]:
        return None
    if isinstance(op, keras.layers.GlobalAveragePooling2D):
        if op.data_format != "channels_last" or len(shape) != 4:
            return None
        keep = op.keepdims

        def gap(xs: list[np.ndarray], threads: int) -> np.ndarray:
            return K.global_avg_pool(xs[0], keepdims=keep)

        return (gap, []) if _probe(op, gap, shape[1:], strict=False) else None
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

        return (softmax, []) if _probe(op, softmax, shape[1:], strict=False) else None
    if type(op) is not keras.layers.Dense and not _is_quant_dense(op):
        return None
    return _dense(op, shape)


def _is_quant_dense(op: Any) -> bool:
    from bnncore.layers import QuantDense

    return isinstance(op, QuantDense) and op.input_quantizer is None


def _dense(op: Any, shape: tuple) -> tuple[NativeFn, list[np.ndarray]] | None:
    if isinstance(op, QuantizerBase):
        kernel = np.asarray(op.quantized_weights["kernel"], dtype=np.float32)
    else:
        kernel = np.asarray(op.kernel, dtype=np.float32)
    kernel = np.ascontiguousarray(kernel)
    bias = np.asarray(op.bias, dtype=np.float32) if op.use_bias else None
    act: Callable[[np.ndarray], np.ndarray]
    if op.activation is keras.activations.softmax:
        act = K.softmax
    else:
        ops = R.activation_ops(op.activation)
        tail = None if ops is None else _elementwise(ops)
        if tail is None:
            return None

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

    if not _probe(op, dense, shape[1:], strict=False):
        return None
    return dense, [kernel] if bias is None else [kernel, bias]


def _probe(op: Any, fn: NativeFn, shape: tuple[int, ...], strict: bool) -> bool:
    """Whether ``fn`` reproduces the layer (see the module docstring).

    Strict: at least ``PROBE_EXACT_FRACTION`` of the outputs bit-identical and the
    largest difference within ``PROBE_TOLERANCE`` of the largest output; else
    (layers never followed by a binarization) within ``TERMINAL_TOLERANCE``.
    """
    rng = np.random.default_rng(0)
    for batch in (1, 2):
        x = rng.normal(size=(batch, *shape)).astype(np.float32)
        ref = np.asarray(op(x, training=False), dtype=np.float32)
        got = fn([x], 2)
        if got.shape != ref.shape:
            return False
        scale = max(float(np.max(np.abs(ref))), 1e-30)
        tolerance = PROBE_TOLERANCE if strict else TERMINAL_TOLERANCE
        if float(np.max(np.abs(got - ref))) > tolerance * scale:
            return False
        if strict and float(np.mean(got == ref)) < PROBE_EXACT_FRACTION:
            return False
    return True

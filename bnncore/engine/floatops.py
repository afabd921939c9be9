"""Layers the engine does not binarize: native code or the layer itself.

This module reads a Keras layer's parameters and hands them to the native
implementations of :mod:`bnncore_runtime.natives` (exact float32 operations,
or the core's reference order with a stated bound; see "Exactness" in
docs/engine.md), the same ones the TensorFlow-free runtime builds from an
export.

Everything else runs through the Keras layer: convolution and dense layers call
their ``call`` directly (the same TensorFlow ops as the Keras forward pass,
without the per-call bookkeeping of ``__call__``), other layers are called
normally with ``training=False``.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from bnncore import quantizers
from bnncore.engine import kernels as K
from bnncore.engine import recognize as R
from bnncore.engine.graph import Node, TensorRef
from bnncore.layers.base import QuantizerBase
from bnncore_runtime import natives
from bnncore_runtime.natives import (
    UNIT_ROUNDOFF,
    Native,
    NativeConv,
    gamma,
    window,
)

__all__ = [
    "UNIT_ROUNDOFF",
    "Native",
    "NativeConv",
    "float_conv",
    "gamma",
    "native",
    "window",
]

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


def is_add(node: Node) -> bool:
    """An ``Add`` layer, or the ``+`` of two tensors (Keras's ``Add`` op)."""
    if isinstance(node.op, keras.layers.Add):
        return True
    return (
        not isinstance(node.op, keras.layers.Layer)
        and type(node.op).__name__ == "Add"
        and len(node.inputs) == 2
        and not node.kwargs
    )


def max_pool_window(op: Any) -> tuple[tuple[int, int], tuple[int, int], str] | None:
    """``(pool, strides, padding)`` of a channels-last ``MaxPooling2D``, else None."""
    if (
        not isinstance(op, keras.layers.MaxPooling2D)
        or op.data_format != "channels_last"
    ):
        return None
    return tuple(op.pool_size), tuple(op.strides), op.padding


def _same_shapes(shapes: list[Any]) -> bool:
    return bool(shapes) and all(s is not None and s == shapes[0] for s in shapes)


def _same_rank(shapes: list[Any]) -> bool:
    return all(s is not None for s in shapes) and len({len(s) for s in shapes}) == 1


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
    if is_add(node) and len(node.inputs) >= 2 and _same_shapes(shapes):
        return natives.add()
    if isinstance(op, keras.layers.Concatenate) and _same_rank(shapes):
        return natives.concat(op.axis)
    if not plain or not isinstance(op, keras.layers.Layer) or shapes[0] is None:
        return None
    rank = len(shapes[0])
    if isinstance(op, keras.layers.Flatten) and op.data_format == "channels_last":
        return natives.flatten()
    if R.is_identity_layer(op):
        return natives.alias()
    pool = max_pool_window(op)
    if pool is not None and rank == 4:
        return natives.max_pool(*pool)
    if not sensitive:
        found = _terminal(op, shapes[0])
        if found is not None:
            return found
    if isinstance(op, keras.layers.BatchNormalization):
        constants = R.batch_norm_constants(op, rank)
        if constants is None:
            return None
        return natives.elementwise_native([(K.OP_MULADD, *constants)])
    if isinstance(op, quantizers.Quantizer) and not R.is_sign(op):
        return None
    ops = R.elementwise_ops(op, rank)
    if ops is None:
        return None
    return natives.elementwise_native(ops)


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
    if act is None:
        return None
    ops: list[tuple[Any, ...]] = []
    if op.use_bias:
        bias = np.ascontiguousarray(np.asarray(op.bias, dtype=np.float32))
        ops.append((K.OP_BIAS, bias))
    ops.extend(act)
    return natives.conv(
        kernel, depthwise, pad_value, ops, tuple(op.kernel_size), tuple(op.strides),
        tuple(op.dilation_rate), op.padding,
    )  # fmt: skip


def _terminal(op: Any, shape: tuple | None) -> Native | None:
    """Global average pooling, dense and softmax in the reference order."""
    if shape is None or None in shape[1:]:
        return None
    if isinstance(op, keras.layers.GlobalAveragePooling2D):
        if op.data_format != "channels_last" or len(shape) != 4:
            return None
        return natives.global_avg_pool(shape, bool(op.keepdims))
    softmax_layer = isinstance(op, keras.layers.Softmax) and op.axis in (
        -1,
        len(shape) - 1,
    )
    if softmax_layer or (
        isinstance(op, keras.layers.Activation)
        and op.activation is keras.activations.softmax
    ):
        return natives.softmax()
    if type(op) is not keras.layers.Dense and not _is_quant_dense(op):
        return None
    if isinstance(op, QuantizerBase):
        kernel = np.asarray(op.quantized_weights["kernel"], dtype=np.float32)
    else:
        kernel = np.asarray(op.kernel, dtype=np.float32)
    bias = np.asarray(op.bias, dtype=np.float32) if op.use_bias else None
    use_softmax = op.activation is keras.activations.softmax
    ops = None if use_softmax else R.activation_ops(op.activation)
    return natives.dense(kernel, bias, ops, use_softmax)


def _is_quant_dense(op: Any) -> bool:
    from bnncore.layers import QuantDense

    return isinstance(op, QuantDense) and op.input_quantizer is None

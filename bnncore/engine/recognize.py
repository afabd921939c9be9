"""Which layers the engine accelerates, and the epilogue ops they fold into.

A layer runs on packed bits when its input quantizer is a sign (``ste_sign``,
``approx_sign``, ``swish_sign``, as function or class: forward ``-1`` if
``x < 0`` else ``+1``) and its quantized kernel holds, in every output
channel ``c``, only the two values ``±s_c`` (a sign kernel, or a
magnitude-aware sign, whose ``s_c`` becomes a per-channel scale).

Elementwise layers after it fold into its epilogue as float32 ops applied in
the same order and with the same roundings as Keras: bias add, ReLU, hard tanh,
sign, batch normalization (``x * inv + shift`` with ``inv`` and ``shift``
computed by TensorFlow exactly as ``tf.nn.batch_normalization`` does) and the
add of a residual tensor.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bnncore import activations as bactivations
from bnncore import math as bmath
from bnncore import quantizers
from bnncore.engine import kernels as K
from bnncore.layers import QuantConv1D, QuantConv2D, QuantDense
from bnncore_runtime import natives
from bnncore_runtime.natives import decreasing_channels, is_monotone_op
from bnncore_runtime.steps import BinaryKernel

__all__ = [
    "BinaryKernel",
    "activation_ops",
    "binary_kernel",
    "decreasing_channels",
    "elementwise_ops",
    "is_identity_layer",
    "is_monotone_op",
    "is_sign",
]

_SIGN_FUNCTIONS = (
    quantizers.ste_sign,
    quantizers.approx_sign,
    quantizers.swish_sign,
    bmath.sign,
)
_SIGN_CLASSES = (quantizers.SteSign, quantizers.ApproxSign, quantizers.SwishSign)
_IDENTITY_LAYERS = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
)


def is_sign(fn: Any) -> bool:
    """True for the quantizers/activations whose forward pass is ``sign``."""
    if fn is None:
        return False
    if isinstance(fn, _SIGN_CLASSES):
        return True
    return any(fn is f for f in _SIGN_FUNCTIONS)


def is_identity_layer(op: Any) -> bool:
    """Layers that are the identity at inference (dropout and noise)."""
    return isinstance(op, _IDENTITY_LAYERS)


def activation_ops(fn: Any) -> list[tuple[Any, ...]] | None:
    """Epilogue ops for an activation function, or None if it cannot fold."""
    if fn is None or fn is keras.activations.linear:
        return []
    if fn is keras.activations.relu:
        return [(K.OP_RELU,)]
    if fn is keras.activations.relu6:
        return [(K.OP_CLIP, 0.0, 6.0)]
    if fn is bactivations.hard_tanh or fn is getattr(
        keras.activations, "hard_tanh", None
    ):
        return [(K.OP_CLIP, -1.0, 1.0)]
    if is_sign(fn):
        return [(K.OP_SIGN,)]
    return None


def batch_norm_constants(layer: Any, rank: int | None) -> tuple[np.ndarray, ...] | None:
    """``(inv, shift)`` with ``BN(x) = x * inv + shift`` rounded as TensorFlow does.

    Only for a normalization over the last axis; None otherwise.
    """
    axes = [a if a >= 0 else a + (rank or 0) for a in np.atleast_1d(layer.axis)]
    if rank is None or axes != [rank - 1]:
        return None
    variance = tf.convert_to_tensor(layer.moving_variance, tf.float32)
    mean = tf.convert_to_tensor(layer.moving_mean, tf.float32)
    inv = tf.math.rsqrt(variance + layer.epsilon)
    if layer.scale:
        inv = inv * tf.convert_to_tensor(layer.gamma, tf.float32)
    if layer.center:
        shift = tf.convert_to_tensor(layer.beta, tf.float32) - mean * inv
    else:
        shift = -mean * inv
    return _vector(inv), _vector(shift)


def _batch_norm_ops(layer: Any, rank: int | None) -> list[tuple[Any, ...]] | None:
    constants = batch_norm_constants(layer, rank)
    return None if constants is None else [(K.OP_MULADD, *constants)]


def _vector(t: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(t, dtype=np.float32).reshape(-1))


def elementwise_ops(op: Any, rank: int | None) -> list[tuple[Any, ...]] | None:
    """Epilogue ops for a single-input layer, or None if it cannot fold.

    Args:
        op: The layer.
        rank: Rank of its input (batch axis included), when known.
    """
    if is_identity_layer(op):
        return []
    if isinstance(op, keras.layers.BatchNormalization):
        return _batch_norm_ops(op, rank)
    if isinstance(op, keras.layers.Activation):
        return activation_ops(op.activation)
    if isinstance(op, keras.layers.ReLU):
        if op.negative_slope == 0 and op.threshold == 0 and op.max_value is None:
            return [(K.OP_RELU,)]
        return None
    if isinstance(op, quantizers.Quantizer) and is_sign(op):
        return [(K.OP_SIGN,)]
    return None


def _binary_layer_kind(layer: Any) -> str | None:
    if isinstance(layer, QuantDense):
        return "dense"
    if isinstance(layer, QuantConv1D | QuantConv2D):
        if layer.data_format != "channels_last":
            return None
        return "conv"
    return None


def binary_kind(layer: Any) -> str | None:
    """``"dense"``/``"conv"`` when the layer qualifies for packed execution."""
    kind = _binary_layer_kind(layer)
    if kind is None or not is_sign(layer.input_quantizer):
        return None
    quantizer = layer.kernel_quantizer
    if quantizer is None or quantizers.get_precision(quantizer) != 1:
        return None
    if kind == "conv" and float(layer.pad_values) not in (0.0, 1.0):
        return None
    return kind


def binary_kernel(layer: Any, kind: str, pixels: int = 1) -> BinaryKernel | None:
    """Packs the quantized kernel; None unless it is ``±s_c`` per channel.

    Args:
        layer: The binary layer.
        kind: ``"dense"`` or ``"conv"``.
        pixels: For a dense layer reading a flattened ``(pixels, channels)``
            packed tensor: its kernel rows are packed pixel by pixel, as a
            convolution of width ``pixels``.
    """
    values = np.asarray(layer.quantized_weights["kernel"], dtype=np.float32)
    groups = int(getattr(layer, "groups", 1))
    return natives.binary_kernel(values, kind, pixels, groups)

"""Shared oracles and utilities for the quantized-layer tests.

Everything here is independent of ``bnncore.layers``: NumPy references and thin
wrappers around public Keras/TensorFlow APIs.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

import bnncore.layers as bl

# The quantizer arguments each quantized layer takes, and the weight each one
# quantizes: written down from the issue, not read from the layer classes.
KERNEL_QUANTIZER_ARGS: dict[type, dict[str, str]] = {
    **{
        cls: {"kernel_quantizer": "kernel"}
        for cls in (
            bl.QuantDense,
            bl.QuantConv1D,
            bl.QuantConv2D,
            bl.QuantConv3D,
            bl.QuantConv1DTranspose,
            bl.QuantConv2DTranspose,
            bl.QuantConv3DTranspose,
            bl.QuantLocallyConnected1D,
            bl.QuantLocallyConnected2D,
        )
    },
    bl.QuantDepthwiseConv1D: {"depthwise_quantizer": "kernel"},
    bl.QuantDepthwiseConv2D: {"depthwise_quantizer": "kernel"},
    bl.QuantSeparableConv1D: {
        "depthwise_quantizer": "depthwise_kernel",
        "pointwise_quantizer": "pointwise_kernel",
    },
    bl.QuantSeparableConv2D: {
        "depthwise_quantizer": "depthwise_kernel",
        "pointwise_quantizer": "pointwise_kernel",
    },
}


def np_sign(x: np.ndarray) -> np.ndarray:
    """Sign with sign(0) = sign(-0.0) = +1."""
    return np.where(x < 0, -1.0, 1.0).astype(x.dtype)


def sprinkle_zeros(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``x`` with about a tenth of its entries set to 0.0 or -0.0."""
    x = x.copy()
    flat = x.reshape(-1)
    count = min(flat.size, max(2, flat.size // 10))
    picks = rng.choice(flat.size, size=count, replace=False)
    flat[picks[::2]] = 0.0
    flat[picks[1::2]] = -0.0
    return x


def random_array(
    shape: tuple[int, ...], rng: np.random.Generator, scale: float = 1.0
) -> np.ndarray:
    return (scale * rng.standard_normal(shape)).astype("float32")


def set_random_weights(
    layers: list[keras.layers.Layer], rng: np.random.Generator, scale: float = 1.0
) -> dict[str, np.ndarray]:
    """Gives every layer in ``layers`` the same random weights (by weight name)."""
    values = {
        w.name: sprinkle_zeros(random_array(tuple(w.shape), rng, scale), rng)
        for w in layers[0].weights
    }
    for layer in layers:
        for w in layer.weights:
            w.assign(values[w.name])
    return values


def outputs_and_gradients(
    layer: keras.layers.Layer, x: np.ndarray, upstream: np.ndarray | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The layer's output on ``x`` and the gradient of ``sum(output * upstream)``
    with respect to the input (key ``"inputs"``) and each trainable weight (by
    name)."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        if upstream is None:
            upstream = np.ones(y.shape, "float32")
        loss = tf.reduce_sum(y * upstream)
    weights = list(layer.trainable_weights)
    grads = tape.gradient(loss, [x, *weights])
    named = {"inputs": grads[0].numpy()}
    named.update({w.name: g.numpy() for w, g in zip(weights, grads[1:], strict=True)})
    return y.numpy(), named


def build(layer: keras.layers.Layer, shape: tuple[int, ...]) -> keras.layers.Layer:
    layer.build(shape)
    return layer

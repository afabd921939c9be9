"""Shared helpers of the engine tests: oracles and model builders."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

import bnncore  # noqa: F401  (registers the quantizers and activations)

BINARY = {
    "input_quantizer": "ste_sign",
    "kernel_quantizer": "ste_sign",
    "kernel_constraint": "weight_clip",
}


def randomize(model: keras.Model, seed: int = 0) -> keras.Model:
    """Random weights everywhere; batch norms get random (signed) gammas, random
    betas and means, and positive variances, so folding is not trivial."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            new = [rng.normal(0.0, 1.0, w.shape).astype(np.float32) for w in weights]
            new[-1] = rng.uniform(0.2, 2.0, weights[-1].shape).astype(np.float32)
        else:
            new = [rng.normal(0.0, 1.0, w.shape).astype(np.float32) for w in weights]
        layer.set_weights(new)
    return model


def keras_forward(model: keras.Model, x: Any) -> list[np.ndarray]:
    """The model's own eager forward pass (inference mode), as a list of arrays."""
    out = model(x, training=False)
    return [np.asarray(o) for o in keras.tree.flatten(out)]


def assert_matches(got: Any, ref: list[np.ndarray], rtol: float = 1e-5) -> None:
    """Outputs equal up to float32 accumulation: |got - ref| <= rtol * max|ref|."""
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(ref)
    for g, r in zip(got, ref, strict=True):
        assert g.shape == r.shape, (g.shape, r.shape)
        scale = max(float(np.max(np.abs(r))), 1.0)
        np.testing.assert_allclose(g, r, rtol=0, atol=rtol * scale)


def sign32(x: np.ndarray) -> np.ndarray:
    """``ste_sign``'s forward pass in float32: -1 where ``x < 0``, else +1."""
    return np.where(np.asarray(x) < 0, np.float32(-1), np.float32(1))


def batch_norm_reference(layer: keras.layers.BatchNormalization) -> tuple[Any, Any]:
    """``(inv, shift)`` of ``tf.nn.batch_normalization`` (``x * inv + shift``) for
    ``layer`` at inference, its operations repeated in NumPy float32 (IEEE, so
    the same bits) except the reciprocal square root, which is TensorFlow's.

    TensorFlow's ``rsqrt`` is not correctly rounded: Eigen runs the CPU's
    approximate ``rsqrtps`` plus one Newton step on whole 8-lane packets (its
    last bit differs between CPU vendors) and ``1 / sqrt`` on the rest. It is
    taken on the same ``(channels,)`` vector as the layer's, in this process, so
    it is the value the layer and the engine use on whatever CPU runs the test.
    """
    import tensorflow as tf

    def f32(v: Any) -> np.ndarray:
        return np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float32)

    variance = f32(layer.moving_variance) + np.float32(layer.epsilon)
    inv = np.asarray(tf.math.rsqrt(variance), dtype=np.float32)
    if layer.scale:
        inv = inv * f32(layer.gamma)
    mean_inv = f32(layer.moving_mean) * inv
    shift = f32(layer.beta) - mean_inv if layer.center else -mean_inv
    return inv, shift


def max_pool_reference(
    x: np.ndarray, pool: int, stride: int, pads: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """NumPy max pooling of NHWC ``x`` (square windows; padded positions never
    win, as in Keras's ``"same"`` padding): selection only, so exact."""
    padded = np.pad(
        x, ((0, 0), pads, pads, (0, 0)), constant_values=np.float32(-np.inf)
    )
    oh = (padded.shape[1] - pool) // stride + 1
    ow = (padded.shape[2] - pool) // stride + 1
    out = np.full((x.shape[0], oh, ow, x.shape[3]), -np.inf, np.float32)
    for a in range(pool):
        for b in range(pool):
            window = padded[
                :, a : a + (oh - 1) * stride + 1 : stride,
                b : b + (ow - 1) * stride + 1 : stride,
            ]  # fmt: skip
            out = np.maximum(out, window)
    return out


def signs(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


def conv_oracle(
    x: np.ndarray,
    w: np.ndarray,
    strides: tuple[int, int],
    dilation: tuple[int, int],
    pads: tuple[tuple[int, int], tuple[int, int]],
    pad_value: float,
    groups: int,
) -> np.ndarray:
    """NumPy 2D convolution (cross-correlation) of NHWC ``x`` with HWIO ``w``."""
    n, h, wd, _ = x.shape
    kh, kw, cin_g, cout = w.shape
    padded = np.pad(
        x.astype(np.float64),
        ((0, 0), pads[0], pads[1], (0, 0)),
        constant_values=pad_value,
    )
    oh = (h + sum(pads[0]) - (kh - 1) * dilation[0] - 1) // strides[0] + 1
    ow = (wd + sum(pads[1]) - (kw - 1) * dilation[1] - 1) // strides[1] + 1
    out = np.zeros((n, oh, ow, cout))
    ng = cout // groups
    for a in range(kh):
        for b in range(kw):
            top, left = a * dilation[0], b * dilation[1]
            window = padded[
                :,
                top : top + (oh - 1) * strides[0] + 1 : strides[0],
                left : left + (ow - 1) * strides[1] + 1 : strides[1],
                :,
            ]
            for g in range(groups):
                out[..., g * ng : (g + 1) * ng] += (
                    window[..., g * cin_g : (g + 1) * cin_g]
                    @ w[a, b, :, g * ng : (g + 1) * ng]
                )
    return out


def binary_steps(packed: Any) -> list[Any]:
    return [s for s in packed.steps if s.kind == "binary"]

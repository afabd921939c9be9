"""Reloaded magnitude-aware kernels quantize to exactly the original ±scale."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import bnncore as lq


def build():
    return keras.Sequential(
        [
            keras.Input((6, 6, 24)),
            lq.layers.QuantConv2D(
                48,
                3,
                input_quantizer="ste_sign",
                kernel_quantizer="magnitude_aware_sign",
                kernel_constraint="weight_clip",
                use_bias=False,
                name="conv",
            ),
        ]
    )


@pytest.mark.parametrize("seed", range(4))
def test_magnitude_aware_kernels_reload_exactly(seed, tmp_path):
    rng = np.random.default_rng(seed)
    original = build()
    kernel = rng.uniform(-1, 1, original.layers[0].kernel.shape).astype("float32")
    original.layers[0].kernel.assign(kernel)
    path = tmp_path / "weights.safetensors"
    lq.export.write_weights(original, path)
    restored = build()
    lq.export.load_weights(restored, path)

    # Oracle: NumPy's sign × per-channel mean |w| of the latent kernel.
    expected = np.asarray(original.layers[0].quantized_weights["kernel"])
    wide = np.abs(kernel.astype(np.float64)).mean(axis=(0, 1, 2))
    scale = wide.astype(np.float32)
    # Exact on any CPU: TensorFlow's float64 mean (its own summation order) is
    # within 1e-13 of NumPy's, and no mean lies within 1e-12 (relative) of a
    # float32 rounding boundary, so both round to the same float32.
    ulp = np.spacing(scale).astype(np.float64)
    assert np.min((ulp / 2 - np.abs(wide - scale)) / wide) > 1e-12
    np.testing.assert_array_equal(expected, np.where(kernel < 0, -1, 1) * scale)
    # The file holds sign bits and the scale: the reload is bit-exact.
    got = np.asarray(restored.layers[0].quantized_weights["kernel"])
    np.testing.assert_array_equal(got, expected)
    x = rng.normal(size=(2, 6, 6, 24)).astype("float32")
    # Exact: equal quantized kernels (checked above), no batch norm, the same
    # TensorFlow op on the same shapes in this process.
    np.testing.assert_array_equal(restored(x), original(x))

"""quantized_scope: quantized kernels for weight reads and saves, latent outside."""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest

from bnncore import context, quantizers
from bnncore.layers import QuantDense, QuantSeparableConv1D


def numpy_sign(w):
    return np.where(w < 0, -1.0, 1.0).astype(w.dtype)


def numpy_tern(w, threshold=0.5):
    return np.where(w >= threshold, 1.0, np.where(w <= -threshold, -1.0, 0.0))


def model_with_kernels():
    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [
            keras.Input((6, 2)),
            QuantSeparableConv1D(
                4,
                3,
                depthwise_quantizer="ste_sign",
                depthwise_constraint="weight_clip",
                pointwise_quantizer=quantizers.SteTern(threshold_value=0.5),
                bias_initializer="random_normal",
                name="separable",
            ),
            keras.layers.Flatten(),
            keras.layers.BatchNormalization(
                beta_initializer="random_normal", name="norm"
            ),
            QuantDense(
                3,
                kernel_quantizer="ste_sign",
                kernel_constraint="weight_clip",
                name="binary",
            ),
            QuantDense(2, name="float"),
        ]
    )
    return model


def test_get_weights_switches_between_latent_and_quantized():
    model = model_with_kernels()
    separable, _, _, binary, unquantized = model.layers
    latent = {layer.name: layer.get_weights() for layer in model.layers}
    assert not context.should_quantize()
    with context.quantized_scope(True) as active:
        assert active is True and context.should_quantize()
        depthwise, pointwise, bias = separable.get_weights()
        kernel, dense_bias = binary.get_weights()
        float_weights = unquantized.get_weights()
        with context.quantized_scope(False):
            assert not context.should_quantize()
            np.testing.assert_array_equal(binary.get_weights()[0], latent["binary"][0])
        assert context.should_quantize()
    np.testing.assert_array_equal(depthwise, numpy_sign(latent["separable"][0]))
    np.testing.assert_array_equal(pointwise, numpy_tern(latent["separable"][1]))
    np.testing.assert_array_equal(bias, latent["separable"][2])
    np.testing.assert_array_equal(kernel, numpy_sign(latent["binary"][0]))
    np.testing.assert_array_equal(dense_bias, latent["binary"][1])
    for got, want in zip(float_weights, latent["float"], strict=True):
        np.testing.assert_array_equal(got, want)
    assert 0 < np.mean(pointwise == 0) < 1  # the ternary view really differs
    # Leaving the scope changed nothing: the latent weights are untouched.
    for layer in model.layers:
        for got, want in zip(layer.get_weights(), latent[layer.name], strict=True):
            np.testing.assert_array_equal(got, want)
    # The kernels are QuantizedVariables: model.get_weights() is quantized too.
    with context.quantized_scope(True):
        np.testing.assert_array_equal(
            model.get_weights()[0], numpy_sign(latent["separable"][0])
        )


def test_scope_is_restored_after_errors_and_is_per_thread():
    seen = []
    with pytest.raises(RuntimeError), context.quantized_scope(True):
        thread = threading.Thread(target=lambda: seen.append(context.should_quantize()))
        thread.start()
        thread.join()
        raise RuntimeError
    assert seen == [False]
    assert not context.should_quantize()
    with pytest.raises(ValueError, match="quantize=1"):
        context.quantized_scope(1).__enter__()


def test_saving_inside_the_scope_writes_quantized_kernels(tmp_path):
    model = model_with_kernels()
    x = np.random.default_rng(0).normal(size=(5, 6, 2)).astype("float32")
    latent = model.get_weights()
    expected_kernels = {
        "separable": [numpy_sign(latent[0]), numpy_tern(latent[1])],
        "binary": [numpy_sign(model.layers[3].get_weights()[0])],
    }
    with context.quantized_scope(True):
        model.save_weights(tmp_path / "quantized.weights.h5")
        model.save(tmp_path / "quantized.keras")
    model.save_weights(tmp_path / "latent.weights.h5")

    fresh = model_with_kernels()
    fresh.set_weights([np.zeros_like(w) for w in latent])
    fresh.load_weights(tmp_path / "latent.weights.h5")
    for got, want in zip(fresh.get_weights(), latent, strict=True):
        np.testing.assert_array_equal(got, want)

    fresh.load_weights(tmp_path / "quantized.weights.h5")
    separable, _, norm, binary, unquantized = fresh.layers
    for got, want in zip(
        separable.get_weights()[:2], expected_kernels["separable"], strict=True
    ):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        binary.get_weights()[0], expected_kernels["binary"][0]
    )
    for layer in (norm, unquantized):
        original = model.get_layer(layer.name).get_weights()
        for got, want in zip(layer.get_weights(), original, strict=True):
            np.testing.assert_array_equal(got, want)

    # Sign and ternary quantizers are idempotent: same predictions from bits.
    loaded = keras.models.load_model(tmp_path / "quantized.keras")
    assert set(np.unique(loaded.get_layer("binary").kernel.numpy())) == {-1.0, 1.0}
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )

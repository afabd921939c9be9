"""Training: the latent float kernels learn, the quantized views stay quantized."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from layer_helpers import KERNEL_QUANTIZER_ARGS, np_sign, random_array

import bnncore.layers as bl
from bnncore import quantizers

KL = keras.layers


def _left_brighter_task(n: int, rng: np.random.Generator):
    """Images in {-1, +1}; label 1 when the left half has more +1 than the right."""
    x = np.where(rng.random((n, 6, 6, 1)) < 0.5, -1.0, 1.0).astype("float32")
    y = (x[:, :, :3].sum(axis=(1, 2, 3)) > x[:, :, 3:].sum(axis=(1, 2, 3))).astype(
        "int32"
    )
    return x, y


def _small_bnn():
    binary = {"kernel_quantizer": "ste_sign", "kernel_constraint": "weight_clip"}
    return keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            bl.QuantConv2D(8, 3, use_bias=False, **binary),
            KL.BatchNormalization(),
            KL.Flatten(),
            bl.QuantDense(2, input_quantizer="ste_sign", use_bias=False, **binary),
            KL.BatchNormalization(),
            KL.Activation("softmax"),
        ]
    )


def test_fit_reduces_loss_of_a_small_bnn():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y = _left_brighter_task(256, rng)
    model = _small_bnn()
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    before, _ = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    after, accuracy = model.evaluate(x, y, verbose=0)
    assert after < 0.7 * before, (before, after)
    # Below the log-loss of always answering 50/50 (ln 2), and well above chance.
    assert after < 0.6, after
    assert accuracy > 0.75, accuracy
    for layer in model.layers:
        if isinstance(layer, bl.QuantizerBase):
            latent = layer.kernel.numpy()
            assert np.abs(latent).max() <= 1.0  # weight_clip held after every step
            assert set(np.unique(layer.quantized_weights["kernel"])) <= {-1.0, 1.0}


# (class, kwargs, input shape)
LAYERS = [
    pytest.param(bl.QuantDense, {"units": 3}, (2, 4), id="dense"),
    pytest.param(
        bl.QuantConv2D, {"filters": 2, "kernel_size": 2}, (1, 3, 3, 2), id="conv2d"
    ),
    pytest.param(
        bl.QuantDepthwiseConv1D, {"kernel_size": 2}, (1, 4, 2), id="depthwise1d"
    ),
    pytest.param(
        bl.QuantSeparableConv2D,
        {"filters": 2, "kernel_size": 2},
        (1, 3, 3, 2),
        id="separable2d",
    ),
    pytest.param(
        bl.QuantConv1DTranspose,
        {"filters": 2, "kernel_size": 2},
        (1, 3, 2),
        id="conv1dT",
    ),
    pytest.param(
        bl.QuantLocallyConnected2D,
        {"filters": 2, "kernel_size": 2},
        (1, 3, 3, 2),
        id="local2d",
    ),
]

QUANTIZERS = [
    pytest.param("ste_sign", id="ste_sign"),
    pytest.param(quantizers.SteTern(threshold_value=0.3), id="ste_tern"),
    pytest.param(quantizers.DoReFa(k_bit=2, mode="weights"), id="dorefa-weights"),
    pytest.param("magnitude_aware_sign", id="magnitude_aware_sign"),
]


@pytest.mark.parametrize("quantizer", QUANTIZERS)
@pytest.mark.parametrize(("cls", "kwargs", "shape"), LAYERS)
def test_quantized_weights_is_the_quantizer_applied_to_the_latent_kernel(
    cls, kwargs, shape, quantizer
):
    args = KERNEL_QUANTIZER_ARGS[cls]
    layer = cls(**kwargs, **dict.fromkeys(args, quantizer))
    layer.build(shape)
    reference = quantizers.get(quantizer)
    views = layer.quantized_weights
    assert set(views) == set(args.values())
    for attribute in args.values():
        latent = getattr(layer, attribute).numpy()
        expected = keras.ops.convert_to_numpy(reference(latent))
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(views[attribute]), expected
        )
        if quantizer == "ste_sign":
            np.testing.assert_array_equal(expected, np_sign(latent))


def test_quantized_weights_without_quantizer_is_the_latent_kernel():
    layer = bl.QuantSeparableConv1D(2, 2, pointwise_quantizer="ste_sign")
    layer.build((1, 4, 3))
    views = layer.quantized_weights
    np.testing.assert_array_equal(views["depthwise_kernel"], layer.depthwise_kernel)
    np.testing.assert_array_equal(
        views["pointwise_kernel"], np_sign(layer.pointwise_kernel.numpy())
    )
    assert layer.kernel_quantizers["depthwise_kernel"] is None


def test_forward_pass_uses_the_quantized_view():
    rng = np.random.default_rng(1)
    layer = bl.QuantDense(3, kernel_quantizer="ste_sign", bias_initializer="ones")
    layer.build((2, 4))
    x = random_array((2, 4), rng)
    expected = x @ np_sign(layer.kernel.numpy()) + 1.0
    np.testing.assert_allclose(layer(x), expected, rtol=1e-6, atol=1e-6)


def test_latent_kernel_trains_while_quantized_view_stays_binary():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    layer = bl.QuantConv1D(
        3, 2, kernel_quantizer="ste_sign", kernel_constraint="weight_clip"
    )
    model = keras.Sequential([keras.Input((5, 2)), layer, KL.Flatten()])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = layer.kernel.numpy().copy()
    x = random_array((8, 5, 2), rng)
    model.train_on_batch(x, random_array((8, 12), rng))
    after = layer.kernel.numpy()
    assert not np.array_equal(after, before)
    assert np.abs(after).max() <= 1.0
    view = keras.ops.convert_to_numpy(layer.quantized_weights["kernel"])
    assert set(np.unique(view)) <= {-1.0, 1.0}
    np.testing.assert_array_equal(view, np_sign(after))  # recomputed, not cached

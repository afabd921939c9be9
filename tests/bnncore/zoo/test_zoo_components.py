"""The zoo's own building blocks against NumPy references."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from bnncore import quantizers
from bnncore.zoo.dorefanet import MagnitudeAwareSignUnclipped
from bnncore.zoo.meliusnet import AddToLastChannels
from bnncore.zoo.quicknet import BlurPool
from bnncore.zoo.xnornet import XnorWeightScale

RNG = np.random.default_rng(3)


def np_sign(x):
    return np.where(x < 0, -1.0, 1.0)


def value_and_grad(fn, x, dy):
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = fn(xt)
    return np.asarray(y), np.asarray(tape.gradient(y, xt, output_gradients=dy))


@pytest.mark.parametrize(
    ("size", "row"), [(2, [1, 1]), (3, [1, 2, 1]), (5, [1, 4, 6, 4, 1])]
)
def test_blurpool_is_a_normalised_binomial_filter_per_channel(size, row):
    kernel = np.asarray(BlurPool()((size, size, 4, 1), dtype="float32"))
    expected = np.outer(row, row) / np.sum(row) ** 2
    assert kernel.shape == (size, size, 4, 1)
    for channel in range(4):
        np.testing.assert_allclose(kernel[:, :, channel, 0], expected, rtol=1e-7)


def test_blurpool_refuses_other_sizes():
    with pytest.raises(ValueError, match=r"size 2, 3 or 5.*\(4, 4, 2, 1\)"):
        BlurPool()((4, 4, 2, 1))


def test_blurpool_keeps_a_constant_image_constant_inside():
    conv = keras.layers.DepthwiseConv2D(
        3, padding="valid", depthwise_initializer=BlurPool(), use_bias=False
    )
    image = np.full((1, 6, 6, 2), 0.75, dtype="float32")
    np.testing.assert_allclose(np.asarray(conv(image)), 0.75, rtol=1e-6)
    restored = keras.initializers.deserialize(keras.initializers.serialize(BlurPool()))
    assert isinstance(restored, BlurPool)


def test_add_to_last_channels_equals_front_zero_padding():
    x = RNG.normal(size=(2, 3, 3, 10)).astype("float32")
    update = RNG.normal(size=(2, 3, 3, 4)).astype("float32")
    expected = x + np.pad(update, [(0, 0), (0, 0), (0, 0), (6, 0)])
    got = np.asarray(AddToLastChannels()([x, update]))
    np.testing.assert_allclose(got, expected, rtol=1e-7)


def test_add_to_last_channels_shapes_and_round_trip(tmp_path):
    a, b = keras.Input((4, 4, 8)), keras.Input((4, 4, 3))
    out = AddToLastChannels()([a, b])
    assert tuple(out.shape) == (None, 4, 4, 8)
    with pytest.raises(ValueError, match="update has 3 channels, more than the 2"):
        AddToLastChannels()([keras.Input((4, 4, 2)), b])
    model = keras.Model([a, b], out)
    model.save(tmp_path / "add.keras")
    loaded = keras.saving.load_model(tmp_path / "add.keras")
    x = RNG.normal(size=(1, 4, 4, 8)).astype("float32")
    u = RNG.normal(size=(1, 4, 4, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict([x, u], verbose=0), model([x, u]))


def _kernel(shape):
    # Away from the kinks (|w| = 1 of the clip, w = 0 of abs and sign).
    w = RNG.uniform(0.05, 1.8, size=shape) * np.where(RNG.random(shape) < 0.5, -1, 1)
    w[np.abs(np.abs(w) - 1.0) < 0.05] *= 0.8
    return w.astype("float32")


def test_xnor_weight_scale_forward_and_gradient():
    w = _kernel((3, 3, 4, 5))
    dy = RNG.uniform(0.5, 1.5, size=w.shape).astype("float32")
    q, grad = value_and_grad(XnorWeightScale(), w, dy)

    wc = np.clip(w, -1, 1)
    n = 3 * 3 * 4
    alpha = np.abs(wc).sum(axis=(0, 1, 2), keepdims=True) / n  # one per filter
    np.testing.assert_allclose(q, alpha * np_sign(wc), rtol=1e-6)

    # L = Σ dy·α·s: ∂L/∂wc = α·dy·1[|wc| ≤ 1] (straight-through sign)
    # + sign(wc)·Σ_filter(dy·s)/n (through α); then the clip passes |w| < 1.
    s = np_sign(wc)
    through_alpha = np_sign(wc) * (dy * s).sum(axis=(0, 1, 2), keepdims=True) / n
    expected = (alpha * dy + through_alpha) * (np.abs(w) < 1)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)
    assert quantizers.get_precision(XnorWeightScale()) == 1


def test_magnitude_aware_sign_unclipped_forward_and_identity_gradient():
    w = _kernel((5, 7))
    dy = RNG.uniform(0.5, 1.5, size=w.shape).astype("float32")
    q, grad = value_and_grad(MagnitudeAwareSignUnclipped(), w, dy)
    np.testing.assert_allclose(q, np.abs(w).mean() * np_sign(w), rtol=1e-6)
    np.testing.assert_array_equal(grad, dy)  # also where |w| > 1: no clipping
    assert quantizers.get_precision(MagnitudeAwareSignUnclipped()) == 1
    zero = np.asarray(MagnitudeAwareSignUnclipped()(np.array([0.0, -2.0], "float32")))
    np.testing.assert_allclose(zero, [1.0, -1.0])  # sign(0) = +1, scale = 1


@pytest.mark.parametrize("cls", [XnorWeightScale, MagnitudeAwareSignUnclipped])
def test_zoo_quantizers_serialize_by_registered_name(cls):
    restored = quantizers.deserialize(quantizers.serialize(cls()))
    assert type(restored) is cls

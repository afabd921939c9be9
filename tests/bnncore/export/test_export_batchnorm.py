"""BatchNormalization folded to scale and offset, and rebuilt on load."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import safetensors.numpy
from export_models import randomize

import bnncore as lq


def bn_model(center: bool, scale: bool, epsilon: float) -> keras.Model:
    inputs = keras.Input((3, 7), name="x")
    bn = keras.layers.BatchNormalization(
        center=center, scale=scale, epsilon=epsilon, name="bn"
    )
    return keras.Model(inputs, bn(inputs), name="m")


COMBINATIONS = [
    (center, scale, epsilon)
    for center in (True, False)
    for scale in (True, False)
    for epsilon in (1e-3, 1e-5)
]


@pytest.mark.parametrize(("center", "scale", "epsilon"), COMBINATIONS)
def test_folded_scale_and_offset_give_the_same_outputs(
    center: bool, scale: bool, epsilon: float
) -> None:
    model = randomize(bn_model(center, scale, epsilon), seed=7)
    bn = model.get_layer("bn")
    values = {v.path.rpartition("/")[2]: np.float64(v.numpy()) for v in bn.weights}
    raw = safetensors.numpy.load(lq.export.to_bytes(model))
    assert set(raw) == {"bn/scale", "bn/offset"}
    # NumPy reference of the inference map y = x·s + o.
    s = values.get("gamma", 1.0) / np.sqrt(values["moving_variance"] + epsilon)
    o = values.get("beta", 0.0) - values["moving_mean"] * s
    np.testing.assert_allclose(raw["bn/scale"], s, rtol=1e-6)
    np.testing.assert_allclose(raw["bn/offset"], o, rtol=1e-5, atol=1e-6)

    fresh = bn_model(center, scale, epsilon)
    lq.export.load_weights(fresh, lq.export.to_bytes(model))
    loaded = {
        v.path.rpartition("/")[2]: v.numpy() for v in fresh.get_layer("bn").weights
    }
    if center:
        assert not loaded["moving_mean"].any()
        np.testing.assert_array_equal(loaded["beta"], raw["bn/offset"])
    if scale:
        np.testing.assert_array_equal(loaded["gamma"], raw["bn/scale"])
        assert np.all(
            loaded["moving_variance"].astype(np.float32) + np.float32(epsilon) == 1
        )
    x = np.random.default_rng(8).normal(size=(16, 3, 7)).astype("float32") * 3
    expected = model(x)
    np.testing.assert_allclose(
        x * raw["bn/scale"] + raw["bn/offset"], expected, rtol=1e-5, atol=1e-5
    )
    # The reloaded layer computes the same x·s + o, to the last bit on the
    # TensorFlow backend (the rebuilt variables are searched for that).
    np.testing.assert_array_equal(fresh(x), expected)


def test_a_batchnorm_with_extra_variables_is_stored_unfolded() -> None:
    inputs = keras.Input((4,), name="x")
    bn = keras.layers.BatchNormalization(renorm=True, name="bn")
    model = randomize(keras.Model(inputs, bn(inputs), name="m"), seed=1)
    raw = safetensors.numpy.load(lq.export.to_bytes(model))
    names = {v.path.rpartition("/")[2] for v in bn.weights}
    assert len(names) > 4  # renorm statistics, which the folded map cannot hold
    assert {key.rpartition("/")[2] for key in raw} == names

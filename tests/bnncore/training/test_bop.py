"""Bop against a NumPy reference, its hyperparameters, config and predicate."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest

from bnncore import quantizers
from bnncore.layers import (
    QuantDense,
    QuantDepthwiseConv2D,
    QuantSeparableConv2D,
)
from bnncore.optimizers import Bop, is_binary_variable


def reference_step(w, m, g, gamma, threshold):
    """Bop in its 'flip rule' form: flip w when w·m exceeds the threshold."""
    m = (m + np.float32(gamma) * (g - m)).astype(np.float32)
    sign_w = np.where(w < 0, -1.0, 1.0).astype(np.float32)
    flip = w * m > np.float32(threshold)
    return np.where(flip, -sign_w, sign_w), m


def binary_kernels(seed=0):
    keras.utils.set_random_seed(seed)
    first = QuantDense(6, kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
    first.build((None, 5))
    second = QuantDense(3, kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
    second.build((None, 7))
    return [first.kernel, second.kernel]


def run_against_reference(bop, thresholds, steps=6, gamma=0.3):
    variables = binary_kernels()
    rng = np.random.default_rng(1)
    latent = [v.numpy() for v in variables]
    assert not np.all(np.abs(latent[0]) == 1)  # the first step starts from floats
    averages = [np.zeros_like(w) for w in latent]
    flips = 0
    for step in range(steps):
        grads = [rng.normal(size=w.shape).astype(np.float32) for w in latent]
        bop.apply_gradients(zip(grads, variables, strict=True))
        for i, g in enumerate(grads):
            before = latent[i]
            latent[i], averages[i] = reference_step(
                before, averages[i], g, gamma, thresholds[step]
            )
            # The flips are compared exactly below, the averages within the
            # tolerance of the check after it: no w·m lies within that
            # tolerance of the threshold, so TensorFlow decides as NumPy does
            # however it rounds m.
            slack = 2 * np.abs(before) * (1e-6 * np.abs(averages[i]) + 1e-7)
            assert np.all(np.abs(before * averages[i] - thresholds[step]) > slack)
            if step > 0:
                flips += int(np.sum(latent[i] != before))
            np.testing.assert_array_equal(variables[i].numpy(), latent[i])
            np.testing.assert_allclose(
                bop.variables[-2 + i].numpy(), averages[i], rtol=1e-6, atol=1e-7
            )
    return latent, flips


def test_bop_matches_numpy_reference_step_by_step():
    bop = Bop(threshold=0.05, gamma=0.3)
    latent, flips = run_against_reference(bop, thresholds=[0.05] * 6)
    total = sum(w.size for w in latent)
    assert 0 < flips < 5 * total  # some weights flipped, not all of them
    for w in latent:
        assert set(np.unique(w)) <= {-1.0, 1.0}


def test_bop_threshold_schedule_is_evaluated_at_each_iteration():
    schedule = keras.optimizers.schedules.ExponentialDecay(
        0.4, decay_steps=1, decay_rate=0.5
    )
    bop = Bop(threshold=schedule, gamma=0.3)
    run_against_reference(bop, thresholds=[0.4 * 0.5**t for t in range(6)])


def test_gamma_is_the_learning_rate_variable():
    bop = Bop(threshold=1e-6, gamma=1e-3)
    assert isinstance(bop.gamma, keras.Variable)
    assert bop.gamma is bop.learning_rate
    bop.gamma = 0.25
    assert float(bop.learning_rate.numpy()) == 0.25
    bop.threshold = 0.5
    assert float(bop.threshold.numpy()) == 0.5


def test_config_round_trip():
    bop = Bop(threshold=1e-6, gamma=2e-3, clipnorm=1.0, name="binary")
    clone = Bop.from_config(bop.get_config())
    assert clone.get_config() == bop.get_config()
    assert float(clone.gamma.numpy()) == pytest.approx(2e-3)
    assert float(clone.threshold.numpy()) == pytest.approx(1e-6)
    assert clone.clipnorm == 1.0 and clone.name == "binary"

    decay = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.5)
    scheduled = Bop(threshold=decay, gamma=decay)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(scheduled))
    assert isinstance(restored, Bop)
    assert restored.get_config() == scheduled.get_config()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"gamma": 0.0}, "gamma=0.0"),
        ({"gamma": 1.5}, "gamma=1.5"),
        ({"gamma": "fast"}, "gamma='fast'"),
        ({"threshold": -1e-6}, "threshold=-1e-06"),
        ({"weight_decay": 0.1}, "weight_decay=0.1"),
        ({"learning_rate": 0.1}, "learning_rate=0.1"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field.replace("(", r"\(")):
        Bop(**kwargs)


def test_is_binary_variable_follows_the_kernel_quantizer():
    def kernel_of(layer, shape, attribute="kernel"):
        layer.build(shape)
        return getattr(layer, attribute)

    binary = QuantDense(2, kernel_quantizer="ste_sign")
    kernel = kernel_of(binary, (None, 3))
    assert is_binary_variable(kernel)
    assert not is_binary_variable(binary.bias)
    assert not is_binary_variable(kernel_of(QuantDense(2), (None, 3)))
    assert not is_binary_variable(
        kernel_of(QuantDense(2, kernel_quantizer="ste_tern"), (None, 3))
    )
    noop = QuantDense(2, kernel_quantizer=quantizers.NoOp(precision=1))
    assert is_binary_variable(kernel_of(noop, (None, 3)))
    function = QuantDense(2, kernel_quantizer=quantizers.ste_sign)
    assert is_binary_variable(kernel_of(function, (None, 3)))
    depthwise = QuantDepthwiseConv2D(3, depthwise_quantizer="ste_sign")
    assert is_binary_variable(kernel_of(depthwise, (None, 5, 5, 2)))
    separable = QuantSeparableConv2D(
        4, 3, depthwise_quantizer="approx_sign", pointwise_quantizer="ste_tern"
    )
    separable.build((None, 5, 5, 2))
    assert is_binary_variable(separable.depthwise_kernel)
    assert not is_binary_variable(separable.pointwise_kernel)
    plain = keras.layers.Dense(2)
    assert not is_binary_variable(kernel_of(plain, (None, 3)))
    tagged = keras.Variable(np.ones(3, "float32"))
    tagged.precision = 1  # Larq's convention
    assert is_binary_variable(tagged)
    assert Bop.is_binary_variable is is_binary_variable


def test_bop_warns_about_variables_that_are_not_binary(caplog):
    layer = QuantDense(2, kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
    layer.build((None, 3))
    with caplog.at_level(logging.WARNING, logger="bnncore"):
        Bop().build([layer.kernel, layer.bias])
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert layer.bias.path in messages
    assert layer.kernel.path not in messages

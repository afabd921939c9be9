"""``engine.verify``: the exactness contract, checked layer by layer.

The checker is itself tested: it must catch a step that is off by more than
its bound and a binarization decision that differs away from the threshold,
and it must find the decisions that lie at the threshold.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from engine_helpers import BINARY, randomize

from bnncore import engine
from bnncore.layers import QuantConv2D


def _float_then_binary():
    inputs = keras.Input((8, 8, 2))
    y = keras.layers.Conv2D(16, 1, use_bias=False)(inputs)
    y = keras.layers.BatchNormalization()(y)
    out = QuantConv2D(8, 3, padding="same", pad_values=1.0, **BINARY)(y)
    return keras.Model(inputs, out)


def test_a_faithful_plan_keeps_the_contract():
    model = randomize(_float_then_binary())
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 2)).astype(np.float32)
    report = engine.verify(model, x)
    assert report.ok, str(report)
    kinds = [s.step.split()[0] for s in report.steps]
    assert kinds == ["native", "binary"]  # the convolution writes packed bits
    conv = report.steps[0]
    # flipped == 0 holds on any CPU: every value before a sign is, in float64,
    # at least 1e-5 of its magnitude scale away from 0, ten times more than any
    # float32 evaluation can be off (2 products, TensorFlow's rsqrt within 2
    # ulps, 3 roundings: under 1e-6).
    values, scale = _float64_pre_signs(model, x)
    assert np.min(np.abs(values) / scale) > 1e-5
    assert conv.decisions == 3 * 8 * 8 * 16 and conv.flipped == 0
    assert "decision(s) near the threshold" in str(report)


def _float64_pre_signs(model, x):
    """The 1x1 convolution + batch norm in float64, and each value's scale
    (the sum of the magnitudes of its terms)."""
    conv, bn = model.layers[1], model.layers[2]

    def f64(v):
        return np.float64(keras.ops.convert_to_numpy(v))

    w = f64(conv.kernel).reshape(2, 16)
    inv = f64(bn.gamma) / np.sqrt(f64(bn.moving_variance) + bn.epsilon)
    shift = f64(bn.beta) - f64(bn.moving_mean) * inv
    values = (np.float64(x) @ w) * inv + shift
    scale = (np.abs(x) @ np.abs(w)) * np.abs(inv) + np.abs(f64(bn.beta))
    return values, scale + np.abs(f64(bn.moving_mean) * inv)


def test_a_step_off_by_more_than_its_bound_is_caught():
    model = randomize(_float_then_binary())
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 2)).astype(np.float32)
    packed = engine.compile(model)
    conv = packed.steps[0]
    exact = conv.conv
    conv.conv = lambda x, threads: exact(x, threads) * np.float32(1 + 1e-5)
    report = engine.verify(model, x, packed=packed)
    assert not report.ok
    assert report.steps[0].exceeded > 0
    assert report.steps[0].max_abs_diff > report.steps[0].max_bound


def test_a_decision_flipped_away_from_the_threshold_is_caught():
    model = randomize(_float_then_binary())
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 2)).astype(np.float32)
    packed = engine.compile(model)
    binary = packed.steps[-1]
    binary.kernel.panels[0, 0, 0, 0] ^= np.uint64(1)  # one weight's sign
    report = engine.verify(model, x, packed=packed)
    assert not report.ok
    assert report.steps[-1].exceeded > 0  # its float output moved by 2 per flip


def test_decisions_at_the_threshold_are_counted_and_their_samples_named():
    # Output channel 0 is x0 - x1: exactly 0 where the two input channels are
    # equal. Keras and the engine both give 0 there, but either sign would be
    # a correct rounding of a sum that cancels, so those samples are named.
    inputs = keras.Input((4, 4, 2))
    conv = keras.layers.Conv2D(2, 1, use_bias=False)
    y = conv(inputs)
    out = QuantConv2D(4, 1, **BINARY)(y)
    model = randomize(keras.Model(inputs, out))
    conv.set_weights([np.array([[[[1.0, 0.5], [-1.0, 0.25]]]], np.float32)])
    x = np.random.default_rng(1).normal(size=(4, 4, 4, 2)).astype(np.float32) + 3
    x[2, 1, 1, 1] = x[2, 1, 1, 0]  # sample 2 has one cancelling pixel
    # Exactly 0 in any float32 evaluation (1·a + (-1)·a: exact products, one
    # exactly cancelling add, with or without a fused multiply-add), so the
    # counts below hold on any CPU.
    report = engine.verify(model, x)
    assert report.ok, str(report)
    assert report.samples_near_threshold == (2,)
    assert report.steps[0].near_threshold == 1
    assert report.near_threshold == 1


def test_a_model_run_whole_in_keras_has_no_plan_to_verify():
    class Whole(keras.Model):
        def call(self, x):
            return x * 2

    model = Whole()
    model(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="runs whole in Keras"):
        engine.verify(model, np.zeros((1, 3), np.float32))

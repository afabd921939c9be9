"""Float layers: native code (Keras's own operations, or the reference order within
its bound), else Keras itself."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from engine_helpers import (
    BINARY,
    assert_matches,
    keras_forward,
    max_pool_reference,
    randomize,
)

from bnncore import engine
from bnncore.layers import QuantConv2D, QuantDense


def _steps(packed, kind):
    return [s for s in packed.steps if s.describe().startswith(kind)]


def _check(model, shape, batch=2):
    x = np.random.default_rng(1).normal(size=(batch, *shape)).astype(np.float32)
    packed = engine.compile(model, threads=2)
    got, ref = packed.predict(x), keras_forward(model, x)
    assert_matches(got, ref)
    return packed, got, ref


def _agrees(model, shape, batch=2):
    """The plan keeps the exactness contract layer by layer on this input."""
    x = np.random.default_rng(1).normal(size=(batch, *shape)).astype(np.float32)
    packed = engine.compile(model, threads=2)
    report = engine.verify(model, x, packed=packed)
    assert report.ok, str(report)
    return packed, report


@pytest.mark.parametrize(
    "layer",
    [
        keras.layers.Conv2D(16, 3, strides=2, padding="same"),  # 3 input channels
        keras.layers.Conv2D(32, 1, activation="relu"),
        keras.layers.DepthwiseConv2D(3, strides=2, padding="same"),
        keras.layers.DepthwiseConv2D(3, depth_multiplier=2, use_bias=False),
        keras.layers.Conv2D(8, 3),  # TensorFlow's own channel tail on AVX2
        QuantConv2D(24, 3, padding="same", pad_values=1.0, kernel_quantizer="ste_sign"),
    ],
    ids=str,
)
def test_every_float_convolution_runs_natively_within_the_bound(layer):
    shape = (12, 12, 3) if getattr(layer, "filters", 0) == 16 else (12, 12, 8)
    inputs = keras.Input(shape)
    y = keras.layers.BatchNormalization()(layer(inputs))
    model = randomize(keras.Model(inputs, y))
    packed, report = _agrees(model, shape)
    (step,) = _steps(packed, "native conv")
    assert len(step.fused) == 2  # the batch norm folded in
    (record,) = [r for r in report.steps if r.step.startswith("native conv")]
    # Compared twice: the convolution's own output, then the folded batch norm's.
    size = math.prod(packed.predict(np.zeros((2, *shape))).shape)
    assert record.values == 2 * size
    # The bound is the summation length's, not a blanket tolerance: far below
    # the outputs' magnitude.
    ref = keras_forward(model, np.ones((1, *shape), np.float32))[0]
    assert 0 < record.max_bound < 1e-4 * max(1.0, float(np.max(np.abs(ref))))


def test_float_convolution_before_a_binarization_keeps_every_decision():
    # A float conv + batch norm whose sign a binary layer reads: each decision
    # is Keras's unless Keras's own value lies within the rounding bound of 0.
    inputs = keras.Input((10, 10, 16))
    y = keras.layers.Conv2D(64, 3, padding="same")(inputs)
    y = keras.layers.BatchNormalization()(y)
    out = QuantConv2D(8, 3, padding="same", pad_values=1.0, **BINARY)(y)
    model = randomize(keras.Model(inputs, out))
    packed, report = _agrees(model, (10, 10, 16), batch=4)
    (conv,) = [r for r in report.steps if r.step.startswith("native conv")]
    assert conv.decisions == 4 * 10 * 10 * 64
    assert conv.flipped <= conv.near_threshold
    x = np.random.default_rng(1).normal(size=(4, 10, 10, 16)).astype(np.float32)
    keep = [i for i in range(4) if i not in report.samples_near_threshold]
    got, ref = packed.predict(x)[keep], keras_forward(model, x)[0][keep]
    assert_matches(got, [ref])


def test_float_convolution_writes_packed_bits_for_a_binary_reader():
    inputs = keras.Input((8, 8, 4))
    y = keras.layers.Conv2D(64, 1, use_bias=False)(inputs)
    y = keras.layers.BatchNormalization()(y)
    out = QuantConv2D(8, 3, padding="same", pad_values=1.0, **BINARY)(y)
    model = randomize(keras.Model(inputs, out))
    packed, _, _ = _check(model, (8, 8, 4))
    (conv,) = _steps(packed, "native conv")
    assert conv.packed_groups == 1 and not conv.float_out
    assert [s.kind for s in packed.steps] == ["float", "binary"]


def test_terminal_layers_run_natively_only_when_never_binarized():
    inputs = keras.Input((6, 6, 8))
    y = QuantConv2D(16, 3, padding="same", **BINARY)(inputs)
    y = keras.layers.GlobalAveragePooling2D()(y)
    y = keras.layers.Dense(20)(y)  # read by a binary layer: stays in Keras
    y = QuantDense(10, **BINARY)(y)
    y = keras.layers.Dense(5)(y)  # terminal: native
    out = keras.layers.Activation("softmax")(y)
    model = randomize(keras.Model(inputs, out))
    packed, _, _ = _check(model, (6, 6, 8))
    lines = packed.describe().splitlines()
    dense_20, dense_5 = model.layers[3].name, model.layers[5].name
    assert f"keras {dense_20}" in lines and f"native {dense_5}" in lines
    assert f"keras {model.layers[2].name}" in lines  # the pooling feeds a sign


def test_native_pooling_adds_and_concatenation_are_exact():
    a, b = keras.Input((7, 7, 6)), keras.Input((7, 7, 6))
    p = keras.layers.MaxPooling2D(3, strides=2, padding="same")(a)
    q = keras.layers.MaxPooling2D(2)(b)
    s = keras.layers.Add()([p[:, :3, :3, :], q, q])
    c = keras.layers.Concatenate()([s, q])
    r = keras.layers.ReLU()(keras.layers.Flatten()(c))
    model = keras.Model([a, b], r)
    x = [np.random.default_rng(s).normal(size=(2, 7, 7, 6)).astype(np.float32)
         for s in (1, 2)]  # fmt: skip
    packed = engine.compile(model)
    native = [s.describe() for s in packed.steps if s.kind == "float"]
    assert len(native) >= 5
    # Oracle: the same operations in NumPy float32 (max is a selection, each add
    # one IEEE rounding, in Keras's order ((p + q) + q)): exact on any CPU.
    p_ref = max_pool_reference(x[0], 3, 2, pads=(1, 1))
    q_ref = max_pool_reference(x[1], 2, 2)
    s_ref = (p_ref[:, :3, :3, :] + q_ref) + q_ref
    c_ref = np.concatenate([s_ref, q_ref], axis=-1)
    expected = np.maximum(c_ref.reshape(2, -1), np.float32(0))
    got = packed.predict(x)
    np.testing.assert_array_equal(got, expected)
    # TensorFlow's kernels only within float32 rounding: never its bits.
    assert_matches(got, keras_forward(model, x))

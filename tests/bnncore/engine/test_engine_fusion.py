"""Folding of the layers after a binary layer, packed outputs and packed pooling."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from engine_helpers import (
    BINARY,
    assert_matches,
    batch_norm_reference,
    binary_steps,
    conv_oracle,
    keras_forward,
    randomize,
    sign32,
)

from bnncore import engine
from bnncore.layers import QuantConv2D, QuantDense


def _compile_and_check(model, shape, batch=3, seed=1):
    x = np.random.default_rng(seed).normal(size=(batch, *shape)).astype(np.float32)
    packed = engine.compile(model, threads=2)
    assert_matches(packed.predict(x), keras_forward(model, x))
    return packed, x


def test_batch_norm_activation_and_residual_fold_bit_exactly():
    inputs = keras.Input((8, 8, 16))
    y = QuantConv2D(16, 3, padding="same", pad_values=1.0, activation="relu", **BINARY)(
        inputs
    )
    y = keras.layers.BatchNormalization(epsilon=1e-5)(y)
    y = keras.layers.Activation("hard_tanh")(y)
    y = keras.layers.Dropout(0.5)(y)
    out = keras.layers.Add()([y, inputs])
    model = randomize(keras.Model(inputs, out))
    packed, x = _compile_and_check(model, (8, 8, 16))
    (step,) = binary_steps(packed)
    assert len(step.fused) == 5 and step.residual is not None
    assert len(packed.steps) == 2  # pack the input, then one fused binary step
    # The epilogue repeats Keras's float32 operations in order, so it equals
    # them done in NumPy float32 (IEEE, no fused multiply-add): the ±1 dot
    # products (exact integers), + bias, ReLU, x * inv + shift (TensorFlow's
    # inv and shift, as the layer computes them), hard tanh, + the residual.
    # TensorFlow's own kernels are compared above within float32 rounding only.
    conv, bn = model.layers[1], model.layers[2]
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in (conv.kernel, conv.bias))
    dots = conv_oracle(
        sign32(x), sign32(kernel), (1, 1), (1, 1), ((1, 1), (1, 1)), 1.0, 1
    )
    y = np.maximum(dots.astype(np.float32) + bias, np.float32(0))
    inv, shift = batch_norm_reference(bn)
    y = np.clip(y * inv + shift, np.float32(-1), np.float32(1))
    np.testing.assert_array_equal(packed.predict(x), y + x)


def test_operator_add_and_relu_layer_fold_too():
    inputs = keras.Input((6, 6, 8))
    y = QuantConv2D(8, 3, padding="same", **BINARY)(inputs)
    y = keras.layers.ReLU()(y)
    out = inputs + y  # a keras.ops add, not an Add layer
    model = randomize(keras.Model(inputs, out))
    packed, _ = _compile_and_check(model, (6, 6, 8))
    (step,) = binary_steps(packed)
    assert step.residual is not None and len(step.fused) == 3


def test_output_is_written_packed_when_only_binary_layers_read_it():
    inputs = keras.Input((10, 10, 8))
    y = QuantConv2D(70, 3, padding="same", **BINARY)(inputs)
    y = keras.layers.BatchNormalization()(y)
    y = QuantConv2D(6, 3, strides=2, **BINARY)(y)
    model = randomize(keras.Model(inputs, y))
    packed, _ = _compile_and_check(model, (10, 10, 8))
    first, second = binary_steps(packed)
    assert first.packed_groups == 1 and not first.float_out
    assert second.float_out
    assert [s.kind for s in packed.steps] == ["pack", "binary", "binary"]


def test_value_read_by_binary_and_float_layers_is_written_both_ways():
    inputs = keras.Input((6, 6, 8))
    y = QuantConv2D(8, 3, padding="same", **BINARY)(inputs)
    y = keras.layers.BatchNormalization()(y)
    a = QuantConv2D(4, 1, **BINARY)(y)
    b = keras.layers.Conv2D(4, 1)(y)
    model = randomize(keras.Model(inputs, [a, b]))
    packed, _ = _compile_and_check(model, (6, 6, 8))
    first = binary_steps(packed)[0]
    assert first.float_out and first.packed_groups == 1


def test_readers_with_different_groups_get_their_own_layout():
    inputs = keras.Input((6, 6, 12))
    y = QuantConv2D(12, 3, padding="same", **BINARY)(inputs)
    y = keras.layers.BatchNormalization()(y)
    a = QuantConv2D(6, 3, groups=3, **BINARY)(y)
    b = QuantConv2D(4, 3, groups=2, **BINARY)(y)
    c = QuantConv2D(6, 1, groups=3, **BINARY)(y)
    model = randomize(keras.Model(inputs, [a, b, c]))
    packed, _ = _compile_and_check(model, (6, 6, 12))
    assert len(binary_steps(packed)) == 4
    assert sum(s.kind == "pack" for s in packed.steps) == 2  # model input + groups=2


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_max_pool_runs_on_packed_bits_with_decreasing_channels(padding):
    # conv -> pool -> BN (some gammas negative: those channels take the min) -> conv
    inputs = keras.Input((9, 9, 8))
    y = QuantConv2D(20, 3, padding="same", **BINARY)(inputs)
    y = keras.layers.MaxPooling2D(3, strides=2, padding=padding)(y)
    y = keras.layers.BatchNormalization()(y)
    y = QuantConv2D(5, 3, padding="same", **BINARY)(y)
    model = randomize(keras.Model(inputs, y), seed=3)
    gamma = model.layers[3].get_weights()[0]
    assert (gamma < 0).any() and (gamma > 0).any()
    packed, _ = _compile_and_check(model, (9, 9, 8))
    first = binary_steps(packed)[0]
    assert first.pool is not None and first.pool[3] is not None  # OR mask in use
    assert not first.float_out


def test_flatten_into_dense_uses_pixel_packed_kernel():
    # 20 channels are not a multiple of 64: the dense kernel is packed per pixel.
    inputs = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(8, 3)(inputs)
    y = QuantConv2D(20, 3, **BINARY)(y)
    y = keras.layers.MaxPooling2D(2)(y)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.Flatten()(y)
    y = QuantDense(7, **BINARY)(y)
    y = keras.layers.BatchNormalization()(y)
    y = QuantDense(3, **BINARY)(y)
    out = keras.layers.Activation("softmax")(y)
    model = randomize(keras.Model(inputs, out))
    packed, _ = _compile_and_check(model, (8, 8, 3))
    conv, dense, last = binary_steps(packed)
    assert conv.flatten and conv.pool is not None
    assert dense.kernel.shape == (1, 4, 20, 7)  # 2x2 pixels of 20 channels
    assert dense.packed_groups == 1 and not dense.float_out
    assert last.float_out


def test_chain_stops_at_values_with_several_readers_or_model_outputs():
    inputs = keras.Input((12,))
    y = QuantDense(9, **BINARY)(inputs)
    z = keras.layers.BatchNormalization()(y)  # y is read twice: BN does not fold
    out = keras.layers.Concatenate()([y, z])
    model = randomize(keras.Model(inputs, [out, y]))
    packed, _ = _compile_and_check(model, (12,))
    (step,) = binary_steps(packed)
    assert step.fused == [step.name]

"""Which layers the runtime runs: the engine's native set, each equal to the
engine bit for bit, and a clear refusal, naming the layer, for the rest."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from runtime_models import export, randomize

import bnncore_runtime
from bnncore import engine
from bnncore.layers import QuantConv2D, QuantDense
from bnncore.layers.forward import same_padding_amounts
from bnncore_runtime.geometry import same_padding

SIGN = {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign"}


def test_same_padding_is_keras_layers_own():
    for size in range(1, 12):
        for kernel in (1, 2, 3, 5):
            for stride in (1, 2, 3):
                for dilation in (1, 2):
                    assert same_padding(size, kernel, stride, dilation) == (
                        same_padding_amounts(size, kernel, stride, dilation)
                    )


def _many_layers() -> keras.Model:
    """Every layer class the runtime reads, in one small model."""
    inputs = keras.Input((9, 9, 4), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu6", name="c0")(inputs)
    x = keras.layers.BatchNormalization(name="bn0")(x)
    y = QuantConv2D(8, 3, padding="same", pad_values=1.0, name="b0", **SIGN)(x)
    y = keras.layers.BatchNormalization(name="bn1")(y)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.ReLU(name="relu")(x)
    z = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.Concatenate(name="cat")([x, z])
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    x = keras.layers.Activation("hard_tanh", name="tanh")(x)
    y = QuantConv2D(16, 2, strides=2, name="b1", **SIGN)(x)
    y = keras.layers.Flatten(name="flat")(y)
    y = QuantDense(12, name="b2", **SIGN)(y)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Concatenate(name="cat2")([x, y])
    x = keras.layers.Dense(5, name="head")(x)
    outputs = keras.layers.Softmax(name="probs")(x)
    return keras.Model(inputs, outputs, name="many")


def test_every_supported_layer_class_equals_the_engine(tmp_path, runtime_isa):
    model = randomize(_many_layers(), seed=5)
    loaded = bnncore_runtime.load(export(model, tmp_path))
    packed = engine.compile(model)
    assert loaded.describe() == packed.describe()
    assert "keras" not in packed.describe()  # all native in the engine too
    x = np.random.default_rng(2).normal(size=(3, 9, 9, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), packed.predict(x))


def test_binary_1d_convolutions_equal_the_engine(tmp_path, runtime_isa):
    from bnncore.layers import QuantConv1D

    inputs = keras.Input((16, 5), name="signal")
    x = QuantConv1D(8, 3, padding="causal", dilation_rate=2, name="c0", **SIGN)(inputs)
    x = keras.layers.BatchNormalization(name="bn0")(x)
    x = QuantConv1D(8, 3, strides=2, padding="same", pad_values=1.0, use_bias=True,
                    name="c1", **SIGN)(x)  # fmt: skip
    x = keras.layers.Flatten(name="flat")(x)
    x = QuantDense(4, name="d", **SIGN)(x)
    outputs = keras.layers.Activation("softmax", name="probs")(x)
    model = randomize(keras.Model(inputs, outputs, name="conv1d"), seed=8)
    loaded = bnncore_runtime.load(export(model, tmp_path))
    packed = engine.compile(model)
    assert loaded.describe() == packed.describe()
    assert "binary conv1d c0" in loaded.describe()
    x = np.random.default_rng(3).normal(size=(3, 16, 5)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), packed.predict(x))


def _refused(build) -> keras.Model:
    inputs = keras.Input((6, 6, 3), name="image")
    return randomize(keras.Model(inputs, build(inputs), name="refused"))


REFUSALS = {
    "activation the core lacks": (
        lambda x: keras.layers.Conv2D(4, 3, activation="tanh", name="odd")(x),
        "layer 'odd' (Conv2D) cannot run in the compiled core: activation 'tanh'",
    ),
    "float dense deciding a sign": (
        lambda x: QuantDense(2, name="bin", **SIGN)(
            keras.layers.Dense(4, name="float_dense")(keras.layers.Flatten()(x))
        ),
        "layer 'float_dense' (Dense) cannot run in the compiled core: its result "
        "reaches a binarization",
    ),
    "unknown layer class": (
        lambda x: keras.layers.AveragePooling2D(2, name="avg")(x),
        "layer 'avg' (AveragePooling2D): the runtime does not run this layer class",
    ),
    "batch norm over another axis": (
        lambda x: keras.layers.BatchNormalization(axis=1, name="bn_h")(x),
        "layer 'bn_h' (BatchNormalization) cannot run in the compiled core: it "
        "normalizes axis 1",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_layer_the_core_does_not_run_is_refused_by_name(case, tmp_path):
    build, message = REFUSALS[case]
    model = _refused(build)
    with pytest.raises(bnncore_runtime.UnsupportedLayerError) as raised:
        bnncore_runtime.load(export(model, tmp_path))
    assert message in str(raised.value)
    assert "bnncore.engine" in str(raised.value)  # where to run it instead
    # The engine runs that layer through Keras: never natively.
    name = message.split("'")[1]
    assert f"keras {name}" in engine.compile(model).describe().splitlines()


@pytest.mark.parametrize(
    ("shape", "kind", "pixels", "groups", "scale"),
    [
        ((3, 3, 70, 5), "conv", 1, 1, None),
        ((3, 3, 8, 6), "conv", 1, 2, "ones"),
        ((1, 3, 130, 4), "conv", 1, 1, "random"),
        ((48, 7), "dense", 1, 1, "random"),
        ((48, 7), "dense", 4, 1, None),
        ((3, 3, 4, 5), "conv", 1, 1, "a zero"),
    ],
)
def test_kernels_packed_from_their_bits_equal_those_packed_from_values(
    shape, kind, pixels, groups, scale
):
    from bnncore_runtime import natives

    rng = np.random.default_rng(7)
    negative = rng.random(shape) < 0.5
    channel = {
        None: None,
        "ones": np.ones(shape[-1], np.float32),
        "random": rng.uniform(0.1, 2.0, shape[-1]).astype(np.float32),
        "a zero": np.r_[np.zeros(1), np.ones(shape[-1] - 1)].astype(np.float32),
    }[scale]
    values = np.where(negative, np.float32(-1), np.float32(1))
    if channel is not None:
        values = values * channel
    want = natives.binary_kernel(values, kind, pixels, groups)
    got = natives.binary_kernel_from_signs(negative, channel, kind, pixels, groups)
    if want is None:
        assert got is None
        return
    assert got is not None and got.shape == want.shape
    np.testing.assert_array_equal(got.panels, want.panels)
    if want.scale is None:
        assert got.scale is None
    else:
        np.testing.assert_array_equal(got.scale, want.scale)

"""A zoo model: QuickNet at 224×224×3 (Larq Zoo: 13.23 M parameters, 4.17 MiB)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import safetensors.numpy

import bnncore as lq
import bnncore.zoo

HEADER_ALLOWANCE = 16 * 1024  # the documented fixed allowance for the header


@pytest.fixture(scope="module")
def quicknet() -> keras.Model:
    return bnncore.zoo.get("QuickNet")(input_shape=(224, 224, 3))


def test_quicknet_file_is_within_two_percent_of_the_profile(
    quicknet: keras.Model,
) -> None:
    data = lq.export.to_bytes(quicknet)
    memory = lq.models.profile(quicknet).totals.memory_bytes
    assert memory / 2**20 == pytest.approx(4.17, abs=0.005)  # Larq Zoo's figure
    assert len(data) <= 1.02 * memory + HEADER_ALLOWANCE
    # By hand from the file's own tensors: each binary kernel takes
    # ceil(weights / 8) bytes, everything else 4 bytes per value.
    raw = safetensors.numpy.load(data)
    binary = {
        layer.name: math.prod(layer.kernel.shape)
        for layer in quicknet.layers
        if isinstance(layer, lq.layers.QuantConv2D)
    }
    assert len(binary) == 16
    for name, weights in binary.items():
        assert raw[f"{name}/kernel"].shape == (math.ceil(weights / 8),)
    floats = sum(a.size for k, a in raw.items() if a.dtype == np.float32)
    payload = sum(math.ceil(w / 8) for w in binary.values()) + 4 * floats
    assert payload == len(data) - 8 - int.from_bytes(data[:8], "little")
    assert abs(payload - memory) <= 0.02 * memory


def test_quicknet_round_trip_predicts_the_same(quicknet: keras.Model) -> None:
    rng = np.random.default_rng(0)
    for variable in quicknet.weights:  # as if trained (the blur pool stays fixed)
        kind = variable.path.rpartition("/")[2]
        value = variable.numpy()
        if kind == "moving_variance":
            value = rng.uniform(0.5, 2.0, value.shape)
        elif kind == "moving_mean":
            value = rng.normal(0, 0.1, value.shape)
        elif variable.trainable:
            value = value + rng.normal(0, 0.05, value.shape)
        variable.assign(value.astype("float32"))
    rebuilt = keras.models.model_from_json(quicknet.to_json())
    data = lq.export.to_bytes(quicknet)
    lq.export.load_weights(rebuilt, data)
    x = rng.uniform(0, 1, size=(1, 224, 224, 3)).astype("float32")
    assert_each_layer_reloaded(quicknet, rebuilt, safetensors.numpy.load(data), x)


def assert_each_layer_reloaded(
    original: keras.Model, rebuilt: keras.Model, raw: dict, x: np.ndarray
) -> None:
    """Layer by layer, on the original's own values (a difference is reported
    at the layer that makes it), bit for bit on any CPU: every layer but the
    batch norms is the same TensorFlow op on the same values in this process;
    a reloaded batch norm computes x·inv + o with the inv and o the original
    computed here (``batchnorm.unfold`` searched them with the layer's own
    operation on its own channels), which is also the stored scale and offset
    applied in NumPy float32 (one IEEE product, one IEEE sum)."""
    layers = list(original.layers[1:])
    tensors = [layer.input for layer in layers] + [layer.output for layer in layers]
    values = keras.Model(original.inputs[0], tensors)(x)
    inputs, outputs = values[: len(layers)], values[len(layers) :]
    norms = 0
    for layer, given, want in zip(layers, inputs, outputs, strict=True):
        got = np.asarray(rebuilt.get_layer(layer.name)(given, training=False))
        np.testing.assert_array_equal(got, np.asarray(want), err_msg=layer.name)
        if isinstance(layer, keras.layers.BatchNormalization):
            norms += 1
            s, o = raw[f"{layer.name}/scale"], raw[f"{layer.name}/offset"]
            oracle = np.asarray(given) * s + o
            np.testing.assert_array_equal(got, oracle, err_msg=layer.name)
    assert norms == sum(key.endswith("/offset") for key in raw) == 22

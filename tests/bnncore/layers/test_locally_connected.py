"""LocallyConnected1D/2D (float and quantized) against a NumPy loop.

The reference follows Keras 2's ``implementation=1`` layout: one kernel row
block per output position (row-major), each input patch flattened in the
input's own axis order, and a bias of shape ``(*output_spatial, filters)``
reshaped to the output layout.
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
from layer_helpers import np_sign, random_array, set_random_weights, sprinkle_zeros

import bnncore.layers as bl


def local_reference(x, kernel, bias, kernel_size, strides, data_format):
    channels_last = data_format == "channels_last"
    spatial = x.shape[1:-1] if channels_last else x.shape[2:]
    out = [
        (size - k) // s + 1
        for size, k, s in zip(spatial, kernel_size, strides, strict=True)
    ]
    batch = x.shape[0]
    result = np.zeros((batch, int(np.prod(out)), kernel.shape[-1]))
    for p, position in enumerate(itertools.product(*(range(o) for o in out))):
        window = tuple(
            slice(i * s, i * s + k)
            for i, s, k in zip(position, strides, kernel_size, strict=True)
        )
        if channels_last:
            patch = x[(slice(None), *window, slice(None))]
        else:
            patch = x[(slice(None), slice(None), *window)]
        result[:, p, :] = patch.reshape(batch, -1) @ kernel[p]
    result = result.reshape(batch, *out, kernel.shape[-1])
    if not channels_last:
        result = np.moveaxis(result, -1, 1)
    if bias is not None:
        result = result + (
            bias if channels_last else bias.reshape(kernel.shape[-1], *out)
        )
    return result


# (class, kwargs, input shape, expected kernel shape, expected output shape)
CASES = [
    pytest.param(
        1,
        {"filters": 3, "kernel_size": 3},
        (2, 6, 2),
        (4, 6, 3),
        (2, 4, 3),
        id="1d-basic",
    ),
    pytest.param(
        1,
        {"filters": 2, "kernel_size": 2, "strides": 3, "use_bias": False},
        (2, 8, 3),
        (3, 6, 2),
        (2, 3, 2),
        id="1d-stride3-nobias",
    ),
    pytest.param(
        1,
        {"filters": 2, "kernel_size": 3, "strides": 2, "data_format": "channels_first"},
        (2, 3, 7),
        (3, 9, 2),
        (2, 2, 3),
        id="1d-channels_first-stride2",
    ),
    pytest.param(
        2,
        {"filters": 2, "kernel_size": (2, 3)},
        (2, 4, 5, 3),
        (9, 18, 2),
        (2, 3, 3, 2),
        id="2d-basic",
    ),
    pytest.param(
        2,
        {"filters": 3, "kernel_size": 2, "strides": (2, 1), "activation": "relu"},
        (1, 5, 4, 2),
        (6, 8, 3),
        (1, 2, 3, 3),
        id="2d-strides21-relu",
    ),
    pytest.param(
        2,
        {
            "filters": 2,
            "kernel_size": (3, 2),
            "strides": 2,
            "data_format": "channels_first",
        },
        (2, 3, 5, 6),
        (6, 18, 2),
        (2, 2, 2, 3),
        id="2d-channels_first-stride2",
    ),
    pytest.param(
        2,
        {
            "filters": 4,
            "kernel_size": 2,
            "data_format": "channels_first",
            "use_bias": False,
        },
        (1, 2, 3, 3),
        (4, 8, 4),
        (1, 4, 2, 2),
        id="2d-channels_first-nobias",
    ),
]

FLOAT = {1: bl.LocallyConnected1D, 2: bl.LocallyConnected2D}
QUANT = {1: bl.QuantLocallyConnected1D, 2: bl.QuantLocallyConnected2D}


def _reference(layer, x, kernel, bias):
    k = layer.kernel_size
    s = layer.strides
    y = local_reference(x, kernel, bias, k, s, layer.data_format)
    return np.maximum(y, 0) if layer.get_config()["activation"] == "relu" else y


def _expected_shapes(kwargs, kernel_shape, out_shape):
    channels_last = kwargs.get("data_format", "channels_last") == "channels_last"
    out_spatial = out_shape[1:-1] if channels_last else out_shape[2:]
    return kernel_shape, (*out_spatial, kernel_shape[-1])


@pytest.mark.parametrize(
    ("rank", "kwargs", "shape", "kernel_shape", "out_shape"), CASES
)
def test_float_layer_matches_numpy_loop(rank, kwargs, shape, kernel_shape, out_shape):
    rng = np.random.default_rng(2)
    layer = FLOAT[rank](**kwargs)
    layer.build(shape)
    kernel_expected, bias_expected = _expected_shapes(kwargs, kernel_shape, out_shape)
    assert tuple(layer.kernel.shape) == kernel_expected
    if kwargs.get("use_bias", True):
        assert tuple(layer.bias.shape) == bias_expected
    else:
        assert layer.bias is None
    values = set_random_weights([layer], rng)
    x = random_array(shape, rng)
    y = keras.ops.convert_to_numpy(layer(x))
    assert y.shape == out_shape
    assert tuple(layer.compute_output_shape(shape)) == out_shape
    expected = _reference(layer, x, values["kernel"], values.get("bias"))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("rank", "kwargs", "shape", "kernel_shape", "out_shape"), CASES
)
def test_quant_layer_with_signs_matches_numpy_loop(
    rank, kwargs, shape, kernel_shape, out_shape
):
    rng = np.random.default_rng(3)
    layer = QUANT[rank](
        **kwargs,
        input_quantizer="ste_sign",
        kernel_quantizer="ste_sign",
        kernel_constraint="weight_clip",
    )
    layer.build(shape)
    values = set_random_weights([layer], rng)
    x = sprinkle_zeros(random_array(shape, rng), rng)
    y = keras.ops.convert_to_numpy(layer(x))
    expected = _reference(
        layer, np_sign(x), np_sign(values["kernel"]), values.get("bias")
    )
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-5)


def test_unknown_batch_size_in_a_functional_model():
    rng = np.random.default_rng(4)
    inputs = keras.Input((5, 4, 2))
    layer = bl.LocallyConnected2D(3, 2)
    model = keras.Model(inputs, layer(inputs))
    values = set_random_weights([layer], rng)
    x = random_array((3, 5, 4, 2), rng)
    expected = local_reference(
        x, values["kernel"], values["bias"], (2, 2), (1, 1), "channels_last"
    )
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-5)


def test_float_layer_takes_bnncore_activation_and_constraint_names():
    rng = np.random.default_rng(5)
    layer = bl.LocallyConnected1D(
        2, 2, activation="ste_sign", kernel_constraint="weight_clip"
    )
    layer.build((2, 4, 3))
    clone = bl.LocallyConnected1D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    values = set_random_weights([layer], rng)
    x = random_array((2, 4, 3), rng)
    before = local_reference(
        x, values["kernel"], values["bias"], (2,), (1,), "channels_last"
    )
    # Signs compared exactly, so on any CPU: no value before the sign lies
    # within 1e-5 of its terms' magnitude from 0, over twenty times what any
    # float32 sum of these 7 terms can be off (gamma_7 = 4.2e-7, any order,
    # fused or not).
    magnitude = local_reference(
        np.abs(x), np.abs(values["kernel"]), np.abs(values["bias"]),
        (2,), (1,), "channels_last",
    )  # fmt: skip
    assert np.min(np.abs(before) / magnitude) > 1e-5
    expected = np_sign(before)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), expected)
    assert type(layer.kernel_constraint).__name__ == "WeightClip"

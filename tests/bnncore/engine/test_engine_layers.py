"""Binary layers compiled alone equal the Keras layer's forward pass."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from engine_helpers import BINARY, assert_matches, binary_steps, keras_forward
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bnncore import engine, quantizers
from bnncore.layers import QuantConv1D, QuantConv2D, QuantDense


def _single(layer, shape, seed=0, batch=2):
    inputs = keras.Input(shape)
    model = keras.Model(inputs, layer(inputs))
    rng = np.random.default_rng(seed)
    model.set_weights(
        [rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()]
    )
    x = rng.normal(size=(batch, *shape)).astype(np.float32)
    return model, x


def _check(model, x, binary=True):
    packed = engine.compile(model, threads=2)
    assert len(binary_steps(packed)) == (1 if binary else 0), packed.describe()
    assert_matches(packed.predict(x), keras_forward(model, x))
    return packed


@pytest.mark.parametrize(
    "kwargs",
    [
        {"padding": "valid"},
        {"padding": "same", "pad_values": 0.0},
        {"padding": "same", "pad_values": 1.0},
        {"padding": "same", "strides": 2},
        {"padding": "same", "strides": (2, 1), "pad_values": 1.0},
        {"padding": "valid", "dilation_rate": 2},
        {"padding": "same", "dilation_rate": (2, 3), "pad_values": 0.0},
        {"padding": "same", "groups": 2, "pad_values": 1.0},
        {"padding": "valid", "groups": 4, "strides": 2},
        {"padding": "same", "use_bias": True, "activation": "relu"},
        {"padding": "same", "activation": "hard_tanh", "kernel_size": (2, 4)},
        {"padding": "same", "activation": "ste_sign", "strides": 3},
    ],
)
def test_quant_conv2d_configurations(kwargs):
    kwargs = {"filters": 12, "kernel_size": 3, "use_bias": False, **kwargs}
    model, x = _single(QuantConv2D(**kwargs, **BINARY), (9, 10, 16))
    _check(model, x)


@st.composite
def conv2d_configs(draw):
    groups = draw(st.sampled_from([1, 1, 2]))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    strided = draw(st.booleans())
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if strided else (1, 1)
    dilation = (1, 1) if strided else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    return {
        "filters": groups * draw(st.integers(1, 6)),
        "kernel_size": k,
        "strides": strides,
        "dilation_rate": dilation,
        "padding": draw(st.sampled_from(["valid", "same"])),
        "pad_values": float(draw(st.integers(0, 1))),
        "groups": groups,
        "use_bias": draw(st.booleans()),
        "cin": groups * draw(st.integers(1, 40)),
        "h": draw(st.integers(k[0] * 2, 9)),
        "w": draw(st.integers(k[1] * 2, 9)),
        "seed": draw(st.integers(0, 1000)),
    }


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=conv2d_configs())
def test_random_quant_conv2d_equals_keras(config):
    cin, h, w, seed = (config.pop(k) for k in ("cin", "h", "w", "seed"))
    model, x = _single(QuantConv2D(**config, **BINARY), (h, w, cin), seed=seed)
    _check(model, x)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"padding": "valid"},
        {"padding": "same", "pad_values": 1.0, "strides": 2},
        {"padding": "same", "pad_values": 0.0, "dilation_rate": 2},
        {"padding": "causal", "pad_values": 0.0, "dilation_rate": 2},
        # Causal padding pads with zeros only (pad_values=1 is refused, as in Larq).
        {"padding": "causal", "use_bias": True},
        {"padding": "same", "groups": 3},
    ],
)
def test_quant_conv1d_configurations(kwargs):
    kwargs = {"filters": 9, "kernel_size": 3, "use_bias": False, **kwargs}
    model, x = _single(QuantConv1D(**kwargs, **BINARY), (13, 24))
    _check(model, x)


@pytest.mark.parametrize(
    ("units", "shape", "use_bias"),
    [(10, (70,), True), (64, (128,), False), (5, (3, 33), True), (130, (200,), True)],
)
def test_quant_dense(units, shape, use_bias):
    model, x = _single(QuantDense(units, use_bias=use_bias, **BINARY), shape, batch=3)
    _check(model, x)


@pytest.mark.parametrize(
    "quantizer", ["approx_sign", "swish_sign", quantizers.SteSign(2.0)]
)
def test_other_sign_input_quantizers(quantizer):
    layer = QuantDense(
        8,
        input_quantizer=quantizer,
        kernel_quantizer="ste_sign",
        kernel_constraint="weight_clip",
    )
    model, x = _single(layer, (20,))
    _check(model, x)


def test_magnitude_aware_kernel_folds_its_scale():
    layer = QuantConv2D(
        8,
        3,
        padding="same",
        input_quantizer="ste_sign",
        kernel_quantizer="magnitude_aware_sign",
        kernel_constraint="weight_clip",
        use_bias=False,
    )
    model, x = _single(layer, (6, 6, 20))
    packed = _check(model, x)
    (step,) = binary_steps(packed)
    assert step.kernel.scale is not None and step.kernel.scale.shape == (8,)


@pytest.mark.parametrize(
    "layer",
    [
        # not binary: float input, ternary kernel, {0, 1} input, padding with 0.5
        QuantConv2D(4, 3, kernel_quantizer="ste_sign", kernel_constraint="weight_clip"),
        QuantConv2D(4, 3, input_quantizer="ste_sign", kernel_quantizer="ste_tern"),
        QuantDense(4, input_quantizer="ste_heaviside", kernel_quantizer="ste_sign",
                   kernel_constraint="weight_clip"),
        QuantConv2D(4, 3, padding="same", pad_values=0.5, **BINARY),
        QuantConv2D(4, 3, activation="tanh", **BINARY),
    ],
)  # fmt: skip
def test_layers_that_do_not_qualify_still_compile_exactly(layer):
    model, x = _single(layer, (6, 6, 5))
    _check(model, x, binary=False)

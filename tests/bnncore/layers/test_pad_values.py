"""``pad_values`` against an input padded by hand with NumPy.

The oracle pads with ``np.pad(..., constant_values=v)`` and runs the layer's
Keras parent with ``padding="valid"``. The hand-computed padding amounts are
first checked against Keras's own ``padding="same"`` (with zeros), so the
oracle does not rest on the code under test.
"""

from __future__ import annotations

from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_helpers import build, np_sign, random_array, set_random_weights

import bnncore.layers as bl

KL = keras.layers


def same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's SAME rule: output ceil(size / stride), extra pad at the end."""
    span = (kernel - 1) * dilation + 1
    total = max((-(-size // stride) - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def hand_widths(shape, kwargs):
    """``np.pad`` widths (one ``(before, after)`` pair per axis) of the padding."""
    rank = len(shape) - 2
    channels_first = kwargs.get("data_format") == "channels_first"
    spatial = shape[2:] if channels_first else shape[1:-1]

    def as_tuple(v):
        return (v,) * rank if isinstance(v, int) else tuple(v)

    kernel = as_tuple(kwargs["kernel_size"])
    strides = as_tuple(kwargs.get("strides", 1))
    dilation = as_tuple(kwargs.get("dilation_rate", 1))
    if kwargs["padding"] == "causal":
        pads = [((kernel[0] - 1) * dilation[0], 0)]
    else:
        pads = [
            same_pads(n, k, s, d)
            for n, k, s, d in zip(spatial, kernel, strides, dilation, strict=True)
        ]
    return [(0, 0), (0, 0), *pads] if channels_first else [(0, 0), *pads, (0, 0)]


def hand_pad(x, kwargs, value):
    return np.pad(x, hand_widths(x.shape, kwargs), constant_values=value)


# (quantized class, parent class, kwargs with padding, input shape)
CASES = [
    pytest.param(
        bl.QuantConv1D,
        KL.Conv1D,
        {"filters": 2, "kernel_size": 3, "padding": "same"},
        (2, 5, 2),
        id="conv1d-k3",
    ),
    pytest.param(
        bl.QuantConv1D,
        KL.Conv1D,
        {"filters": 2, "kernel_size": 4, "padding": "same", "strides": 2},
        (2, 7, 2),
        id="conv1d-k4-stride2-odd",
    ),
    pytest.param(
        bl.QuantConv1D,
        KL.Conv1D,
        {"filters": 2, "kernel_size": 3, "padding": "causal", "dilation_rate": 2},
        (2, 6, 3),
        id="conv1d-causal-dilation2",
    ),
    pytest.param(
        bl.QuantConv1D,
        KL.Conv1D,
        {"filters": 2, "kernel_size": 2, "padding": "causal", "strides": 2},
        (2, 7, 1),
        id="conv1d-causal-stride2",
    ),
    pytest.param(
        bl.QuantConv2D,
        KL.Conv2D,
        {"filters": 2, "kernel_size": 3, "padding": "same"},
        (1, 4, 5, 2),
        id="conv2d-k3-even-odd",
    ),
    pytest.param(
        bl.QuantConv2D,
        KL.Conv2D,
        {"filters": 3, "kernel_size": (2, 3), "padding": "same", "strides": 2},
        (2, 6, 7, 2),
        id="conv2d-k23-stride2",
    ),
    pytest.param(
        bl.QuantConv2D,
        KL.Conv2D,
        {
            "filters": 2,
            "kernel_size": 3,
            "padding": "same",
            "dilation_rate": (2, 1),
            "groups": 2,
        },
        (1, 6, 5, 4),
        id="conv2d-dilation21-groups2",
    ),
    pytest.param(
        bl.QuantConv3D,
        KL.Conv3D,
        {"filters": 2, "kernel_size": 2, "padding": "same", "strides": (1, 2, 2)},
        (1, 3, 5, 4, 2),
        id="conv3d-k2-strides122",
    ),
    pytest.param(
        bl.QuantConv3D,
        KL.Conv3D,
        {
            "filters": 2,
            "kernel_size": 3,
            "padding": "same",
            "data_format": "channels_first",
        },
        (1, 2, 3, 3, 4),
        id="conv3d-channels_first",
    ),
    pytest.param(
        bl.QuantDepthwiseConv2D,
        KL.DepthwiseConv2D,
        {"kernel_size": 3, "padding": "same", "depth_multiplier": 2},
        (1, 5, 4, 2),
        id="depthwise2d-dm2",
    ),
    pytest.param(
        bl.QuantDepthwiseConv2D,
        KL.DepthwiseConv2D,
        {"kernel_size": 3, "padding": "same", "strides": 2, "dilation_rate": 2},
        (1, 7, 8, 2),
        id="depthwise2d-stride2-dilation2",
    ),
    pytest.param(
        bl.QuantDepthwiseConv2D,
        KL.DepthwiseConv2D,
        {"kernel_size": 2, "padding": "same", "data_format": "channels_first"},
        (1, 2, 5, 4),
        id="depthwise2d-channels_first-k2",
    ),
    pytest.param(
        bl.QuantDepthwiseConv1D,
        KL.DepthwiseConv1D,
        {"kernel_size": 5, "padding": "same", "strides": 3},
        (2, 8, 2),
        id="depthwise1d-k5-stride3",
    ),
    pytest.param(
        bl.QuantSeparableConv1D,
        KL.SeparableConv1D,
        {"filters": 2, "kernel_size": 3, "padding": "same", "dilation_rate": 2},
        (2, 6, 2),
        id="separable1d-dilation2",
    ),
    pytest.param(
        bl.QuantSeparableConv2D,
        KL.SeparableConv2D,
        {
            "filters": 3,
            "kernel_size": 3,
            "padding": "same",
            "strides": 2,
            "depth_multiplier": 2,
        },
        (1, 5, 6, 2),
        id="separable2d-stride2-dm2",
    ),
    pytest.param(
        bl.QuantSeparableConv2D,
        KL.SeparableConv2D,
        {
            "filters": 2,
            "kernel_size": 2,
            "padding": "same",
            "data_format": "channels_first",
        },
        (1, 2, 4, 3),
        id="separable2d-channels_first-k2",
    ),
]


# Causal padding with pad_values != 0 is refused, as in Larq.
NONZERO_CASES = [case for case in CASES if case.values[2]["padding"] != "causal"]
CAUSAL_CASES = [case for case in CASES if case.values[2]["padding"] == "causal"]


def _valid(kwargs):
    return {**kwargs, "padding": "valid"}


@pytest.mark.parametrize(("quant_cls", "parent_cls", "kwargs", "shape"), CASES)
def test_hand_padding_reproduces_keras_zero_padding(
    quant_cls, parent_cls, kwargs, shape
):
    """Validates the oracle: hand padding with 0 + "valid" == Keras's own padding."""
    rng = np.random.default_rng(5)
    padded = build(parent_cls(**kwargs), shape)
    valid = build(
        parent_cls(**_valid(kwargs)), hand_pad(np.zeros(shape), kwargs, 0).shape
    )
    set_random_weights([padded, valid], rng)
    x = random_array(shape, rng)
    np.testing.assert_allclose(
        valid(hand_pad(x, kwargs, 0.0)), padded(x), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("value", [1.0, -1.0])
@pytest.mark.parametrize(("quant_cls", "parent_cls", "kwargs", "shape"), NONZERO_CASES)
def test_pad_values_equals_hand_padded_input(
    quant_cls, parent_cls, kwargs, shape, value
):
    rng = np.random.default_rng(6)
    quant = build(quant_cls(**kwargs, pad_values=value), shape)
    padded_shape = hand_pad(np.zeros(shape), kwargs, value).shape
    valid = build(parent_cls(**_valid(kwargs)), padded_shape)
    set_random_weights([quant, valid], rng)
    x = random_array(shape, rng)
    np.testing.assert_allclose(
        quant(x), valid(hand_pad(x, kwargs, value)), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    ("quant_cls", "parent_cls", "kwargs", "shape"),
    [CASES[1], CASES[5], CASES[10], CASES[14]],
)
def test_same_one_padding_with_sign_input_quantizer(
    quant_cls, parent_cls, kwargs, shape
):
    """The input is binarized first, then padded with +1: a fully binary window."""
    rng = np.random.default_rng(7)
    quant = build(
        quant_cls(**kwargs, pad_values=1.0, input_quantizer="ste_sign"), shape
    )
    valid = build(
        parent_cls(**_valid(kwargs)), hand_pad(np.zeros(shape), kwargs, 1.0).shape
    )
    set_random_weights([quant, valid], rng)
    x = random_array(shape, rng)
    np.testing.assert_allclose(
        quant(x), valid(hand_pad(np_sign(x), kwargs, 1.0)), rtol=1e-5, atol=1e-5
    )


def test_default_pad_values_is_zero_and_valid_padding_ignores_it():
    rng = np.random.default_rng(8)
    shape = (1, 5, 5, 2)
    default = build(bl.QuantConv2D(2, 3, padding="same"), shape)
    zero_parent = build(KL.Conv2D(2, 3, padding="same"), shape)
    valid_one = build(bl.QuantConv2D(2, 3, padding="valid", pad_values=1.0), shape)
    valid_parent = build(KL.Conv2D(2, 3, padding="valid"), shape)
    set_random_weights([default, zero_parent, valid_one, valid_parent], rng)
    x = random_array(shape, rng)
    assert default.pad_values == 0.0
    np.testing.assert_allclose(default(x), zero_parent(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(valid_one(x), valid_parent(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("quant_cls", "parent_cls", "kwargs", "shape"), [CASES[5], CASES[11]]
)
def test_pad_values_with_spatial_size_unknown_when_traced(
    quant_cls, parent_cls, kwargs, shape
):
    """A graph traced for any image size (as served models are) pads correctly."""
    rng = np.random.default_rng(9)
    quant = build(quant_cls(**kwargs, pad_values=1.0), shape)
    valid = build(
        parent_cls(**_valid(kwargs)), hand_pad(np.zeros(shape), kwargs, 1.0).shape
    )
    set_random_weights([quant, valid], rng)
    channels_first = kwargs.get("data_format") == "channels_first"
    spec = (
        (None, shape[1], None, None)
        if channels_first
        else (None, None, None, shape[-1])
    )

    @tf.function(input_signature=[tf.TensorSpec(spec, "float32")])
    def traced(x):
        return quant(x)

    for grow in (0, 1, 3):
        bigger = list(shape)
        bigger[2 if channels_first else 1] += grow
        bigger[-1 if channels_first else 2] += 2 * grow
        x = random_array(tuple(bigger), rng)
        np.testing.assert_allclose(
            traced(x), valid(hand_pad(x, kwargs, 1.0)), rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize(("quant_cls", "parent_cls", "kwargs", "shape"), CAUSAL_CASES)
def test_causal_padding_pads_with_zeros_only(quant_cls, parent_cls, kwargs, shape):
    for value in (1.0, -1.0, 0.5):
        with pytest.raises(ValueError, match=rf"padding='causal'.*pad_values={value}"):
            quant_cls(**kwargs, pad_values=value)
    rng = np.random.default_rng(9)
    quant = build(quant_cls(**kwargs, pad_values=0.0), shape)
    parent = build(parent_cls(**kwargs), shape)
    set_random_weights([quant, parent], rng)
    x = random_array(shape, rng)
    np.testing.assert_allclose(quant(x), parent(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("quant_cls", "parent_cls", "kwargs", "shape"), NONZERO_CASES)
def test_pad_values_pads_with_larqs_tf_pad_call(quant_cls, parent_cls, kwargs, shape):
    """One ``tf.pad(inputs, paddings, constant_values=v)`` call, as Larq makes it
    (Larq's own tests spy on ``tf.pad``), with the hand-computed paddings. With
    zero padding the layer calls ``tf.pad`` exactly as often as its Keras parent
    (which pads by itself only for strided and dilated depthwise convolutions)."""
    x = random_array(shape, np.random.default_rng(10))
    zero = build(quant_cls(**kwargs), shape)
    parent = build(parent_cls(**kwargs), shape)
    one = build(quant_cls(**kwargs, pad_values=1.0), shape)
    with mock.patch.object(tf, "pad", wraps=tf.pad) as spy:
        parent(x)
        parent_calls = spy.call_count
        zero(x)
        assert spy.call_count == 2 * parent_calls
        spy.reset_mock()
        one(x)
    assert spy.call_count == 1
    (padded_input, paddings), keywords = spy.call_args
    assert keywords == {"constant_values": 1.0}
    np.testing.assert_array_equal(padded_input, x)
    assert [[int(before), int(after)] for before, after in paddings] == [
        list(pair) for pair in hand_widths(shape, kwargs)
    ]

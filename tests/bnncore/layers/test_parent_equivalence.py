"""Each quantized layer against its Keras parent.

Without quantizers a ``Quant*`` layer must be its parent: same weights give the
same outputs and the same gradients (inputs and every weight). With sign
quantizers it must be the parent applied to sign(x) with weights sign(w), and
its pseudo-gradients must be the parent's gradients masked by 1[|.| <= 1].
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from layer_helpers import (
    KERNEL_QUANTIZER_ARGS,
    build,
    np_sign,
    outputs_and_gradients,
    random_array,
    set_random_weights,
    sprinkle_zeros,
)

import bnncore.layers as bl

KL = keras.layers

# (quantized class, parent class, constructor kwargs, input shape)
CASES = [
    pytest.param(bl.QuantDense, KL.Dense, {"units": 3}, (2, 5), id="dense"),
    pytest.param(
        bl.QuantDense,
        KL.Dense,
        {"units": 4, "activation": "relu", "use_bias": False},
        (2, 3, 5),
        id="dense-rank3-relu-nobias",
    ),
    pytest.param(
        bl.QuantConv1D,
        KL.Conv1D,
        {"filters": 3, "kernel_size": 3, "strides": 2},
        (2, 8, 2),
        id="conv1d-valid-stride2",
    ),
    pytest.param(
        bl.QuantConv1D,
        KL.Conv1D,
        {"filters": 3, "kernel_size": 3, "padding": "same", "dilation_rate": 2},
        (2, 7, 2),
        id="conv1d-same-dilation2",
    ),
    pytest.param(
        bl.QuantConv1D,
        KL.Conv1D,
        {
            "filters": 2,
            "kernel_size": 2,
            "padding": "causal",
            "dilation_rate": 2,
            "use_bias": False,
        },
        (2, 6, 3),
        id="conv1d-causal-dilation2-nobias",
    ),
    pytest.param(
        bl.QuantConv1D,
        KL.Conv1D,
        {"filters": 4, "kernel_size": 3, "groups": 2, "activation": "tanh"},
        (2, 6, 4),
        id="conv1d-groups2-tanh",
    ),
    pytest.param(
        bl.QuantConv2D,
        KL.Conv2D,
        {"filters": 3, "kernel_size": (3, 2), "strides": (2, 1)},
        (2, 6, 5, 2),
        id="conv2d-valid-strides21",
    ),
    pytest.param(
        bl.QuantConv2D,
        KL.Conv2D,
        {"filters": 2, "kernel_size": 3, "padding": "same", "strides": 2},
        (1, 6, 5, 3),
        id="conv2d-same-stride2-even-odd",
    ),
    pytest.param(
        bl.QuantConv2D,
        KL.Conv2D,
        {
            "filters": 4,
            "kernel_size": 3,
            "padding": "same",
            "dilation_rate": 2,
            "groups": 2,
            "use_bias": False,
        },
        (1, 6, 6, 4),
        id="conv2d-same-dilation2-groups2-nobias",
    ),
    pytest.param(
        bl.QuantConv3D,
        KL.Conv3D,
        {"filters": 2, "kernel_size": 2, "padding": "same", "strides": 2},
        (1, 3, 4, 5, 2),
        id="conv3d-same-stride2",
    ),
    pytest.param(
        bl.QuantConv3D,
        KL.Conv3D,
        {
            "filters": 2,
            "kernel_size": 2,
            "data_format": "channels_first",
            "activation": "sigmoid",
        },
        (1, 2, 3, 4, 3),
        id="conv3d-channels_first-sigmoid",
    ),
    pytest.param(
        bl.QuantDepthwiseConv1D,
        KL.DepthwiseConv1D,
        {"kernel_size": 3, "depth_multiplier": 2, "padding": "same", "strides": 2},
        (2, 7, 3),
        id="depthwise1d-same-stride2-dm2",
    ),
    pytest.param(
        bl.QuantDepthwiseConv1D,
        KL.DepthwiseConv1D,
        {"kernel_size": 2, "data_format": "channels_first", "use_bias": False},
        (2, 3, 6),
        id="depthwise1d-channels_first-nobias",
    ),
    pytest.param(
        bl.QuantDepthwiseConv2D,
        KL.DepthwiseConv2D,
        {"kernel_size": 3, "depth_multiplier": 2, "padding": "same", "strides": 2},
        (1, 6, 7, 2),
        id="depthwise2d-same-stride2-dm2",
    ),
    pytest.param(
        bl.QuantDepthwiseConv2D,
        KL.DepthwiseConv2D,
        {
            "kernel_size": 2,
            "dilation_rate": 2,
            "data_format": "channels_first",
            "activation": "relu",
        },
        (1, 2, 5, 6),
        id="depthwise2d-channels_first-dilation2-relu",
    ),
    pytest.param(
        bl.QuantSeparableConv1D,
        KL.SeparableConv1D,
        {"filters": 3, "kernel_size": 3, "padding": "same", "depth_multiplier": 2},
        (2, 7, 2),
        id="separable1d-same-dm2",
    ),
    pytest.param(
        bl.QuantSeparableConv1D,
        KL.SeparableConv1D,
        {
            "filters": 2,
            "kernel_size": 2,
            "strides": 2,
            "data_format": "channels_first",
            "use_bias": False,
        },
        (1, 3, 7),
        id="separable1d-channels_first-stride2-nobias",
    ),
    pytest.param(
        bl.QuantSeparableConv2D,
        KL.SeparableConv2D,
        {"filters": 3, "kernel_size": 3, "padding": "same", "dilation_rate": 2},
        (1, 6, 7, 2),
        id="separable2d-same-dilation2",
    ),
    pytest.param(
        bl.QuantSeparableConv2D,
        KL.SeparableConv2D,
        {
            "filters": 2,
            "kernel_size": 2,
            "strides": 2,
            "depth_multiplier": 2,
            "activation": "tanh",
        },
        (1, 5, 6, 3),
        id="separable2d-valid-stride2-dm2-tanh",
    ),
    pytest.param(
        bl.QuantConv1DTranspose,
        KL.Conv1DTranspose,
        {"filters": 3, "kernel_size": 3, "strides": 2, "padding": "same"},
        (2, 4, 2),
        id="conv1dT-same-stride2",
    ),
    pytest.param(
        bl.QuantConv2DTranspose,
        KL.Conv2DTranspose,
        {
            "filters": 2,
            "kernel_size": 3,
            "strides": 2,
            "output_padding": 1,
            "use_bias": False,
        },
        (1, 3, 4, 2),
        id="conv2dT-valid-stride2-outpad1-nobias",
    ),
    pytest.param(
        bl.QuantConv2DTranspose,
        KL.Conv2DTranspose,
        {
            "filters": 2,
            "kernel_size": 3,
            "padding": "same",
            "activation": "relu",
        },
        (1, 4, 3, 3),
        id="conv2dT-same-k3-relu",
    ),
    pytest.param(
        bl.QuantConv3DTranspose,
        KL.Conv3DTranspose,
        {"filters": 2, "kernel_size": 2, "strides": 2},
        (1, 2, 3, 2, 2),
        id="conv3dT-valid-stride2",
    ),
    pytest.param(
        bl.QuantLocallyConnected1D,
        bl.LocallyConnected1D,
        {"filters": 3, "kernel_size": 3, "strides": 2},
        (2, 7, 2),
        id="local1d-stride2",
    ),
    pytest.param(
        bl.QuantLocallyConnected2D,
        bl.LocallyConnected2D,
        {
            "filters": 2,
            "kernel_size": (2, 3),
            "data_format": "channels_first",
            "activation": "relu",
        },
        (2, 3, 4, 5),
        id="local2d-channels_first-relu",
    ),
]


def _pair(quant_cls, parent_cls, kwargs, shape, quant_kwargs=None):
    parent = build(parent_cls(**kwargs), shape)
    quant = build(quant_cls(**kwargs, **(quant_kwargs or {})), shape)
    return quant, parent


@pytest.mark.parametrize(("quant_cls", "parent_cls", "kwargs", "shape"), CASES)
def test_without_quantizers_equals_parent(quant_cls, parent_cls, kwargs, shape):
    rng = np.random.default_rng(0)
    quant, parent = _pair(quant_cls, parent_cls, kwargs, shape)
    assert [w.name for w in quant.weights] == [w.name for w in parent.weights]
    assert [tuple(w.shape) for w in quant.weights] == [
        tuple(w.shape) for w in parent.weights
    ]
    set_random_weights([quant, parent], rng)
    x = random_array(shape, rng)
    expected, _ = outputs_and_gradients(parent, x)
    upstream = random_array(expected.shape, rng)
    expected, expected_grads = outputs_and_gradients(parent, x, upstream)
    got, got_grads = outputs_and_gradients(quant, x, upstream)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert got_grads.keys() == expected_grads.keys()
    for name, grad in expected_grads.items():
        np.testing.assert_allclose(
            got_grads[name], grad, rtol=1e-5, atol=1e-5, err_msg=name
        )


@pytest.mark.parametrize(("quant_cls", "parent_cls", "kwargs", "shape"), CASES)
def test_sign_quantizers_equal_parent_on_signs(quant_cls, parent_cls, kwargs, shape):
    rng = np.random.default_rng(1)
    quantized_args = KERNEL_QUANTIZER_ARGS[quant_cls]
    quant, parent = _pair(
        quant_cls,
        parent_cls,
        kwargs,
        shape,
        {"input_quantizer": "ste_sign", **dict.fromkeys(quantized_args, "ste_sign")},
    )
    # Latent weights spread beyond +-1 so the straight-through mask matters.
    latent = set_random_weights([quant], rng, scale=1.2)
    binary = set(quantized_args.values())
    for w in parent.weights:
        value = latent[w.name]
        w.assign(np_sign(value) if w.name in binary else value)
    x = sprinkle_zeros(random_array(shape, rng, scale=1.5), rng)

    expected, _ = outputs_and_gradients(parent, np_sign(x))
    upstream = random_array(expected.shape, rng)
    expected, parent_grads = outputs_and_gradients(parent, np_sign(x), upstream)
    got, got_grads = outputs_and_gradients(quant, x, upstream)

    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)
    # Straight-through estimator: the parent's gradient where |value| <= 1.
    masks = {"inputs": np.abs(x) <= 1}
    masks.update({name: np.abs(latent[name]) <= 1 for name in binary})
    assert got_grads.keys() == parent_grads.keys()
    for name, grad in parent_grads.items():
        expected_grad = np.where(masks[name], grad, 0.0) if name in masks else grad
        np.testing.assert_allclose(
            got_grads[name], expected_grad, rtol=1e-5, atol=1e-5, err_msg=name
        )

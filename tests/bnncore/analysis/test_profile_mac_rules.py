"""MACs, parameters and precisions of every MAC-bearing layer type, by hand.

Each case gives the input shape, a layer factory (plain Keras or bnncore layer
class plus arguments) and the counts worked out on paper:

* Dense, Conv, Depthwise: kernel weights × output positions;
* Separable: depthwise kernel × positions + pointwise kernel × positions;
* transposed convolutions: kernel weights × *input* positions (every input
  value is multiplied by every kernel weight of its channel);
* locally connected: kernel weights (each used once, no sharing).
"""

from __future__ import annotations

import keras
import pytest

from bnncore import layers as bl
from bnncore import models, quantizers

# name: (input shape, plain class, quantized class, kwargs, kernel weights,
#        bias weights, MACs)
CASES = {
    "dense": (
        (5,),
        keras.layers.Dense,
        bl.QuantDense,
        {"units": 7},
        5 * 7,
        7,
        5 * 7,
    ),
    "dense_on_sequence": (
        (4, 5),
        keras.layers.Dense,
        bl.QuantDense,
        {"units": 7},
        5 * 7,
        7,
        4 * 5 * 7,  # applied at each of the 4 steps
    ),
    "conv1d_strided": (
        (11, 4),
        keras.layers.Conv1D,
        bl.QuantConv1D,
        {"filters": 6, "kernel_size": 3, "strides": 2},
        3 * 4 * 6,
        6,
        ((11 - 3) // 2 + 1) * 3 * 4 * 6,  # 5 output steps
    ),
    "conv2d_groups_same_strided": (
        (9, 9, 4),
        keras.layers.Conv2D,
        bl.QuantConv2D,
        {"filters": 8, "kernel_size": 3, "strides": 2, "padding": "same", "groups": 2},
        3 * 3 * (4 // 2) * 8,  # each filter sees its group's 2 channels
        8,
        5 * 5 * 3 * 3 * (4 // 2) * 8,  # ceil(9 / 2) = 5
    ),
    "conv2d_channels_first": (
        (3, 8, 8),
        keras.layers.Conv2D,
        bl.QuantConv2D,
        {"filters": 4, "kernel_size": 3, "data_format": "channels_first"},
        3 * 3 * 3 * 4,
        4,
        6 * 6 * 3 * 3 * 3 * 4,
    ),
    "conv3d": (
        (5, 5, 5, 3),
        keras.layers.Conv3D,
        bl.QuantConv3D,
        {"filters": 4, "kernel_size": 2},
        2 * 2 * 2 * 3 * 4,
        4,
        4 * 4 * 4 * 2 * 2 * 2 * 3 * 4,
    ),
    "depthwise1d_multiplier": (
        (10, 4),
        keras.layers.DepthwiseConv1D,
        bl.QuantDepthwiseConv1D,
        {"kernel_size": 3, "depth_multiplier": 2},
        3 * 4 * 2,
        4 * 2,
        8 * 3 * 4 * 2,
    ),
    "depthwise2d_multiplier_strided": (
        (8, 8, 5),
        keras.layers.DepthwiseConv2D,
        bl.QuantDepthwiseConv2D,
        {"kernel_size": 3, "depth_multiplier": 3, "strides": 2, "padding": "same"},
        3 * 3 * 5 * 3,
        5 * 3,
        4 * 4 * 3 * 3 * 5 * 3,
    ),
    "separable1d": (
        (10, 4),
        keras.layers.SeparableConv1D,
        bl.QuantSeparableConv1D,
        {"filters": 6, "kernel_size": 3, "depth_multiplier": 2},
        3 * 4 * 2 + 1 * (4 * 2) * 6,
        6,
        8 * (3 * 4 * 2) + 8 * (4 * 2 * 6),
    ),
    "separable2d_same": (
        (6, 6, 8),
        keras.layers.SeparableConv2D,
        bl.QuantSeparableConv2D,
        {"filters": 16, "kernel_size": 3, "padding": "same"},
        3 * 3 * 8 + 8 * 16,
        16,
        6 * 6 * (3 * 3 * 8) + 6 * 6 * (8 * 16),
    ),
    "conv1d_transpose_strided": (
        (7, 4),
        keras.layers.Conv1DTranspose,
        bl.QuantConv1DTranspose,
        {"filters": 5, "kernel_size": 3, "strides": 2},
        3 * 5 * 4,
        5,
        7 * 3 * 5 * 4,  # 7 input steps; output has (7 - 1) * 2 + 3 = 15
    ),
    "conv2d_transpose_same": (
        (4, 4, 2),
        keras.layers.Conv2DTranspose,
        bl.QuantConv2DTranspose,
        {"filters": 6, "kernel_size": 3, "strides": 2, "padding": "same"},
        3 * 3 * 6 * 2,
        6,
        4 * 4 * 3 * 3 * 6 * 2,
    ),
    "conv3d_transpose": (
        (3, 3, 3, 4),
        keras.layers.Conv3DTranspose,
        bl.QuantConv3DTranspose,
        {"filters": 2, "kernel_size": 2, "strides": 2},
        2 * 2 * 2 * 2 * 4,
        2,
        3 * 3 * 3 * 2 * 2 * 2 * 2 * 4,
    ),
    "locally_connected1d": (
        (9, 4),
        bl.LocallyConnected1D,
        bl.QuantLocallyConnected1D,
        {"filters": 5, "kernel_size": 3, "strides": 2},
        4 * 3 * 4 * 5,  # (9 - 3) // 2 + 1 = 4 positions, own kernel each
        4 * 5,
        4 * 3 * 4 * 5,
    ),
    "locally_connected2d": (
        (4, 4, 2),
        bl.LocallyConnected2D,
        bl.QuantLocallyConnected2D,
        {"filters": 3, "kernel_size": 2},
        3 * 3 * 2 * 2 * 2 * 3,
        3 * 3 * 3,
        3 * 3 * 2 * 2 * 2 * 3,
    ),
}

_KERNEL_QUANTIZER_ARGS = {
    bl.QuantDepthwiseConv1D: ("depthwise_quantizer",),
    bl.QuantDepthwiseConv2D: ("depthwise_quantizer",),
    bl.QuantSeparableConv1D: ("depthwise_quantizer", "pointwise_quantizer"),
    bl.QuantSeparableConv2D: ("depthwise_quantizer", "pointwise_quantizer"),
}


def _single(input_shape, layer) -> keras.Model:
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layer(inputs))


def _binary(cls, kwargs):
    names = _KERNEL_QUANTIZER_ARGS.get(cls, ("kernel_quantizer",))
    extra = {name: "ste_sign" for name in names}
    return cls(input_quantizer="ste_sign", **kwargs, **extra)


@pytest.mark.parametrize("case", sorted(CASES))
def test_plain_keras_layer_counts(case):
    shape, plain, _, kwargs, kernel, bias, macs = CASES[case]
    model = _single(shape, plain(**kwargs))
    (row,) = models.profile(model).layers
    assert row.params == kernel + bias == model.count_params()
    assert dict(row.params_by_bits) == {32: kernel + bias}
    assert row.input_precision is None
    assert row.macs == macs
    assert dict(row.macs_by_bits) == {32: macs}
    assert row.bops == macs * 32 * 32


@pytest.mark.parametrize("case", sorted(CASES))
def test_binary_layer_counts(case):
    shape, _, quantized, kwargs, kernel, bias, macs = CASES[case]
    model = _single(shape, _binary(quantized, kwargs))
    (row,) = models.profile(model).layers
    assert dict(row.params_by_bits) == {1: kernel, 32: bias}
    assert row.memory_bits == kernel + 32 * bias
    assert row.input_precision == 1
    assert dict(row.macs_by_bits) == {1: macs}
    assert row.bops == macs
    assert row.notes == ()


def test_separable_parts_have_their_own_precision():
    # Depthwise binary, pointwise 4-bit, input binary.
    layer = bl.QuantSeparableConv2D(
        16,
        3,
        padding="same",
        input_quantizer="ste_sign",
        depthwise_quantizer="ste_sign",
        pointwise_quantizer=quantizers.DoReFa(k_bit=4, mode="weights"),
    )
    (row,) = models.profile(_single((6, 6, 8), layer)).layers
    depthwise, pointwise = 6 * 6 * 3 * 3 * 8, 6 * 6 * 8 * 16
    assert dict(row.macs_by_bits) == {1: depthwise, 4: pointwise}
    assert row.bops == depthwise * 1 * 1 + pointwise * 1 * 4
    assert dict(row.params_by_bits) == {1: 3 * 3 * 8, 4: 8 * 16, 32: 16}


def test_mac_precision_is_the_wider_of_input_and_kernel():
    # 2-bit DoReFa input, binary kernel: MACs at 2 bits (ternary ratio 1).
    layer = bl.QuantConv2D(
        4,
        3,
        use_bias=False,
        input_quantizer=quantizers.DoReFa(k_bit=2),
        kernel_quantizer="ste_sign",
    )
    report = models.profile(_single((5, 5, 3), layer))
    macs = 3 * 3 * 3 * 3 * 3 * 4
    assert dict(report.layers[0].macs_by_bits) == {2: macs}
    assert report.layers[0].bops == macs * 2 * 1
    assert report.totals.ternary_mac_ratio == 1.0
    assert report.totals.binary_mac_ratio == 0.0
    # Binary input, 32-bit kernel (no kernel quantizer): 32-bit MACs.
    dense = bl.QuantDense(3, input_quantizer="ste_sign")
    (row,) = models.profile(_single((8,), dense)).layers
    assert dict(row.macs_by_bits) == {32: 8 * 3}
    assert row.bops == 8 * 3 * 1 * 32


def test_ternary_weights_count_two_bits():
    layer = bl.QuantDense(
        6, use_bias=False, input_quantizer="ste_tern", kernel_quantizer="ste_tern"
    )
    report = models.profile(_single((10,), layer))
    assert dict(report.layers[0].params_by_bits) == {2: 60}
    assert report.totals.memory_bytes == 60 * 2 // 8
    assert report.totals.ternary_mac_ratio == 1.0
    assert report.layers[0].bops == 60 * 2 * 2


def test_elementwise_layers_have_no_macs():
    inputs = keras.Input((6, 6, 4))
    x = keras.layers.BatchNormalization()(inputs)
    y = keras.layers.AveragePooling2D(2)(x)
    z = keras.layers.Add()([keras.layers.UpSampling2D()(y), x])
    z = keras.layers.ReLU()(z)
    report = models.profile(keras.Model(inputs, z))
    assert report.totals.macs == 0
    assert all(row.notes == () for row in report.layers)
    assert report.totals.params == 4 * 4  # gamma, beta, mean, variance
    assert report.totals.inference_params == 2 * 4

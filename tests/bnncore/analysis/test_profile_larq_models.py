"""The profile of the two models Larq documents, checked layer by layer by hand.

Oracles: the numbers Larq prints for these models (README QuantDense example:
406,528 1-bit and 522 32-bit parameters, 52,904 bytes; MNIST tutorial BNN:
93,088 1-bit + 468 32-bit parameters, 13.19 KiB, 93.03 % binarized MACs) and
the arithmetic written out below — never the profile's own output.
"""

from __future__ import annotations

import keras
import pytest

from bnncore import layers as bl
from bnncore import models

BIN = {
    "input_quantizer": "ste_sign",
    "kernel_quantizer": "ste_sign",
    "kernel_constraint": "weight_clip",
}


@pytest.fixture(scope="module")
def readme_model() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            bl.QuantDense(
                512, kernel_quantizer="ste_sign", kernel_constraint="weight_clip"
            ),
            bl.QuantDense(10, **BIN),
        ],
        name="readme",
    )


@pytest.fixture(scope="module")
def mnist_bnn() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            bl.QuantConv2D(
                32,
                (3, 3),
                kernel_quantizer="ste_sign",
                kernel_constraint="weight_clip",
                use_bias=False,
            ),
            keras.layers.MaxPooling2D((2, 2)),
            keras.layers.BatchNormalization(scale=False),
            bl.QuantConv2D(64, (3, 3), use_bias=False, **BIN),
            keras.layers.MaxPooling2D((2, 2)),
            keras.layers.BatchNormalization(scale=False),
            bl.QuantConv2D(64, (3, 3), use_bias=False, **BIN),
            keras.layers.BatchNormalization(scale=False),
            keras.layers.Flatten(),
            bl.QuantDense(64, use_bias=False, **BIN),
            keras.layers.BatchNormalization(scale=False),
            bl.QuantDense(10, use_bias=False, **BIN),
            keras.layers.BatchNormalization(scale=False),
            keras.layers.Activation("softmax"),
        ],
        name="mnist_bnn",
    )


def test_readme_quantdense_model_matches_larq(readme_model):
    report = models.profile(readme_model)
    flatten, dense512, dense10 = report.layers

    assert flatten.params == 0 and flatten.macs == 0
    # Dense 512: 28*28 inputs, kernel binary; bias 32-bit; input not quantized.
    assert dict(dense512.params_by_bits) == {1: 28 * 28 * 512, 32: 512}
    assert dense512.input_precision is None
    assert dict(dense512.macs_by_bits) == {32: 28 * 28 * 512}  # max(32, 1)
    assert dense512.bops == 28 * 28 * 512 * 32 * 1
    assert dense512.memory_bits == 28 * 28 * 512 * 1 + 512 * 32
    # Dense 10: binary input and kernel.
    assert dict(dense10.params_by_bits) == {1: 512 * 10, 32: 10}
    assert dense10.input_precision == 1
    assert dict(dense10.macs_by_bits) == {1: 512 * 10}
    assert dense10.bops == 512 * 10

    t = report.totals
    assert dict(t.params_by_bits) == {1: 406_528, 32: 522}  # Larq's numbers
    assert t.binary_params == 406_528 and t.float_params == 522
    assert t.params == readme_model.count_params() == 406_528 + 522
    assert t.inference_params == t.params  # no BatchNorm
    assert t.memory_bytes == 52_904  # 406,528 / 8 + 522 * 4
    assert t.float32_equivalent_bytes == (406_528 + 522) * 4
    assert t.compression == pytest.approx((406_528 + 522) * 4 / 52_904)
    assert t.memory_saving == pytest.approx(1 - 52_904 / ((406_528 + 522) * 4))
    # Weights wider than 8 bits stored at 8: 406,528 bits + 522 bytes.
    assert t.memory_bytes_8bit_floats == 406_528 // 8 + 522
    assert t.macs == 28 * 28 * 512 + 512 * 10
    assert t.binary_mac_ratio == pytest.approx(512 * 10 / (28 * 28 * 512 + 512 * 10))
    assert t.ternary_mac_ratio == 0


def test_readme_model_activations(readme_model):
    flatten, dense512, dense10 = models.profile(readme_model).layers
    # Batch 1, float32 outputs: 784, 512 and 10 values.
    assert (flatten.activation_elements, flatten.activation_bytes) == (784, 784 * 4)
    assert (dense512.activation_elements, dense512.activation_bytes) == (512, 2048)
    assert (dense10.activation_elements, dense10.activation_bytes) == (10, 40)
    # Working set = inputs + output: Flatten reads 28*28 floats, writes 784.
    assert flatten.peak_activation_bytes == 28 * 28 * 4 + 784 * 4
    assert dense512.peak_activation_bytes == 784 * 4 + 512 * 4
    assert dense10.peak_activation_bytes == 512 * 4 + 10 * 4
    assert models.profile(readme_model).totals.peak_activation_bytes == 6272


# (kind, 1-bit params, 32-bit Keras params, inference 32-bit, MACs, MAC bits)
# Shapes: 28 → conv 26 → pool 13 → conv 11 → pool 5 → conv 3 → flatten 576.
# BatchNorm(scale=False) has beta, moving mean and variance: 3 per channel in
# Keras, 2 per channel once folded.
MNIST_LAYERS = [
    ("QuantConv2D", 3 * 3 * 1 * 32, 0, 0, 26 * 26 * 3 * 3 * 1 * 32, 32),
    ("MaxPooling2D", 0, 0, 0, 0, None),
    ("BatchNormalization", 0, 3 * 32, 2 * 32, 0, None),
    ("QuantConv2D", 3 * 3 * 32 * 64, 0, 0, 11 * 11 * 3 * 3 * 32 * 64, 1),
    ("MaxPooling2D", 0, 0, 0, 0, None),
    ("BatchNormalization", 0, 3 * 64, 2 * 64, 0, None),
    ("QuantConv2D", 3 * 3 * 64 * 64, 0, 0, 3 * 3 * 3 * 3 * 64 * 64, 1),
    ("BatchNormalization", 0, 3 * 64, 2 * 64, 0, None),
    ("Flatten", 0, 0, 0, 0, None),
    ("QuantDense", 576 * 64, 0, 0, 576 * 64, 1),
    ("BatchNormalization", 0, 3 * 64, 2 * 64, 0, None),
    ("QuantDense", 64 * 10, 0, 0, 64 * 10, 1),
    ("BatchNormalization", 0, 3 * 10, 2 * 10, 0, None),
    ("Activation", 0, 0, 0, 0, None),
]


def test_mnist_bnn_layer_by_layer(mnist_bnn):
    report = models.profile(mnist_bnn)
    assert len(report.layers) == len(MNIST_LAYERS)
    for row, expected in zip(report.layers, MNIST_LAYERS, strict=True):
        kind, binary, floats, folded, macs, mac_bits = expected
        assert row.type == kind
        assert row.params_by_bits.get(1, 0) == binary, row.name
        assert row.params_by_bits.get(32, 0) == floats, row.name
        assert row.params == binary + floats
        assert row.inference_params == binary + folded, row.name
        assert row.memory_bits == binary * 1 + folded * 32, row.name
        assert row.macs == macs, row.name
        assert dict(row.macs_by_bits) == ({mac_bits: macs} if macs else {})
    bn = report.layers[2]
    # moving mean and variance are non-trainable: 2 of the 3 per channel.
    assert (bn.trainable_params, bn.non_trainable_params) == (32, 64)


def test_mnist_bnn_totals_match_larq(mnist_bnn):
    t = models.profile(mnist_bnn).totals
    binary = 288 + 18_432 + 36_864 + 36_864 + 640
    assert binary == 93_088
    assert dict(t.inference_params_by_bits) == {1: 93_088, 32: 468}  # Larq's table
    assert dict(t.params_by_bits) == {1: 93_088, 32: 3 * (32 + 64 + 64 + 64 + 10)}
    assert t.params == mnist_bnn.count_params()
    assert t.inference_params == 93_088 + 468
    assert t.memory_bytes == 93_088 // 8 + 468 * 4
    assert round(t.memory_bytes / 1024, 2) == 13.19  # Larq: 13.19 KiB
    binary_macs = 2_230_272 + 331_776 + 36_864 + 640
    assert t.macs == 194_688 + binary_macs
    assert dict(t.macs_by_bits) == {1: binary_macs, 32: 194_688}
    assert round(100 * t.binary_mac_ratio, 2) == 93.03  # Larq: 93.03 %
    assert t.bops == 194_688 * 32 + binary_macs
    # The largest working set: the first pooling reads 26*26*32 floats and
    # writes 13*13*32.
    assert t.peak_activation_bytes == (26 * 26 * 32 + 13 * 13 * 32) * 4


def test_weights_are_listed_with_their_bit_widths(mnist_bnn):
    conv = models.profile(mnist_bnn).layers[3]
    (kernel,) = conv.weights
    assert (kernel.name, kernel.shape, kernel.bits) == ("kernel", (3, 3, 32, 64), 1)
    assert kernel.quantizer == "SteSign" and kernel.trainable and kernel.counted
    bn = models.profile(mnist_bnn).layers[2]
    assert [(w.name, w.bits, w.trainable) for w in bn.weights] == [
        ("beta", 32, True),
        ("moving_mean", 32, False),
        ("moving_variance", 32, False),
    ]

"""Larq's ``summary`` text and ``ModelProfile`` API.

Oracles:
* the text real Larq 0.14 printed for the same models (``larq_summaries/*.txt``,
  written by ``larq_summaries/make_larq_summaries.py`` in the peer environment;
  the models are defined once, in ``larq_summary_models.py``);
* Larq's number formatting, recorded the same way (``readable_numbers.json``);
* counts worked out by hand below (shapes, kernel sizes, Larq's BatchNorm
  folding), never the profile's own output.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import pytest
from larq_summary_models import CASES, MODELS

import bnncore as lq
from bnncore import models

FIXTURES = Path(__file__).resolve().parent / "larq_summaries"


def build(name: str) -> keras.Model:
    return MODELS[name](lq, keras)


@pytest.mark.parametrize("stem", sorted(CASES), ids=str)
def test_summary_prints_what_larq_printed(stem):
    model_name, include_macs = CASES[stem]
    printed: list[str] = []
    model = build(model_name)
    models.summary(model, print_fn=printed.append, include_macs=include_macs)
    expected = (FIXTURES / f"{stem}.txt").read_text()
    assert len(printed) == 2  # Larq calls print_fn once per table
    assert "\n".join(printed) + "\n" == expected


def test_summary_prints_to_stdout_by_default(capsys):
    models.summary(build("mnist_tutorial"))
    assert capsys.readouterr().out == (FIXTURES / "mnist_tutorial.txt").read_text()


def test_number_format_is_larqs():
    pairs = json.loads((FIXTURES / "readable_numbers.json").read_text())
    assert len(pairs) > 20
    for number, text in pairs:
        assert models._number_as_readable_str(number) == text, number


def test_bitsize_names():
    assert models._bitsize_as_str(8) == "byte"
    assert models._bitsize_as_str(8 * 1024) == "kB"
    with pytest.raises(NotImplementedError, match="-1"):
        models._bitsize_as_str(-1)


def test_summary_of_unbuilt_model_is_a_value_error():
    with pytest.raises(ValueError, match="not built"):
        models.summary(keras.Sequential([keras.layers.Dense(2)]))
    with pytest.raises(TypeError, match=r"keras\.Model"):
        models.ModelProfile(keras.layers.Dense(2))


# ----------------------------------------------------------------------------
# ModelProfile: the mixed-precision model, counted by hand
# ----------------------------------------------------------------------------
# 64x64x1 input. conv 3x3x1x32 "same" → 64x64x32; max pool → 32x32x32;
# depthwise 3x3x32 stride 3 "same" → 11x11x32 (ternary input and kernel);
# BatchNorm(scale=False): beta, moving mean, moving variance of 32 channels,
# beta folded away; separable 3x3x32 + 1x1x32x32 → 11x11x32 (binary input);
# flatten 3872; frozen Dense 10.
KERNELS = [3 * 3 * 1 * 32, 0, 3 * 3 * 32, 0, 3 * 3 * 32 + 32 * 32, 0, 3872 * 10]
BIASES = [32, 0, 0, 0, 32, 0, 10]
BN_STATS = [0, 0, 0, 2 * 32, 0, 0, 0]
PIXELS = [64 * 64, 32 * 32, 11 * 11, 11 * 11, 11 * 11, 1, 1]
KERNEL_BITS = [1, None, 2, None, 1, None, 32]
INPUT_PRECISION = [None, None, 2, None, 1, None, None]
OUTPUT_SHAPES = [
    (-1, 64, 64, 32),
    (-1, 32, 32, 32),
    (-1, 11, 11, 32),
    (-1, 11, 11, 32),
    (-1, 11, 11, 32),
    (-1, 3872),
    (-1, 10),
]


def _mac_bits(i: int) -> int:
    return max(INPUT_PRECISION[i] or 32, KERNEL_BITS[i] or 32)


@pytest.fixture(scope="module")
def mixed() -> models.ModelProfile:
    return models.ModelProfile(build("mixed_precision"))


def test_layer_profiles_match_hand_counts(mixed):
    assert [p.name for p in mixed.layer_profiles] == [
        "quant_conv2d",
        "max_pooling2d",
        "quant_depthwise_conv2d",
        "batch_normalization",
        "quant_separable_conv2d",
        "flatten",
        "dense",
    ]
    for i, p in enumerate(mixed.layer_profiles):
        floats = BIASES[i] + BN_STATS[i] + (KERNELS[i] if KERNEL_BITS[i] == 32 else 0)
        quantized = KERNELS[i] if KERNEL_BITS[i] in (1, 2) else 0
        assert p.weight_count() == KERNELS[i] + BIASES[i] + BN_STATS[i], p.name
        assert p.weight_count(32) == floats, p.name
        assert p.weight_count(1) + p.weight_count(2) == quantized, p.name
        bits = KERNEL_BITS[i] or 32
        assert p.memory == bits * KERNELS[i] + 32 * (BIASES[i] + BN_STATS[i])
        assert p.fp_equivalent_memory == 32 * p.weight_count()
        assert p.int8_fp_weights_memory == min(bits, 8) * KERNELS[i] + 8 * (
            BIASES[i] + BN_STATS[i]
        )
        assert p.input_precision == INPUT_PRECISION[i], p.name
        assert p.output_shape == OUTPUT_SHAPES[i], p.name
        assert p.output_pixels == PIXELS[i], p.name
        macs = KERNELS[i] * PIXELS[i]
        assert p.op_count("mac") == macs, p.name
        assert p.op_count("mac", _mac_bits(i)) == macs, p.name
        assert p.op_count("mac", 1) == (macs if _mac_bits(i) == 1 else 0), p.name
        assert p.unique_op_precisions == ([_mac_bits(i)] if macs else [])


def test_model_totals_fold_batchnorm_and_count_frozen_layers(mixed):
    total = sum(KERNELS) + sum(BIASES) + sum(BN_STATS)
    assert total == 40_746
    assert mixed.weight_count() == total
    # Trainable: everything but the BatchNorm statistics and the frozen Dense.
    assert mixed.weight_count(trainable=True) == total - 64 - (38_720 + 10)
    assert mixed.weight_count(trainable=False) == 64 + 38_720 + 10
    assert mixed.unique_param_bidtwidths == [1, 2, 32]
    assert mixed.unique_op_precisions == [1, 2, 32]
    macs = sum(k * p for k, p in zip(KERNELS, PIXELS, strict=True))
    assert mixed.op_count("mac") == macs == 1_411_968
    assert mixed.op_count("mac", 1) == 1312 * 121
    assert mixed.op_count("mac", 2) == 288 * 121
    summary = dict(mixed.generate_summary())
    assert summary["Total params"] == "40.7 k"
    ratio = summary["Ratio of MACs that are binarized"]
    assert ratio == f"{1312 * 121 / 1_411_968:.4f}" == "0.1124"
    memory = 1600 * 1 + 288 * 2 + 38_858 * 32
    assert mixed.memory == memory
    assert summary["Compression Ratio of Memory"] == memory / (32 * total)


def test_op_count_only_counts_macs(mixed):
    with pytest.raises(ValueError, match=r"op_type='flops'"):
        mixed.layer_profiles[0].op_count("flops")
    with pytest.raises(ValueError, match="op_type=None"):
        mixed.op_count()


def test_mnist_tutorial_totals_are_larqs_and_profile_keeps_keras_counts():
    model = build("mnist_tutorial")
    larq = models.ModelProfile(model)
    # 5 BatchNorms (scale=False) of 32, 64, 64, 64, 10 channels: Keras counts
    # beta + mean + variance (3 per channel), Larq the two statistics.
    channels = 32 + 64 + 64 + 64 + 10
    binary = 3 * 3 * 32 + 3 * 3 * 32 * 64 + 3 * 3 * 64 * 64 + 576 * 64 + 64 * 10
    assert binary == 93_088
    assert larq.weight_count() == binary + 2 * channels == 93_556
    assert larq.weight_count(trainable=True) == 93_088
    norm = larq.layer_profiles[2]
    assert norm.name == "batch_normalization" and norm.weight_count() == 64
    report = models.profile(model)
    assert report.totals.params == model.count_params() == binary + 3 * channels
    assert report.layers[2].params == 96


# ----------------------------------------------------------------------------
# Nested, functional and subclassed models
# ----------------------------------------------------------------------------


def test_nested_model_row_sums_its_layers(mixed):
    nested = models.ModelProfile(build("nested"))
    inner = nested.layer_profiles[2]
    assert isinstance(inner, models.ModelProfile) and inner.name == "inner"
    flat = mixed.layer_profiles[2:5]
    assert inner.input_precision == flat[0].input_precision == 2
    assert inner.output_shape == flat[-1].output_shape == (-1, 11, 11, 32)
    assert inner.output_pixels == 121
    assert inner.weight_count() == sum(p.weight_count() for p in flat)
    assert inner.memory == sum(p.memory for p in flat)
    assert inner.op_count("mac") == sum(p.op_count("mac") for p in flat)
    assert inner.op_count("mac", 1) == 1312 * 121
    assert inner.unique_param_bidtwidths == [1, 2, 32]
    assert nested.generate_summary() == mixed.generate_summary()


def test_nested_row_of_bnncore_profile_has_the_first_layers_input_precision():
    report = models.profile(build("nested"))
    inner = report.layers[2]
    assert inner.is_model and inner.name == "inner"
    assert inner.input_precision == inner.layers[0].input_precision == 2


def test_functional_model_has_its_input_row():
    profile = models.ModelProfile(build("functional"))
    signal, conv, *_, pool, dense = profile.layer_profiles
    assert signal.name == "signal" and signal.output_shape == (-1, 64, 6)
    assert signal.op_count("mac") is None  # Larq prints "?"
    assert pool.op_count("mac") is None
    # Conv1D: 3x6x32 kernel, 64 output positions; Dense 8 → 4 after pooling.
    assert conv.op_count("mac", 32) == 3 * 6 * 32 * 64
    assert dense.op_count("mac", 32) == 8 * 4


def test_subclassed_model_has_no_shapes():
    profile = models.ModelProfile(build("subclassed"))
    conv, _, dense = profile.layer_profiles
    assert conv.output_shape is None and conv.output_shape_str == "multiple"
    assert conv.op_count("mac") is None and conv.op_profiles == []
    assert conv.weight_count(1) == 3 * 3 * 3 * 32
    assert dense.weight_count(32) == 32 * 10 + 10
    assert profile.op_count("mac") == 0


def test_larq_counts_transposed_convolutions_per_output_pixel():
    # Larq lists tf-keras Conv2D, whose subclass Conv2DTranspose is: its MACs
    # are kernel x output pixels. bnncore's profile counts kernel x input
    # pixels (each input value meets every kernel weight).
    model = keras.Sequential(
        [
            keras.Input((4, 4, 2)),
            lq.layers.QuantConv2DTranspose(3, 2, strides=2, use_bias=False),
        ]
    )
    kernel = 2 * 2 * 3 * 2
    larq_row = models.ModelProfile(model).layer_profiles[0]
    assert larq_row.output_shape == (-1, 8, 8, 3)
    assert larq_row.op_count("mac") == kernel * 8 * 8
    assert models.profile(model).layers[0].macs == kernel * 4 * 4


def test_layers_larq_does_not_count_give_none():
    model = keras.Sequential(
        [
            keras.Input((4, 4, 4, 1)),
            lq.layers.QuantConv3D(2, 1, kernel_quantizer="ste_sign"),
            keras.layers.Reshape((16, 8)),
            lq.layers.QuantDepthwiseConv1D(3, depthwise_quantizer="ste_tern"),
        ]
    )
    conv3d, reshape, depthwise = models.ModelProfile(model).layer_profiles
    assert conv3d.op_count("mac") is None and conv3d.output_pixels is None
    assert reshape.op_count("mac") is None
    assert depthwise.op_count("mac") is None
    assert depthwise.weight_count(2) == 3 * 8
    assert models.profile(model).totals.macs > 0  # bnncore's profile counts them


def test_standalone_layer_profile():
    layer = lq.layers.QuantDense(
        4, input_quantizer="ste_sign", kernel_quantizer="ste_sign"
    )
    inputs = keras.Input((6,))
    layer(inputs)
    profile = models.LayerProfile(layer)
    assert profile.input_precision == 1
    assert profile.output_shape == (-1, 4)
    assert profile.weight_count(1) == 24 and profile.weight_count(32) == 4
    assert profile.op_count("mac", 1) == 24
    assert [w.is_bias() for w in profile.weight_profiles] == [False, True]


def test_quicknet_summary_totals_match_larq_zoos():
    # Larq Zoo's QuickNet printed by Larq (larq_summaries/quicknet_larq_zoo.txt):
    # the totals table verbatim, and the numbers of the layer table's Total row
    # (the row is wider in bnncore because its layer names are longer).
    total_row, *totals = (FIXTURES / "quicknet_larq_zoo.txt").read_text().splitlines()
    printed: list[str] = []
    models.summary(lq.zoo.QuickNet(), print_fn=printed.append)
    assert printed[1].splitlines() == totals
    row = next(line for line in printed[0].splitlines() if line.startswith("| Total"))
    assert row.split() == total_row.split()

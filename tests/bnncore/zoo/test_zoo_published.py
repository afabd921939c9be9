"""Every zoo model at 224×224×3 against the figures Larq Zoo publishes.

Each model is built once per process (``zoo_builds.measured``, shared with the
name tests), measured, and freed before the next one.

The published parameter column of Larq Zoo mixes two counts (verified here
model by model): Keras's ``count_params()`` for most models, the BatchNorm-folded
inference count (2 per BN channel) for the QuickNets and MeliusNet22. Every
published figure matches exactly one of the two rules, so none contradicts its
architecture; the unpublished count is checked against the weight-walk oracle.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import zoo_builds

from bnncore import zoo
from bnncore.zoo import table

# name: (published params, what they count, published size in MiB as printed)
PUBLISHED = {
    "QuickNetSmall": (12_655_688, "inference", "4.00"),
    "QuickNet": (13_234_088, "inference", "4.17"),
    "QuickNetLarge": (23_342_248, "inference", "5.40"),
    "RealToBinaryNet": (11_995_624, "keras", "5.13"),
    "BinaryDenseNet28": (5_150_504, "keras", "4.04"),
    "BinaryDenseNet37": (8_734_120, "keras", "5.13"),
    "BinaryDenseNet37Dilated": (8_734_120, "keras", "5.13"),
    "BinaryDenseNet45": (13_939_240, "keras", "7.35"),
    "MeliusNet22": (6_944_584, "inference", "3.88"),
    "BinaryResNetE18": (11_699_368, "keras", "4.00"),
    "BiRealNet": (11_699_112, "keras", "4.00"),
    "XNORNet": (62_396_768, "keras", "22.77"),
    "BinaryAlexNet": (61_859_192, "keras", "7.45"),
    "DoReFaNet": (62_403_912, "keras", "22.80"),
}
QUICKNET_MEMORY_BYTES = 4_368_032  # stated exactly in the issue

# What each paper / Larq Zoo definition binarizes, counted by hand:
# number of layers with 1-bit kernels, their input quantizers, kernel
# quantizer, constraint, pad_values, and the BatchNorm (momentum, epsilon) set.
_Q, _D, _S = "SteSign(1.25)", "SteSign(1.3)", "SteSign(1.0)"
_QC, _DC, _SC = "WeightClip(1.25)", "WeightClip(1.3)", "WeightClip(1.0)"
_QBN = {(0.99, 1e-3), (0.9, 1e-5)}  # stem: Keras defaults; blocks: 0.9, 1e-5
_BN9 = {(0.9, 1e-5)}
SPEC = {
    "QuickNetSmall": (16, {_Q: 16}, _Q, _QC, 1.0, _QBN),
    "QuickNet": (16, {_Q: 16}, _Q, _QC, 1.0, _QBN),
    "QuickNetLarge": (32, {_Q: 32}, _Q, _QC, 1.0, _QBN),
    "RealToBinaryNet": (16, {_S: 16}, _S, _SC, 0.0, {(0.99, 1e-3)}),
    "BinaryDenseNet28": (23, {_D: 23}, _D, _DC, 0.0, _BN9),
    "BinaryDenseNet37": (32, {_D: 32}, _D, _DC, 0.0, _BN9),
    "BinaryDenseNet37Dilated": (32, {_D: 32}, _D, _DC, 0.0, _BN9),
    "BinaryDenseNet45": (40, {_D: 40}, _D, _DC, 0.0, _BN9),
    "MeliusNet22": (34, {_D: 34}, _D, _DC, 0.0, _BN9),
    "BinaryResNetE18": (16, {_Q: 16}, _Q, _QC, 0.0, _BN9),
    "BiRealNet": (
        16,
        {"ApproxSign": 16},
        "MagnitudeAwareSign(1.0)",
        _SC,
        0.0,
        {(0.8, 1e-3)},
    ),
    "XNORNet": (
        6,
        {_S: 6},
        "XnorWeightScale",
        _SC,
        0.0,
        {(0.9, 1e-5), (0.9, 1e-4), (0.9, 1e-3)},
    ),
    "BinaryAlexNet": (8, {"None": 1, _S: 7}, _S, _SC, 0.0, {(0.9, 1e-3)}),
    "DoReFaNet": (
        6,
        {"DoReFa(2)": 6},
        "MagnitudeAwareSignUnclipped",
        "None",
        0.0,
        {(0.9, 1e-4)},
    ),
}

DOCS = Path(__file__).resolve().parents[3] / "docs" / "zoo.md"


measured = zoo_builds.measured


NAMES = list(PUBLISHED)


def test_the_zoo_lists_exactly_the_published_models():
    assert zoo.names() == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_default_input_is_imagenet_with_1000_classes(name):
    m = measured(name)
    assert m.input_shape == (None, 224, 224, 3)
    assert m.output_shape == (None, 1000)


@pytest.mark.parametrize("name", NAMES)
def test_params_and_memory_match_the_published_figures(name):
    m = measured(name)
    published, rule, mib = PUBLISHED[name]
    # Keras's count is the sum of all weight elements, BN included in full.
    assert m.keras_params == m.counts.keras_params
    assert m.counts.inference_params < m.keras_params  # every model has BN
    counted = m.keras_params if rule == "keras" else m.counts.inference_params
    assert counted == published
    assert f"{m.counts.memory_bytes / 2**20:.2f}" == mib
    if name == "QuickNet":
        assert m.counts.memory_bytes == QUICKNET_MEMORY_BYTES


@pytest.mark.parametrize("name", NAMES)
def test_profile_totals_agree_with_the_oracle(name):
    m = measured(name)
    assert m.totals.params == m.counts.keras_params
    assert m.totals.inference_params == m.counts.inference_params
    assert m.totals.memory_bytes == m.counts.memory_bytes
    published, rule, mib = PUBLISHED[name]
    by_rule = m.totals.params if rule == "keras" else m.totals.inference_params
    assert by_rule == published
    assert f"{m.totals.memory_bytes / 2**20:.2f}" == mib
    assert zoo.entry(name).published_params == PUBLISHED[name][0]
    assert zoo.entry(name).params_rule == PUBLISHED[name][1]


@pytest.mark.parametrize("name", NAMES)
def test_binarized_layers_follow_the_definition(name):
    m = measured(name)
    n, inputs, kernel, constraint, pad, batch_norms = SPEC[name]
    assert len(m.binary) == n
    assert Counter(b[0] for b in m.binary) == Counter(inputs)
    assert {b[1] for b in m.binary} == {kernel}
    assert {b[2] for b in m.binary} == {constraint}
    assert {b[3] for b in m.binary} == {pad}
    assert m.batch_norms == batch_norms


@pytest.mark.parametrize("name", NAMES)
def test_every_layer_with_a_kernel_has_macs(name):
    m = measured(name)
    assert m.kernel_layers
    assert [n for n in m.kernel_layers if m.macs_by_layer[n] <= 0] == []
    assert m.totals.macs == sum(m.macs_by_layer.values())


def test_binary_alexnet_macs_by_hand():
    # conv k*k*c_in*c_out*H*W at 56, 27, 13, 13, 13 pixels; dense in*out.
    float_macs = 11 * 11 * 3 * 64 * 56 * 56  # the first conv sees the image
    binary_macs = (
        5 * 5 * 64 * 192 * 27 * 27
        + 3 * 3 * 192 * 384 * 13 * 13
        + 3 * 3 * 384 * 384 * 13 * 13
        + 3 * 3 * 384 * 256 * 13 * 13
        + 6 * 6 * 256 * 4096
        + 4096 * 4096
        + 4096 * 1000
    )
    totals = measured("BinaryAlexNet").totals
    assert totals.macs == float_macs + binary_macs
    assert totals.binary_mac_ratio == pytest.approx(
        binary_macs / (float_macs + binary_macs), rel=1e-12
    )


def test_dorefanet_has_no_binarized_macs():
    # 2-bit activations times 1-bit weights are 2-bit MACs, not binary ones.
    totals = measured("DoReFaNet").totals
    assert totals.macs > 0
    assert totals.binary_mac_ratio == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_docs_table_is_generated_from_the_models(name):
    text = DOCS.read_text(encoding="utf-8")
    generated = text[text.index(table.START) : text.index(table.END)]
    lines = [line for line in generated.splitlines() if line.startswith("| ")]
    assert lines[0] == table.header()[0]
    assert len(lines) == 1 + len(NAMES)
    assert lines[1 + NAMES.index(name)] == measured(name).table_row

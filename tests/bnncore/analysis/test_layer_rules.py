"""The table of layer rules against hand-computed counts and Keras itself.

Each case builds the real Keras (or bnncore) layer, then applies the layer's
rule to it (the rule reads its constructor arguments as attributes) and
checks its answers against two independent oracles: the counts worked out by
hand in the table below, and what Keras says of the built layer (output
shape, weight names and shapes, ``count_params()``).
"""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace
from typing import Any, NamedTuple

import keras
import pytest

from bnncore import layers as bl
from bnncore.analysis.layer_rules import (
    RULES,
    RuleError,
    fixed_elements,
    intermediate_elements,
    rule_for,
    rule_of,
)

S = "ste_sign"


class Case(NamedTuple):
    make: Any  # the layer's class
    kwargs: dict[str, Any]
    shape: tuple[int, ...]  # input shape, batch excluded
    out: tuple[int, ...]  # hand-computed output shape
    weights: dict[str, tuple[int, ...]]  # hand-computed weight shapes
    macs: int  # hand-computed MACs at batch 1


Q = {"input_quantizer": S, "kernel_quantizer": S}

CASES = {
    # Dense: in × units weights, used once per position of the leading axes.
    "Dense": Case(keras.layers.Dense, {"units": 5}, (3,), (5,),
                  {"kernel": (3, 5), "bias": (5,)}, 3 * 5),
    "Dense-rank3": Case(keras.layers.Dense, {"units": 5, "use_bias": False}, (4, 3),
                        (4, 5), {"kernel": (3, 5)}, 3 * 5 * 4),
    "QuantDense": Case(bl.QuantDense, {"units": 5, **Q}, (3,), (5,),
                       {"kernel": (3, 5), "bias": (5,)}, 3 * 5),
    # Convolutions: kernel weights × output positions.
    "Conv1D-causal-groups": Case(
        keras.layers.Conv1D,
        {"filters": 4, "kernel_size": 3, "padding": "causal", "groups": 2},
        (9, 4), (9, 4), {"kernel": (3, 2, 4), "bias": (4,)}, 3 * 2 * 4 * 9),
    "Conv2D-same": Case(keras.layers.Conv2D,
                        {"filters": 8, "kernel_size": 3, "padding": "same"},
                        (6, 6, 3), (6, 6, 8), {"kernel": (3, 3, 3, 8), "bias": (8,)},
                        3 * 3 * 3 * 8 * 6 * 6),
    "Conv2D-stride": Case(keras.layers.Conv2D,
                          {"filters": 8, "kernel_size": 3, "strides": 2},
                          (7, 7, 3), (3, 3, 8), {"kernel": (3, 3, 3, 8), "bias": (8,)},
                          3 * 3 * 3 * 8 * 3 * 3),
    "Conv2D-dilated": Case(keras.layers.Conv2D,
                           {"filters": 4, "kernel_size": 3, "dilation_rate": 2},
                           (7, 7, 2), (3, 3, 4), {"kernel": (3, 3, 2, 4), "bias": (4,)},
                           3 * 3 * 2 * 4 * 3 * 3),
    "Conv3D": Case(keras.layers.Conv3D, {"filters": 2, "kernel_size": 2},
                   (3, 3, 3, 1), (2, 2, 2, 2),
                   {"kernel": (2, 2, 2, 1, 2), "bias": (2,)}, 2 * 2 * 2 * 2 * 8),
    "QuantConv2D": Case(bl.QuantConv2D,
                        {"filters": 4, "kernel_size": 3, "padding": "same",
                         "pad_values": 1.0, **Q},
                        (5, 5, 2), (5, 5, 4), {"kernel": (3, 3, 2, 4), "bias": (4,)},
                        3 * 3 * 2 * 4 * 25),
    "QuantConv1D": Case(bl.QuantConv1D, {"filters": 2, "kernel_size": 2, **Q},
                        (4, 3), (3, 2), {"kernel": (2, 3, 2), "bias": (2,)},
                        2 * 3 * 2 * 3),
    # Transposed: kernel weights × input positions (every input meets every
    # weight); valid length = n·s + max(k - s, 0).
    "Conv2DTranspose": Case(keras.layers.Conv2DTranspose,
                            {"filters": 4, "kernel_size": 3, "strides": 2},
                            (3, 3, 2), (7, 7, 4),
                            {"kernel": (3, 3, 4, 2), "bias": (4,)},
                            3 * 3 * 4 * 2 * 3 * 3),
    "Conv2DTranspose-same": Case(keras.layers.Conv2DTranspose,
                                 {"filters": 4, "kernel_size": 3, "strides": 2,
                                  "padding": "same", "use_bias": False},
                                 (3, 3, 2), (6, 6, 4), {"kernel": (3, 3, 4, 2)},
                                 3 * 3 * 4 * 2 * 3 * 3),
    "Conv1DTranspose": Case(keras.layers.Conv1DTranspose,
                            {"filters": 3, "kernel_size": 2}, (5, 2), (6, 3),
                            {"kernel": (2, 3, 2), "bias": (3,)}, 2 * 3 * 2 * 5),
    "Conv3DTranspose": Case(keras.layers.Conv3DTranspose,
                            {"filters": 1, "kernel_size": 2}, (2, 2, 2, 1),
                            (3, 3, 3, 1), {"kernel": (2, 2, 2, 1, 1), "bias": (1,)},
                            8 * 8),
    "QuantConv2DTranspose": Case(bl.QuantConv2DTranspose,
                                 {"filters": 2, "kernel_size": 2, **Q}, (2, 2, 1),
                                 (3, 3, 2), {"kernel": (2, 2, 2, 1), "bias": (2,)},
                                 2 * 2 * 2 * 1 * 4),
    # Depthwise: k·k·C·multiplier weights × output positions.
    "DepthwiseConv2D": Case(keras.layers.DepthwiseConv2D,
                            {"kernel_size": 3, "depth_multiplier": 2}, (5, 5, 3),
                            (3, 3, 6), {"kernel": (3, 3, 3, 2), "bias": (6,)},
                            3 * 3 * 3 * 2 * 9),
    "DepthwiseConv1D": Case(keras.layers.DepthwiseConv1D, {"kernel_size": 3},
                            (6, 2), (4, 2), {"kernel": (3, 2, 1), "bias": (2,)},
                            3 * 2 * 4),
    "QuantDepthwiseConv2D": Case(bl.QuantDepthwiseConv2D,
                                 {"kernel_size": 2, "input_quantizer": S,
                                  "depthwise_quantizer": S, "use_bias": False},
                                 (3, 3, 2), (2, 2, 2), {"kernel": (2, 2, 2, 1)},
                                 2 * 2 * 2 * 4),
    # Separable: both kernels × output positions.
    "SeparableConv2D": Case(keras.layers.SeparableConv2D,
                            {"filters": 4, "kernel_size": 3, "depth_multiplier": 2},
                            (5, 5, 3), (3, 3, 4),
                            {"depthwise_kernel": (3, 3, 3, 2),
                             "pointwise_kernel": (1, 1, 6, 4), "bias": (4,)},
                            (3 * 3 * 3 * 2 + 6 * 4) * 9),
    "SeparableConv1D": Case(keras.layers.SeparableConv1D,
                            {"filters": 2, "kernel_size": 3, "padding": "same"},
                            (4, 3), (4, 2),
                            {"depthwise_kernel": (3, 3, 1),
                             "pointwise_kernel": (1, 3, 2), "bias": (2,)},
                            (9 + 6) * 4),
    "QuantSeparableConv2D": Case(bl.QuantSeparableConv2D,
                                 {"filters": 2, "kernel_size": 2, "input_quantizer": S,
                                  "depthwise_quantizer": S, "pointwise_quantizer": S},
                                 (3, 3, 1), (2, 2, 2),
                                 {"depthwise_kernel": (2, 2, 1, 1),
                                  "pointwise_kernel": (1, 1, 1, 2), "bias": (2,)},
                                 (4 + 2) * 4),
    # Locally connected: no weight sharing, each weight used once.
    "LocallyConnected2D": Case(bl.LocallyConnected2D, {"filters": 2, "kernel_size": 3},
                               (5, 5, 1), (3, 3, 2),
                               {"kernel": (9, 9, 2), "bias": (3, 3, 2)}, 9 * 9 * 2),
    "LocallyConnected1D": Case(bl.LocallyConnected1D,
                               {"filters": 3, "kernel_size": 2, "strides": 2},
                               (6, 2), (3, 3), {"kernel": (3, 4, 3), "bias": (3, 3)},
                               3 * 4 * 3),
    "QuantLocallyConnected1D": Case(bl.QuantLocallyConnected1D,
                                    {"filters": 1, "kernel_size": 2, **Q}, (3, 2),
                                    (2, 1), {"kernel": (2, 4, 1), "bias": (2, 1)},
                                    2 * 4 * 1),
    # Element-wise weights: no MACs.
    "BatchNormalization": Case(keras.layers.BatchNormalization, {}, (4, 4, 3),
                               (4, 4, 3),
                               {"gamma": (3,), "beta": (3,), "moving_mean": (3,),
                                "moving_variance": (3,)}, 0),
    "BatchNormalization-bare": Case(keras.layers.BatchNormalization,
                                    {"center": False, "scale": False}, (2, 3), (2, 3),
                                    {"moving_mean": (3,), "moving_variance": (3,)}, 0),
    "LayerNormalization": Case(keras.layers.LayerNormalization, {}, (5, 4), (5, 4),
                               {"gamma": (4,), "beta": (4,)}, 0),
    "PReLU-shared": Case(keras.layers.PReLU, {"shared_axes": [1, 2]}, (4, 4, 3),
                         (4, 4, 3), {"alpha": (1, 1, 3)}, 0),
    # No weights: shapes only.
    "MaxPooling2D": Case(keras.layers.MaxPooling2D, {"pool_size": 2}, (5, 5, 3),
                         (2, 2, 3), {}, 0),
    "AveragePooling1D-same": Case(keras.layers.AveragePooling1D,
                                  {"pool_size": 3, "strides": 1, "padding": "same"},
                                  (5, 2), (5, 2), {}, 0),
    "MaxPooling3D": Case(keras.layers.MaxPooling3D, {"pool_size": 2, "strides": 1},
                         (3, 3, 3, 1), (2, 2, 2, 1), {}, 0),
    "GlobalAveragePooling2D-keepdims": Case(keras.layers.GlobalAveragePooling2D,
                                            {"keepdims": True}, (4, 4, 3), (1, 1, 3),
                                            {}, 0),
    "GlobalMaxPooling1D": Case(keras.layers.GlobalMaxPooling1D, {}, (4, 3), (3,),
                               {}, 0),
    "Flatten": Case(keras.layers.Flatten, {}, (2, 3, 4), (24,), {}, 0),
    "Reshape": Case(keras.layers.Reshape, {"target_shape": (-1, 2)}, (6,), (3, 2),
                    {}, 0),
    "Permute": Case(keras.layers.Permute, {"dims": (2, 1)}, (3, 4), (4, 3), {}, 0),
    "ZeroPadding2D": Case(keras.layers.ZeroPadding2D, {"padding": ((1, 2), (0, 1))},
                          (3, 3, 1), (6, 4, 1), {}, 0),
    "ZeroPadding1D": Case(keras.layers.ZeroPadding1D, {"padding": 2}, (3, 2),
                          (7, 2), {}, 0),
    "Cropping1D": Case(keras.layers.Cropping1D, {"cropping": (1, 2)}, (6, 2),
                       (3, 2), {}, 0),
    "Cropping2D": Case(keras.layers.Cropping2D, {"cropping": ((1, 0), (1, 1))},
                       (4, 4, 1), (3, 2, 1), {}, 0),
    "UpSampling2D": Case(keras.layers.UpSampling2D, {"size": (2, 3)}, (2, 2, 1),
                         (4, 6, 1), {}, 0),
    "UpSampling1D": Case(keras.layers.UpSampling1D, {"size": 3}, (2, 4), (6, 4),
                         {}, 0),
    "Softmax": Case(keras.layers.Softmax, {}, (3, 4), (3, 4), {}, 0),
    "Dropout": Case(keras.layers.Dropout, {"rate": 0.5}, (3, 4), (3, 4), {}, 0),
    "Activation": Case(keras.layers.Activation, {"activation": "relu"}, (3,), (3,),
                       {}, 0),
}  # fmt: skip


def _built(case: Case) -> keras.layers.Layer:
    layer = case.make(**case.kwargs)
    layer(keras.Input(case.shape))
    return layer


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_rule_answers_equal_hand_counts_and_keras(case: Case) -> None:
    layer = _built(case)
    rule = rule_of(layer)
    assert rule is not None and rule.name == type(layer).__name__
    out = rule.output_shape(layer, [case.shape])
    assert out == case.out
    assert out == tuple(layer.output.shape[1:])  # Keras's own answer
    weights = rule.weights(layer, [case.shape], out)
    assert {w.name: w.shape for w in weights} == case.weights
    assert {w.name: w.shape for w in weights} == {
        v.name: tuple(v.shape) for v in layer.weights
    }
    assert sum(w.size for w in weights) == layer.count_params()
    assert [w.trainable for w in weights] == [v.trainable for v in layer.weights]
    sizes = {w.name: w.size for w in weights}
    terms = rule.macs(layer, [case.shape], out) if rule.macs else ()
    assert sum(sizes[t.weight] * t.positions for t in terms) == case.macs
    assert (rule.macs is not None) == (case.macs > 0)


@pytest.mark.parametrize(
    "cls",
    [getattr(bl, n) for n in bl.__all__ if n.startswith("Quant") and "izer" not in n],
    ids=lambda cls: cls.__name__,
)
def test_quantizer_arguments_equal_the_layer_classes(cls: Any) -> None:
    """The table's quantizer arguments are the ones the bnncore layer takes,
    each quantizing the weight the layer says it does."""
    rule = rule_for(cls.__name__)
    assert dict(rule.quantized) == cls._kernel_quantizers
    assert set(rule.quantizers) == {"input_quantizer", *cls._kernel_quantizers}
    plain = rule_for(cls.__name__.removeprefix("Quant"))
    assert (plain.quantized, plain.quantizers) == ((), ())
    assert plain.macs is rule.macs and plain.weights is rule.weights


def test_batch_normalization_folds_into_two_values_per_channel() -> None:
    rule = rule_for("BatchNormalization")
    assert rule.fold is not None
    # gamma, beta, mean and variance (4 × 3 values) fold into a scale and an
    # offset per channel.
    assert rule.fold.params(3) == 6
    assert [r for r in RULES.values() if r.fold is not None] == [rule]


def test_normalization_weights_by_hand() -> None:
    rule = rule_for("Normalization")
    learned = SimpleNamespace(axis=-1, mean=None, variance=None)
    weights = rule.weights(learned, [(5, 3)], (5, 3))
    assert [(w.name, w.shape, w.dtype) for w in weights] == [
        ("mean", (3,), "float32"),
        ("variance", (3,), "float32"),
        ("count", (), "int64"),
    ]
    given = SimpleNamespace(axis=-1, mean=[0.0, 1.0, 2.0], variance=1.0)
    assert rule.weights(given, [(5, 3)], (5, 3)) == ()


def test_merges_broadcast_and_concatenate_by_hand() -> None:
    add, concat = rule_for("Add"), rule_for("Concatenate")
    assert add.output_shape(SimpleNamespace(), [(1, 1, 3), (4, 5, 3)]) == (4, 5, 3)
    assert concat.output_shape(SimpleNamespace(axis=-1), [(2, 3), (2, 5)]) == (2, 8)
    assert concat.output_shape(SimpleNamespace(axis=1), [(2, 3), (4, 3)]) == (6, 3)


def _no_factor(argument: str) -> int:
    return 0


def test_intermediate_elements_by_hand() -> None:
    conv = SimpleNamespace(filters=8, kernel_size=3, strides=1, padding="same",
                           groups=1, use_bias=True)  # fmt: skip
    rule = rule_for("Conv2D")
    out = rule.output_shape(conv, [(6, 6, 3)])
    # relu (1 per output element) + the bias addition's result + the input
    # padded by one on each side (8 × 8 × 3).
    factors = {"activation": 1}
    elements = intermediate_elements(
        rule, conv, [(6, 6, 3)], out, lambda a: factors.get(a, 0)
    )
    assert elements == 6 * 6 * 8 + 6 * 6 * 8 + 8 * 8 * 3
    # Batch normalization: three tensors of the input's size.
    bn = rule_for("BatchNormalization")
    assert intermediate_elements(bn, SimpleNamespace(), [(4, 4, 3)], (4, 4, 3),
                                 _no_factor) == 3 * 48  # fmt: skip
    # A quantized kernel: its copy times the quantizer's factor (4 for ste_sign).
    quant = rule_for("QuantConv2D")
    fixed = fixed_elements(
        quant, conv, [(6, 6, 3)], out, lambda a: 4 if a == "kernel_quantizer" else 0
    )
    assert fixed == 4 * 3 * 3 * 3 * 8


@pytest.mark.parametrize(
    ("name", "layer", "shapes", "field", "parts"),
    [
        ("Conv2D", SimpleNamespace(filters=1, kernel_size=3, padding="valid"),
         [(2, 2, 1)], None, ("input size 2", "extent 3", "padding='valid'")),
        ("Conv2D", SimpleNamespace(filters=1, kernel_size=1, padding="valid",
                                   type="Conv2D"),
         [(2, 1)], None, ("Conv2D expects inputs of rank 3", "[2, 1]")),
        ("Cropping1D", SimpleNamespace(cropping=(2, 2)), [(4, 1)], "cropping",
         ("[[2, 2]]", "leaves nothing", "[4, 1]")),
        ("Reshape", SimpleNamespace(target_shape=(4, 4)), [(6,)], "target_shape",
         ("[4, 4] has 16 elements", "[6] has 6")),
        ("Concatenate", SimpleNamespace(axis=-1), [(2, 3), (3, 3)], None,
         ("differ outside the concatenation axis -1",)),
        ("BatchNormalization", SimpleNamespace(axis=1), [(4, 4, 3)], "axis",
         ("1 is not the last axis", "allowed: -1 or 3")),
        ("Dropout", SimpleNamespace(noise_shape=(None, 2)), [(3,)], "noise_shape",
         ("(None, 2)", "[None, 3]")),
    ],
    ids=["too-small", "rank", "crop-all", "reshape", "concat", "bn-axis", "noise"],
)  # fmt: skip
def test_refusals_name_the_argument_and_values(
    name: str, layer: Any, shapes: list[tuple[int, ...]], field: str | None,
    parts: tuple[str, ...],
) -> None:  # fmt: skip
    with pytest.raises(RuleError) as caught:
        rule_for(name).output_shape(layer, shapes)
    assert caught.value.field == field
    for part in parts:
        assert part in caught.value.message, (part, caught.value.message)


def test_groups_must_divide_the_input_channels() -> None:
    conv = SimpleNamespace(filters=4, kernel_size=1, groups=3, use_bias=False)
    with pytest.raises(RuleError, match="input channels 4 are not a multiple of"):
        rule_for("Conv1D").weights(conv, [(5, 4)], (5, 4))


def test_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"'Conv4D'.*Conv3D"):
        rule_for("Conv4D")


def test_subclasses_count_as_their_base() -> None:
    class Wide(keras.layers.Dense):
        pass

    assert rule_of(Wide(3)) is rule_for("Dense")
    assert rule_of(keras.layers.Lambda(lambda x: x)) is None


def test_profile_only_rules_are_not_estimable() -> None:
    assert not rule_for("Embedding").estimable
    assert rule_for("Embedding").weights_without_macs
    estimable = [r for r in RULES.values() if r.estimable]
    assert all(r.output_shape is not None for r in estimable)
    assert {r.name for r in RULES.values() if not r.estimable} == {
        "Embedding",
        "GroupNormalization",
    }


def test_imports_without_tensorflow() -> None:
    code = (
        "import sys\n"
        "import bnncore_runtime.layer_rules as r\n"
        "assert r.rule_for('QuantConv2D').macs is not None\n"
        "heavy = {'tensorflow', 'keras', 'numpy'} & set(sys.modules)\n"
        "assert not heavy - {'numpy'}, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

"""The checks a generated layer spec adds to its constructor's arguments.

Each case is refused with the message the hand-written specs gave (the field,
the value received and what is allowed), and the same layer with the value
fixed is accepted and builds in Keras, which is the oracle that the refusal is
about the value and nothing else.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from bnncore_service.schemas.layers import AnyLayer

LAYER: TypeAdapter[Any] = TypeAdapter(AnyLayer)

CASES = [
    (
        {"type": "Conv2D", "filters": 6, "kernel_size": 3, "groups": 4},
        {"groups": 3},
        "filters must be a multiple of groups (received filters=6, groups=4)",
    ),
    (
        {
            "type": "QuantConv1D",
            "filters": 4,
            "kernel_size": 3,
            "padding": "causal",
            "pad_values": 1.0,
        },
        {"pad_values": 0.0},
        "padding='causal' pads with zeros; pad_values must be 0 (received "
        "padding='causal', pad_values=1.0)",
    ),
    (
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "strides": 2},
        {"dilation_rate": 1},
        "strides > 1 cannot be combined with dilation_rate > 1 (received "
        "strides=[2, 2], dilation_rate=[2, 2])",
    ),
    (
        {"type": "SeparableConv1D", "filters": 4, "kernel_size": 3, "strides": 2},
        {"dilation_rate": 1},
        "strides > 1 cannot be combined with dilation_rate > 1 (received "
        "strides=[2], dilation_rate=[2])",
    ),
    (
        {"type": "Conv2DTranspose", "filters": 4, "kernel_size": [3, 3, 3]},
        {"kernel_size": [3, 3]},
        "kernel_size: expected an integer or a list of 2 integers, received [3, 3, 3]",
    ),
    (
        {"type": "UpSampling2D", "size": [2, 2, 2]},
        {"size": [2, 3]},
        "size: expected an integer or a list of 2 integers, received [2, 2, 2]",
    ),
    (
        {"type": "Normalization", "mean": 1.0},
        {"variance": 2.0},
        "mean and variance are given together or not at all (received "
        "mean=values, variance=null)",
    ),
    (
        {"type": "Normalization", "mean": [1.0, 2.0], "variance": 1.0},
        {"variance": [1.0, 2.0]},
        "mean and variance must have the same shape (received mean: 2 values, "
        "variance: a number)",
    ),
    (
        {"type": "Reshape", "target_shape": [-1, -1]},
        {"target_shape": [-1, 2]},
        "expected positive sizes and at most one -1, received [-1, -1]",
    ),
    (
        {"type": "Permute", "dims": [1, 3]},
        {"dims": [2, 1]},
        "expected a permutation of 1..2, received [1, 3]",
    ),
    (
        {"type": "ZeroPadding2D", "padding": [1, 2, 3]},
        {"padding": [1, 2]},
        "expected an integer, 2 integers or 2 [before, after] pairs, received 3 items",
    ),
    (
        {"type": "ZeroPadding2D", "padding": [1, [2, 3]]},
        {"padding": [[1, 1], [2, 3]]},
        "expected all integers or all [before, after] pairs",
    ),
    (
        {"type": "Cropping3D", "cropping": [1, 1]},
        {"cropping": [1, 1, 1]},
        "expected an integer, 3 integers or 3 [before, after] pairs, received 2 items",
    ),
]


@pytest.mark.parametrize(
    ("layer", "fix", "message"),
    CASES,
    ids=[f"{layer['type']}-{i}" for i, (layer, _, _) in enumerate(CASES)],
)
def test_a_check_refuses_the_value_and_only_the_value(
    layer: dict[str, Any], fix: dict[str, Any], message: str
) -> None:
    bad = dict(layer)
    if "dilation_rate" in fix:
        bad["dilation_rate"] = 2
    with pytest.raises(ValidationError) as caught:
        LAYER.validate_python(bad)
    assert [error["msg"] for error in caught.value.errors()] == [
        f"Value error, {message}"
    ]
    fixed = LAYER.validate_python({**bad, **fix})
    assert fixed.create().name  # Keras accepts the arguments


CONV = {"filters": 4, "kernel_size": 3}
REFUSALS = [
    ("Conv2D", {**CONV, "padding": "causal"}, "padding"),
    ("LocallyConnected1D", {**CONV, "padding": "same"}, "padding"),
    ("Conv2D", {**CONV, "data_format": "channels_first"}, "data_format"),
    ("LayerNormalization", {"rms_scaling": True}, "rms_scaling"),
    ("Dropout", {"rate": 1.0}, "rate"),
    ("Dense", {"units": 3, "lora_rank": 2}, "lora_rank"),
    ("Conv2DTranspose", {**CONV, "output_padding": 1}, "output_padding"),
    ("BatchNormalization", {"renorm": True}, "renorm"),
    ("SteSign", {"metrics": ["flip_ratio"]}, "metrics"),
    ("QuantDense", {"units": 3, "kernel_quantizer": "noop"}, "kernel_quantizer"),
]


@pytest.mark.parametrize(
    ("type_", "arguments", "field"),
    REFUSALS,
    ids=[f"{type_}-{field}" for type_, _, field in REFUSALS],
)
def test_refused_arguments_name_the_field(
    type_: str, arguments: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        LAYER.validate_python({"type": type_, **arguments})
    assert field in {str(part) for e in caught.value.errors() for part in e["loc"]}


def test_averagepooling_takes_the_pool_size_of_maxpooling() -> None:
    average = LAYER.validate_python({"type": "AveragePooling2D"})
    assert average.pool_size == (2, 2)
    assert average.create().get_config()["pool_size"] == (2, 2)

"""The analytic estimate equals the profile of the built model, for every layer type.

The oracle is ``bnncore.models.profile`` on the Keras model the builder made;
the estimate never builds anything, so agreement on every field (shapes,
weights and their bit widths, params, memory, MACs, BOPs, activations) checks
the estimate's shape inference and counting rules layer type by layer type.
"""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest
from pydantic import TypeAdapter

from bnncore.models import profile
from bnncore_service.builder import build, plan
from bnncore_service.config import Settings
from bnncore_service.estimate import DefinitionError, LimitError
from bnncore_service.schemas.definitions import Definition
from bnncore_service.schemas.layers import LAYER_TYPES

DEFINITION = TypeAdapter(Definition)
SETTINGS = Settings(data_dir="unused")

LAYER_FIELDS = (
    "input_precision",
    "output_shape",
    "params",
    "trainable_params",
    "non_trainable_params",
    "inference_params",
    "params_by_bits",
    "memory_bits",
    "macs",
    "macs_by_bits",
    "bops",
    "activation_elements",
)
TOTAL_FIELDS = (
    "params",
    "trainable_params",
    "non_trainable_params",
    "inference_params",
    "params_by_bits",
    "memory_bits",
    "memory_bytes",
    "macs",
    "macs_by_bits",
    "bops",
)

S, T = "ste_sign", "ste_tern"
ELEMENTWISE = [
    ("Activation", {"activation": S}),
    ("ReLU", {"max_value": 2.0, "negative_slope": 0.1}),
    ("LeakyReLU", {}),
    ("ELU", {"alpha": 0.5}),
    ("Softmax", {}),
    ("Dropout", {"rate": 0.5}),
    ("Rescaling", {"scale": 0.5, "offset": 1.0}),
    ("Identity", {}),
    ("SteSign", {"clip_value": 0.5}),
    ("ApproxSign", {}),
    ("SwishSign", {"beta": 2.0}),
    ("SteHeaviside", {}),
    ("MagnitudeAwareSign", {}),
    ("SteTern", {"threshold_value": 0.1}),
    ("DoReFa", {"k_bit": 4}),
    ("NoOp", {"precision": 8}),
]

# (case id, input shape, layer) — one model per case.
CASES: list[tuple[str, list[int], dict[str, Any]]] = [
    ("Dense", [6], {"type": "Dense", "units": 3}),
    ("Dense-frozen", [6], {"type": "Dense", "units": 3, "trainable": False}),
    (
        "QuantDense",
        [2, 6],
        {"type": "QuantDense", "units": 3, "input_quantizer": S, "kernel_quantizer": T},
    ),
    (
        "Conv1D",
        [9, 2],
        {
            "type": "Conv1D",
            "filters": 4,
            "kernel_size": 3,
            "strides": 2,
            "padding": "same",
        },
    ),
    (
        "QuantConv1D",
        [9, 4],
        {
            "type": "QuantConv1D",
            "filters": 4,
            "kernel_size": 3,
            "padding": "causal",
            "groups": 2,
            "kernel_quantizer": S,
            "input_quantizer": S,
        },
    ),
    (
        "QuantConv1D-same-one",
        [9, 4],
        {
            "type": "QuantConv1D",
            "filters": 4,
            "kernel_size": 3,
            "padding": "same",
            "kernel_quantizer": S,
            "input_quantizer": S,
            "pad_values": 1.0,
        },
    ),
    (
        "Conv2D",
        [7, 6, 3],
        {"type": "Conv2D", "filters": 2, "kernel_size": [3, 2], "dilation_rate": 2},
    ),
    (
        "QuantConv2D",
        [7, 7, 2],
        {
            "type": "QuantConv2D",
            "filters": 3,
            "kernel_size": 3,
            "strides": 2,
            "padding": "same",
            "input_quantizer": {"type": "DoReFa", "k_bit": 2},
            "kernel_quantizer": {"type": "DoReFa", "k_bit": 3, "mode": "weights"},
        },
    ),
    ("Conv3D", [5, 5, 5, 1], {"type": "Conv3D", "filters": 2, "kernel_size": 2}),
    (
        "QuantConv3D",
        [5, 4, 5, 2],
        {
            "type": "QuantConv3D",
            "filters": 2,
            "kernel_size": 3,
            "padding": "same",
            "kernel_quantizer": S,
            "use_bias": False,
        },
    ),
    (
        "Conv1DTranspose",
        [5, 2],
        {"type": "Conv1DTranspose", "filters": 3, "kernel_size": 3, "strides": 2},
    ),
    (
        "QuantConv1DTranspose",
        [5, 2],
        {
            "type": "QuantConv1DTranspose",
            "filters": 3,
            "kernel_size": 4,
            "strides": 2,
            "padding": "same",
            "kernel_quantizer": S,
        },
    ),
    (
        "Conv2DTranspose",
        [4, 3, 2],
        {
            "type": "Conv2DTranspose",
            "filters": 2,
            "kernel_size": [3, 2],
            "strides": [2, 1],
        },
    ),
    (
        "QuantConv2DTranspose",
        [4, 4, 2],
        {
            "type": "QuantConv2DTranspose",
            "filters": 2,
            "kernel_size": 3,
            "strides": 3,
            "kernel_quantizer": S,
            "input_quantizer": S,
        },
    ),
    (
        "Conv3DTranspose",
        [3, 3, 3, 1],
        {"type": "Conv3DTranspose", "filters": 2, "kernel_size": 2, "strides": 2},
    ),
    (
        "QuantConv3DTranspose",
        [3, 3, 3, 2],
        {
            "type": "QuantConv3DTranspose",
            "filters": 1,
            "kernel_size": 3,
            "padding": "same",
            "kernel_quantizer": S,
        },
    ),
    (
        "DepthwiseConv1D",
        [8, 3],
        {"type": "DepthwiseConv1D", "kernel_size": 3, "depth_multiplier": 2},
    ),
    (
        "QuantDepthwiseConv1D",
        [8, 3],
        {
            "type": "QuantDepthwiseConv1D",
            "kernel_size": 3,
            "padding": "same",
            "strides": 2,
            "depthwise_quantizer": S,
            "input_quantizer": S,
            "pad_values": 1.0,
        },
    ),
    (
        "DepthwiseConv2D",
        [6, 6, 2],
        {"type": "DepthwiseConv2D", "kernel_size": 3, "strides": 2},
    ),
    (
        "QuantDepthwiseConv2D",
        [6, 6, 2],
        {
            "type": "QuantDepthwiseConv2D",
            "kernel_size": 3,
            "depth_multiplier": 3,
            "depthwise_quantizer": T,
            "use_bias": False,
        },
    ),
    (
        "SeparableConv1D",
        [8, 3],
        {"type": "SeparableConv1D", "filters": 4, "kernel_size": 3},
    ),
    (
        "QuantSeparableConv1D",
        [8, 3],
        {
            "type": "QuantSeparableConv1D",
            "filters": 4,
            "kernel_size": 3,
            "padding": "same",
            "depth_multiplier": 2,
            "depthwise_quantizer": S,
            "pointwise_quantizer": T,
            "input_quantizer": S,
        },
    ),
    (
        "SeparableConv2D",
        [6, 6, 2],
        {
            "type": "SeparableConv2D",
            "filters": 3,
            "kernel_size": 3,
            "strides": 2,
            "padding": "same",
        },
    ),
    (
        "QuantSeparableConv2D",
        [6, 6, 2],
        {
            "type": "QuantSeparableConv2D",
            "filters": 3,
            "kernel_size": 3,
            "depthwise_quantizer": S,
            "pointwise_quantizer": S,
        },
    ),
    (
        "LocallyConnected1D",
        [7, 2],
        {"type": "LocallyConnected1D", "filters": 3, "kernel_size": 3, "strides": 2},
    ),
    (
        "QuantLocallyConnected1D",
        [7, 2],
        {
            "type": "QuantLocallyConnected1D",
            "filters": 3,
            "kernel_size": 2,
            "kernel_quantizer": S,
            "input_quantizer": S,
        },
    ),
    (
        "LocallyConnected2D",
        [5, 5, 2],
        {"type": "LocallyConnected2D", "filters": 2, "kernel_size": 3},
    ),
    (
        "QuantLocallyConnected2D",
        [5, 6, 1],
        {
            "type": "QuantLocallyConnected2D",
            "filters": 2,
            "kernel_size": [2, 3],
            "strides": [1, 2],
            "kernel_quantizer": S,
            "use_bias": False,
        },
    ),
    ("BatchNormalization", [4, 4, 3], {"type": "BatchNormalization", "center": False}),
    ("PReLU", [4, 5, 3], {"type": "PReLU", "shared_axes": [1, 2]}),
    *[(name, [4, 3], {"type": name, **args}) for name, args in ELEMENTWISE],
    ("MaxPooling1D", [9, 2], {"type": "MaxPooling1D", "pool_size": 3, "strides": 2}),
    ("MaxPooling2D", [7, 7, 2], {"type": "MaxPooling2D", "padding": "same"}),
    ("MaxPooling3D", [4, 5, 4, 1], {"type": "MaxPooling3D"}),
    (
        "AveragePooling1D",
        [9, 2],
        {"type": "AveragePooling1D", "padding": "same", "pool_size": 2, "strides": 3},
    ),
    ("AveragePooling2D", [7, 6, 2], {"type": "AveragePooling2D", "pool_size": [3, 2]}),
    ("AveragePooling3D", [4, 4, 4, 1], {"type": "AveragePooling3D", "strides": 1}),
    ("GlobalMaxPooling1D", [5, 3], {"type": "GlobalMaxPooling1D"}),
    ("GlobalMaxPooling2D", [5, 4, 3], {"type": "GlobalMaxPooling2D", "keepdims": True}),
    ("GlobalMaxPooling3D", [2, 3, 4, 3], {"type": "GlobalMaxPooling3D"}),
    (
        "GlobalAveragePooling1D",
        [5, 3],
        {"type": "GlobalAveragePooling1D", "keepdims": True},
    ),
    ("GlobalAveragePooling2D", [5, 4, 3], {"type": "GlobalAveragePooling2D"}),
    ("GlobalAveragePooling3D", [2, 3, 4, 3], {"type": "GlobalAveragePooling3D"}),
    ("Flatten", [3, 4, 2], {"type": "Flatten"}),
    ("Reshape", [3, 4], {"type": "Reshape", "target_shape": [2, -1]}),
    ("Permute", [3, 4, 2], {"type": "Permute", "dims": [2, 1, 3]}),
    ("ZeroPadding1D", [5, 2], {"type": "ZeroPadding1D", "padding": [1, 2]}),
    (
        "ZeroPadding2D",
        [4, 4, 1],
        {"type": "ZeroPadding2D", "padding": [[1, 0], [2, 3]]},
    ),
    ("ZeroPadding3D", [2, 2, 2, 1], {"type": "ZeroPadding3D", "padding": 1}),
    ("Cropping1D", [5, 2], {"type": "Cropping1D", "cropping": [1, 2]}),
    (
        "Dropout-noise-shape",
        [4, 3],
        {"type": "Dropout", "rate": 0.5, "noise_shape": [None, 1, 3]},
    ),
    ("Cropping2D", [4, 5, 1], {"type": "Cropping2D", "cropping": [[1, 0], [2, 1]]}),
    ("Cropping3D", [3, 3, 4, 1], {"type": "Cropping3D", "cropping": [0, 1, 1]}),
    ("BatchNormalization-axis3", [4, 4, 3], {"type": "BatchNormalization", "axis": 3}),
    ("Normalization-weights", [4, 4, 3], {"type": "Normalization", "axis": [3]}),
    (
        "Normalization-constants",
        [4, 3],
        {
            "type": "Normalization",
            "mean": [1.0, 2.0, 3.0],
            "variance": [4.0, 1.0, 0.5],
        },
    ),
    ("LayerNormalization", [4, 3], {"type": "LayerNormalization", "axis": [-1]}),
    (
        "LayerScale",
        [2, 2, 3],
        {"type": "LayerScale", "init_values": 0.5, "projection_dim": 3},
    ),
    (
        "LayerNormalization-no-scale",
        [4, 4, 3],
        {"type": "LayerNormalization", "axis": 3, "scale": False, "epsilon": 1e-6},
    ),
    ("UpSampling1D", [4, 2], {"type": "UpSampling1D", "size": 3}),
    (
        "UpSampling2D",
        [3, 3, 2],
        {"type": "UpSampling2D", "size": [2, 1], "interpolation": "bilinear"},
    ),
]
MERGES = ["Add", "Multiply", "Average", "Maximum", "Minimum", "Subtract"]


def _graph(merge: str, shapes: list[list[int]], **args: Any) -> dict[str, Any]:
    inputs = [
        {"type": "Input", "name": f"x{i}", "shape": shape}
        for i, shape in enumerate(shapes)
    ]
    return {
        "layers": [
            *inputs,
            {"type": "Dense", "name": "pre", "units": shapes[0][-1], "inputs": ["x0"]},
            {
                "type": merge,
                "name": "merge",
                "inputs": ["pre", *[i["name"] for i in inputs[1:]]],
                **args,
            },
        ],
        "outputs": ["merge"],
    }


DEFINITIONS: list[tuple[str, dict[str, Any]]] = (
    [(case, {"input_shape": shape, "layers": [layer]}) for case, shape, layer in CASES]
    + [(merge, _graph(merge, [[4, 3], [4, 3]])) for merge in MERGES]
    + [
        ("Concatenate", _graph("Concatenate", [[4, 3], [4, 5], [4, 1]])),
        ("Concatenate-axis1", _graph("Concatenate", [[4, 3], [2, 3]], axis=1)),
        ("Multiply-broadcast", _graph("Multiply", [[2, 4, 3], [1, 1, 3]])),
        ("Subtract-broadcast", _graph("Subtract", [[4, 1], [1, 3]])),
    ]
)


def _compare(definition: dict[str, Any]) -> None:
    model_plan = plan(DEFINITION.validate_python(definition), SETTINGS)
    report = profile(build(model_plan, SETTINGS)).to_dict()
    estimated = {row.name: row.model_dump() for row in model_plan.estimate.layers}
    assert [row["name"] for row in report["layers"]] == list(estimated)
    for row in report["layers"]:
        mine = estimated[row["name"]]
        for field in LAYER_FIELDS:
            assert mine[field] == row[field], (row["name"], field)
        assert [
            (w["name"], w["shape"], w["bits"], w["trainable"]) for w in mine["weights"]
        ] == [
            (w["name"].split("/")[-1], w["shape"], w["bits"], w["trainable"])
            for w in row["weights"]
        ]
    totals = model_plan.estimate.totals.model_dump()
    for field in TOTAL_FIELDS:
        assert totals[field] == report["totals"][field], field


@pytest.mark.parametrize(
    ("case", "definition"), DEFINITIONS, ids=[c for c, _ in DEFINITIONS]
)
def test_estimate_equals_profile(case: str, definition: dict[str, Any]) -> None:
    _compare(definition)


def test_every_allowed_layer_type_is_covered() -> None:
    covered = {
        layer["type"] for _, definition in DEFINITIONS for layer in definition["layers"]
    }
    assert covered == set(LAYER_TYPES)


def test_mnist_bnn_matches_larq_published_counts() -> None:
    # Larq's MNIST tutorial BNN: 93,088 1-bit + 468 32-bit params, 93.03 % binary
    # MACs (counts published with the tutorial's model summary).
    q = {
        "kernel_quantizer": "ste_sign",
        "kernel_constraint": "weight_clip",
        "use_bias": False,
    }
    bn = {"type": "BatchNormalization", "scale": False}
    definition = {
        "input_shape": [28, 28, 1],
        "layers": [
            {"type": "QuantConv2D", "filters": 32, "kernel_size": 3, **q},
            {"type": "MaxPooling2D"},
            bn,
            {
                "type": "QuantConv2D",
                "filters": 64,
                "kernel_size": 3,
                "input_quantizer": "ste_sign",
                **q,
            },
            {"type": "MaxPooling2D"},
            bn,
            {
                "type": "QuantConv2D",
                "filters": 64,
                "kernel_size": 3,
                "input_quantizer": "ste_sign",
                **q,
            },
            bn,
            {"type": "Flatten"},
            {"type": "QuantDense", "units": 64, "input_quantizer": "ste_sign", **q},
            bn,
            {"type": "QuantDense", "units": 10, "input_quantizer": "ste_sign", **q},
            bn,
            {"type": "Activation", "activation": "softmax"},
        ],
    }
    for layer in definition["layers"]:
        layer.pop("name", None)
    model_plan = plan(DEFINITION.validate_python(definition), SETTINGS)
    totals = model_plan.estimate.totals
    # Keras counts beta, moving mean and variance (scale=False) for the
    # 32 + 64 + 64 + 64 + 10 = 234 BatchNorm channels: 3 × 234 = 702; Larq's
    # 468 is BatchNorm folded to 2 per channel, our inference_params.
    assert totals.params_by_bits == {"1": 93_088, "32": 3 * 234}
    assert totals.inference_params == 93_088 + 2 * 234
    assert round(100 * totals.macs_by_bits["1"] / totals.macs, 2) == 93.03


@pytest.mark.parametrize(
    "definition",
    [
        {"input_shape": [16_384], "layers": [{"type": "Dense", "units": 65_536}]},
        {"input_shape": [4096], "layers": [{"type": "Dense", "units": 60_000}] * 300},
        {
            "input_shape": [1024, 1024, 3],
            "layers": [{"type": "Conv2D", "filters": 8192, "kernel_size": 64}],
        },
        {
            "input_shape": [16_384, 16_384, 3],
            "layers": [{"type": "Conv2D", "filters": 8192, "kernel_size": 1}],
        },
    ],
    ids=["dense-1e9", "deep-1e12", "conv-1e11", "activations-2e12"],
)
def test_huge_definitions_are_refused_fast_without_allocating(
    definition: dict[str, Any],
) -> None:
    validated = DEFINITION.validate_python(definition)
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(LimitError, match="exceeds the limit"):
        plan(validated, SETTINGS)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 0.5
    assert peak < 5 * 2**20


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        (
            {
                "input_shape": [2, 2, 1],
                "layers": [{"type": "Conv2D", "filters": 1, "kernel_size": 3}],
            },
            "smaller than the kernel",
        ),
        (
            {
                "input_shape": [8],
                "layers": [{"type": "Conv1D", "filters": 1, "kernel_size": 3}],
            },
            "rank 2",
        ),
        (
            {
                "input_shape": [4, 3],
                "layers": [
                    {"type": "Conv1D", "filters": 2, "kernel_size": 1, "groups": 2}
                ],
            },
            "multiple of groups",
        ),
        (
            {
                "input_shape": [6],
                "layers": [{"type": "Reshape", "target_shape": [4, -1]}],
            },
            "cannot hold",
        ),
    ],
)
def test_shape_errors_name_the_layer(definition: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError, match=message) as info:
        plan(DEFINITION.validate_python(definition), SETTINGS)
    assert "definition.layers[0]" in str(info.value)

"""Hostile requests against memory (issue 14, findings 1 and 2), and the peak
estimate they are refused by.

* The estimate of a definition bounds what TensorFlow allocates: over random
  small definitions, each layer's figure is at least the bytes its operations
  allocate in TensorFlow's traced graph, and the model's per-row and fixed
  figures bound the live set of the whole graph run op by op
  (``tf_memory_oracle``).
* Each attack is a test named after it: the separable and depthwise
  ``depth_multiplier`` bombs are refused at registration; the upsampling bomb
  and its relatives are 413 before any work, on every inference route,
  dynamic batching included.
* Responses are encoded from NumPy without a Python object per value, and the
  JSON numbers are the float32 outputs bit for bit.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter
from tf_memory_oracle import largest_tensor, layer_bytes, simulated_peak, trace

from service.builder import build, plan
from service.config import Settings
from service.estimate import LimitError, estimate_layer, estimate_with_peak
from service.peak import ACTIVATION_FACTORS, QUANTIZER_FACTORS
from service.schemas.components import ACTIVATION_ALIASES
from service.schemas.definitions import Definition
from service.schemas.layers import AnyLayer

DEFINITION = TypeAdapter(Definition)
LAYER = TypeAdapter(AnyLayer)
SETTINGS = Settings(data_dir="unused")

QUANTIZERS = ["ste_sign", "approx_sign", "swish_sign", "ste_heaviside",
              "magnitude_aware_sign", "ste_tern", {"type": "DoReFa", "k_bit": 2},
              {"type": "NoOp", "precision": 8}]  # fmt: skip
ACTIVATIONS = sorted(ACTIVATION_ALIASES)


# --------------------------------------------------------------------------
# Random small definitions
# --------------------------------------------------------------------------


def _spatial(rng: random.Random, rank: int) -> dict[str, Any]:
    kernel = rng.choice([1, 2, 3])
    options: dict[str, Any] = {"kernel_size": kernel}
    if rng.random() < 0.5:
        options["padding"] = "same"
    if rng.random() < 0.3:
        options["strides"] = 2
    elif rng.random() < 0.2 and kernel > 1:
        options["dilation_rate"] = 2
    return options


def _quant(rng: random.Random, *fields: str) -> dict[str, Any]:
    return {f: rng.choice(QUANTIZERS) for f in fields if rng.random() < 0.7}


def _candidates(rng: random.Random, rank: int) -> list[dict[str, Any]]:
    """Layer dicts that may apply to an input of ``rank`` (batch excluded)."""
    act = {"activation": rng.choice(ACTIVATIONS)} if rng.random() < 0.5 else {}
    f = rng.choice([1, 2, 3, 5])
    dm = rng.choice([1, 2, 3])
    out: list[dict[str, Any]] = [
        {"type": "BatchNormalization"},
        {"type": "PReLU"},
        {"type": "ReLU", "max_value": 2.0, "negative_slope": 0.1},
        {"type": "LeakyReLU"},
        {"type": "ELU"},
        {"type": "Softmax"},
        {"type": "Rescaling", "scale": 0.5, "offset": 1.0},
        {"type": "Activation", "activation": rng.choice(ACTIVATIONS)},
        {"type": rng.choice(["SteSign", "ApproxSign", "SteTern", "SwishSign"])},
        {"type": "MagnitudeAwareSign"},
        {"type": "DoReFa", "k_bit": 3},
        {"type": "Dense", "units": f, **act},
        {"type": "QuantDense", "units": f, **act,
         **_quant(rng, "input_quantizer", "kernel_quantizer")},
    ]  # fmt: skip
    if rank == 2:
        s = _spatial(rng, 1)
        out += [
            {"type": "Conv1D", "filters": f, **s, **act},
            {"type": "QuantConv1D", "filters": f, **s,
             **_quant(rng, "input_quantizer", "kernel_quantizer"),
             "pad_values": rng.choice([0.0, 1.0])},
            {"type": "Conv1D", "filters": f, "kernel_size": 2, "padding": "causal"},
            {"type": "SeparableConv1D", "filters": f, "depth_multiplier": dm, **s},
            {"type": "QuantSeparableConv1D", "filters": f, "depth_multiplier": dm,
             **s, **_quant(rng, "input_quantizer", "depthwise_quantizer",
                           "pointwise_quantizer")},
            {"type": "DepthwiseConv1D", "depth_multiplier": dm, **s},
            {"type": "QuantDepthwiseConv1D", "depth_multiplier": dm, **s,
             **_quant(rng, "input_quantizer", "depthwise_quantizer")},
            {"type": "Conv1DTranspose", "filters": f, "kernel_size": 3,
             "strides": rng.choice([1, 2])},
            {"type": "QuantConv1DTranspose", "filters": f, "kernel_size": 2,
             "strides": 2, **_quant(rng, "input_quantizer", "kernel_quantizer")},
            {"type": "LocallyConnected1D", "filters": f, "kernel_size": 2},
            {"type": "QuantLocallyConnected1D", "filters": f, "kernel_size": 2,
             "strides": rng.choice([1, 2]),
             **_quant(rng, "input_quantizer", "kernel_quantizer")},
            {"type": "MaxPooling1D", "padding": rng.choice(["valid", "same"])},
            {"type": "AveragePooling1D", "pool_size": 3, "strides": 1},
            {"type": "GlobalAveragePooling1D"},
            {"type": "UpSampling1D", "size": rng.choice([2, 3])},
            {"type": "ZeroPadding1D", "padding": [1, 2]},
            {"type": "Permute", "dims": [2, 1]},
        ]  # fmt: skip
    if rank == 3:
        s = _spatial(rng, 2)
        out += [
            {"type": "Conv2D", "filters": f, **s, **act},
            {"type": "Conv2D", "filters": 3, "groups": 3, "kernel_size": 1},
            {"type": "QuantConv2D", "filters": f, **s,
             **_quant(rng, "input_quantizer", "kernel_quantizer"),
             "pad_values": rng.choice([0.0, 1.0])},
            {"type": "SeparableConv2D", "filters": f, "depth_multiplier": dm, **s},
            {"type": "QuantSeparableConv2D", "filters": f, "depth_multiplier": dm,
             **s, "pad_values": 1.0, **_quant(rng, "input_quantizer",
                                               "depthwise_quantizer",
                                               "pointwise_quantizer")},
            {"type": "DepthwiseConv2D", "depth_multiplier": dm, **s},
            {"type": "QuantDepthwiseConv2D", "depth_multiplier": dm, **s,
             **_quant(rng, "input_quantizer", "depthwise_quantizer")},
            {"type": "Conv2DTranspose", "filters": f, "kernel_size": 3,
             "strides": rng.choice([1, 2]), "padding": rng.choice(["valid", "same"])},
            {"type": "QuantConv2DTranspose", "filters": f, "kernel_size": 2,
             "strides": 2, **_quant(rng, "input_quantizer", "kernel_quantizer")},
            {"type": "LocallyConnected2D", "filters": f, "kernel_size": 2},
            {"type": "QuantLocallyConnected2D", "filters": f, "kernel_size": 2,
             "strides": rng.choice([1, 2]),
             **_quant(rng, "input_quantizer", "kernel_quantizer")},
            {"type": "MaxPooling2D", "padding": rng.choice(["valid", "same"])},
            {"type": "AveragePooling2D", "pool_size": 3, "strides": 1,
             "padding": "same"},
            {"type": "GlobalMaxPooling2D", "keepdims": True},
            {"type": "UpSampling2D", "size": [rng.choice([1, 2, 3]), 2],
             "interpolation": rng.choice(["nearest", "bilinear"])},
            {"type": "ZeroPadding2D", "padding": [[1, 0], [2, 1]]},
            {"type": "Flatten"},
        ]  # fmt: skip
    return out


def random_definition(seed: int, layers: int = 4) -> dict[str, Any]:
    """A random valid graph definition of ``layers`` layers (plus merges)."""
    rng = random.Random(seed)
    rank = rng.choice([2, 3])
    shape = [rng.randint(6, 10) for _ in range(rank - 1)] + [rng.randint(1, 4)]
    items: list[dict[str, Any]] = [{"type": "Input", "name": "in0x", "shape": shape}]
    shapes = {"in0x": tuple(shape)}
    for index in range(layers):
        name = f"n{index}x"
        source = rng.choice(list(shapes)[-2:])
        same = [n for n, s in shapes.items() if s == shapes[source] and n != source]
        choices = _candidates(rng, len(shapes[source]))
        if same and rng.random() < 0.4:
            choices = [{"type": rng.choice(["Add", "Average", "Maximum",
                                             "Concatenate", "Multiply"])}]  # fmt: skip
            inputs = [source, rng.choice(same)]
        else:
            inputs = [source]
        rng.shuffle(choices)
        for choice in choices:
            item = {**choice, "name": name, "inputs": inputs}
            try:
                spec = LAYER.validate_python(item)
                _, out = estimate_layer(
                    name, spec, [shapes[i] for i in inputs], SETTINGS
                )
            except (ValueError, LimitError):
                continue
            if math.prod(out) == 0 or len(out) == 0:
                continue
            items.append(item)
            shapes[name] = out
            break
    used = {source for item in items for source in item.get("inputs", [])}
    outputs = [item["name"] for item in items[1:] if item["name"] not in used]
    return {"layers": items, "outputs": outputs}


def _check_against_tensorflow(definition: dict[str, Any]) -> None:
    spec = DEFINITION.validate_python(definition)
    _, peak = estimate_with_peak(spec.graph(), SETTINGS)
    model = build(plan(spec, SETTINGS), SETTINGS)
    names = [p.name for p in peak.layers]
    one, two = trace(model, 1), trace(model, 2)
    at_one, at_two = layer_bytes(one, names), layer_bytes(two, names)
    for layer in peak.layers:
        # Bytes a layer's operations allocate: per row (the growth from batch
        # 1 to 2) and at batch 1 (per row plus fixed).
        per_row = at_two[layer.name] - at_one[layer.name]
        estimated_row = 4 * (layer.intermediate_elements + layer.output_elements)
        assert per_row <= estimated_row, (layer, per_row, definition)
        assert at_one[layer.name] <= estimated_row + layer.fixed_bytes, (
            layer,
            at_one[layer.name],
            definition,
        )
    biggest, where = largest_tensor(two)
    assert biggest <= peak.fixed_bytes + 2 * peak.row_bytes, (where, definition)
    for batch, graph in ((1, one), (2, two)):
        live = simulated_peak(graph)
        assert live <= peak.fixed_bytes + batch * peak.row_bytes, (
            batch,
            live,
            peak,
            definition,
        )


@pytest.mark.parametrize("seed", range(12))
def test_peak_estimate_bounds_tensorflow_allocations(seed: int) -> None:
    _check_against_tensorflow(random_definition(seed))


def wide_definition(seed: int, rank: int) -> dict[str, Any]:
    """Every candidate layer type of ``rank`` applied to one input, side by side,
    and each merge type over the input and a copy of it."""
    rng = random.Random(seed)
    shape = [9] * (rank - 1) + [3]
    items: list[dict[str, Any]] = [
        {"type": "Input", "name": "in0x", "shape": shape},
        {"type": "Identity", "name": "idx", "inputs": ["in0x"]},
    ]
    merges = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
              "Concatenate"]  # fmt: skip
    layers = [*_candidates(rng, rank), *({"type": m} for m in merges)]
    for index, choice in enumerate(layers):
        inputs = ["in0x", "idx"] if choice["type"] in merges else ["in0x"]
        item = {**choice, "name": f"n{index}x", "inputs": inputs}
        spec = LAYER.validate_python(item)
        estimate_layer(item["name"], spec, [tuple(shape)] * len(inputs), SETTINGS)
        items.append(item)
    used = {source for item in items for source in item.get("inputs", [])}
    outputs = [item["name"] for item in items[1:] if item["name"] not in used]
    return {"layers": items, "outputs": outputs}


@pytest.mark.parametrize("rank", [2, 3], ids=["1d", "2d"])
def test_peak_estimate_bounds_tensorflow_for_every_layer_type(rank: int) -> None:
    _check_against_tensorflow(wide_definition(rank, rank))


def test_every_activation_and_quantizer_has_a_measured_factor() -> None:
    assert set(ACTIVATION_FACTORS) == set(ACTIVATION_ALIASES)
    from service.schemas.components import QUANTIZER_TYPES

    assert set(QUANTIZER_FACTORS) == set(QUANTIZER_TYPES)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_factor_bounds_tensorflow(activation: str) -> None:
    _check_against_tensorflow(
        {
            "layers": [
                {"type": "Input", "name": "in0x", "shape": [5, 3]},
                {
                    "type": "Dense",
                    "name": "n0x",
                    "inputs": ["in0x"],
                    "units": 7,
                    "activation": activation,
                },
            ],
            "outputs": ["n0x"],
        }
    )


@pytest.mark.parametrize("quantizer", QUANTIZERS, ids=str)
def test_quantizer_factor_bounds_tensorflow(quantizer: Any) -> None:
    _check_against_tensorflow(
        {
            "layers": [
                {"type": "Input", "name": "in0x", "shape": [6, 6, 2]},
                {
                    "type": "QuantConv2D",
                    "name": "n0x",
                    "inputs": ["in0x"],
                    "filters": 3,
                    "kernel_size": 3,
                    "input_quantizer": quantizer,
                    "kernel_quantizer": quantizer,
                },
            ],
            "outputs": ["n0x"],
        }
    )


def test_the_oracle_sees_the_depthwise_intermediate() -> None:
    """The oracle can fail: a separable layer's depthwise intermediate (input
    channels × depth_multiplier per position) is in TensorFlow's graph, and an
    estimate that left it out would be below it."""
    definition = {
        "layers": [
            {"type": "Input", "name": "in0x", "shape": [8, 8, 2]},
            {
                "type": "SeparableConv2D",
                "name": "n0x",
                "inputs": ["in0x"],
                "filters": 1,
                "kernel_size": 1,
                "depth_multiplier": 64,
            },
        ],
        "outputs": ["n0x"],
    }
    spec = DEFINITION.validate_python(definition)
    _, peak = estimate_with_peak(spec.graph(), SETTINGS)
    model = build(plan(spec, SETTINGS), SETTINGS)
    biggest, _ = largest_tensor(trace(model, 1))
    intermediate = 8 * 8 * 2 * 64 * 4
    assert biggest == intermediate
    (layer,) = peak.layers
    without = 4 * (layer.intermediate_elements - 8 * 8 * 2 * 64 + layer.output_elements)
    assert (
        without < biggest <= 4 * (layer.intermediate_elements + layer.output_elements)
    )
    json.dumps(definition)
    np.testing.assert_equal(peak.layers[0].output_elements, 64)

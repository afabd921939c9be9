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

import asyncio
import json
import math
import random
import re
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import TypeAdapter
from tf_memory_oracle import largest_tensor, layer_bytes, simulated_peak, trace

from bnncore_service.builder import build, plan
from bnncore_service.config import Settings
from bnncore_service.estimate import LimitError, estimate_layer, estimate_with_peak
from bnncore_service.inference.oip import encode_oip
from bnncore_service.inference.scheduler import Batcher
from bnncore_service.inference.tensors import to_json
from bnncore_service.inference.tfserving import encode_tfs
from bnncore_service.main import create_app
from bnncore_service.peak import (
    ACTIVATION_FACTORS,
    JSON_BYTES_PER_VALUE,
    QUANTIZER_FACTORS,
    SCRATCH_BYTES,
    LayerPeak,
    RequestCost,
    model_peak,
)
from bnncore_service.schemas.components import ACTIVATION_ALIASES
from bnncore_service.schemas.definitions import Definition
from bnncore_service.schemas.layers import AnyLayer

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
        {"type": "Normalization"},
        {"type": "LayerScale", "init_values": 0.1, "projection_dim": 3},
        {"type": "Normalization", "mean": 0.5, "variance": 2.0},
        {"type": "LayerNormalization", "center": rng.random() < 0.5},
        {"type": "Dropout", "rate": 0.5, "noise_shape": [None] * rank + [1]},
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
            {"type": "Cropping1D", "cropping": [1, 2]},
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
            {"type": "Cropping2D", "cropping": [[1, 0], [2, 1]]},
            {"type": "Flatten"},
        ]  # fmt: skip
    if rank == 4:
        s = _spatial(rng, 3)
        out += [
            {"type": "Conv3D", "filters": f, **s, **act},
            {"type": "QuantConv3D", "filters": f, **s,
             **_quant(rng, "input_quantizer", "kernel_quantizer"),
             "pad_values": rng.choice([0.0, 1.0])},
            {"type": "Conv3DTranspose", "filters": f, "kernel_size": 2,
             "strides": 2},
            {"type": "QuantConv3DTranspose", "filters": f, "kernel_size": 3,
             **_quant(rng, "input_quantizer", "kernel_quantizer")},
            {"type": "MaxPooling3D", "padding": "same"},
            {"type": "AveragePooling3D"},
            {"type": "GlobalAveragePooling3D"},
            {"type": "ZeroPadding3D", "padding": [[1, 0], [0, 1], [2, 2]]},
            {"type": "Cropping3D", "cropping": 1},
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
    shape = [9 if rank < 4 else 5] * (rank - 1) + [3]
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


@pytest.mark.parametrize("rank", [2, 3, 4], ids=["1d", "2d", "3d"])
def test_peak_estimate_bounds_tensorflow_for_every_layer_type(rank: int) -> None:
    _check_against_tensorflow(wide_definition(rank, rank))


def test_every_activation_and_quantizer_has_a_measured_factor() -> None:
    assert set(ACTIVATION_FACTORS) == set(ACTIVATION_ALIASES)
    from bnncore_service.schemas.components import QUANTIZER_TYPES

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


# --------------------------------------------------------------------------
# Finding 1: a layer whose intermediate no limit counted
# --------------------------------------------------------------------------

BOMB_TYPES = [
    ("SeparableConv2D", [64, 64, 1], {"filters": 1}),
    ("QuantSeparableConv2D", [64, 64, 1], {"filters": 1}),
    ("DepthwiseConv2D", [64, 64, 1], {}),
    ("QuantDepthwiseConv2D", [64, 64, 1], {}),
    ("SeparableConv1D", [4096, 1], {"filters": 1}),
    ("QuantSeparableConv1D", [4096, 1], {"filters": 1}),
    ("DepthwiseConv1D", [4096, 1], {}),
]


def _bomb(kind: str, shape: list[int], extra: dict[str, Any], dm: int) -> Any:
    return {
        "input_shape": shape,
        "layers": [{"type": kind, "kernel_size": 1, "depth_multiplier": dm, **extra}],
    }


@pytest.mark.parametrize(("kind", "shape", "extra"), BOMB_TYPES, ids=lambda v: v)
@pytest.mark.parametrize("route", ["/v2/models", "/v2/estimate"])
def test_separable_depth_multiplier_bomb_is_refused(
    client: Any, kind: str, shape: list[int], extra: dict[str, Any], route: str
) -> None:
    definition = _bomb(kind, shape, extra, 1_048_576)
    body = {"name": "bomb", "definition": definition}
    response = client.post(route, json=body if route == "/v2/models" else definition)
    assert response.status_code == 413, response.text
    message = response.json()["error"]
    assert "definition.layers[0].depth_multiplier" in message
    assert "1,048,576" in message and "BNN_MAX_FILTERS" in message
    assert client.get("/v2/models").json()["total"] == 0


def test_depthwise_channels_at_the_filter_limit_are_accepted(client: Any) -> None:
    """The limit is the channel count: input channels × depth_multiplier."""
    limit = Settings(data_dir="unused").max_filters
    fits = _bomb("SeparableConv2D", [4, 4, 2], {"filters": 1}, limit // 2)
    over = _bomb("SeparableConv2D", [4, 4, 2], {"filters": 1}, limit // 2 + 1)
    assert client.post("/v2/estimate", json=fits).status_code == 200
    response = client.post("/v2/estimate", json=over)
    assert response.status_code == 413
    assert (
        f"input channels 2 × depth_multiplier {limit // 2 + 1:,}"
        in (response.json()["error"])
    )


def test_separable_intermediate_counts_toward_the_request_memory(
    tmp_path: Any,
) -> None:
    """Within the filter limit, the depthwise intermediate (64×64×8192 floats,
    128 MiB a row) is what the request memory is made of."""
    settings = Settings(data_dir=tmp_path / "data", max_request_bytes=64 * 2**20)
    definition = _bomb("SeparableConv2D", [64, 64, 1], {"filters": 1}, 8192)
    with TestClient(create_app(settings)) as client:
        response = client.post("/v2/estimate", json=definition)
    assert response.status_code == 413
    message = response.json()["error"]
    assert "definition.layers[0]" in message and "BNN_MAX_REQUEST_BYTES" in message
    figure = int(re.search(r"bytes\) ([\d,]+) exceeds", message)[1].replace(",", ""))
    assert figure >= 64 * 64 * 8192 * 4


# --------------------------------------------------------------------------
# Finding 2: a request's memory (batch × peak + response) is bounded
# --------------------------------------------------------------------------

UPSAMPLING_BOMB = {
    "input_shape": [16, 16, 1],
    "layers": [
        {"type": "UpSampling2D", "size": 64},
        {"type": "UpSampling2D", "size": 13},
    ],
}
"""178M output elements a row: under ``BNN_MAX_ACTIVATION_ELEMENTS``."""

UPSAMPLING_BATCH = {
    "input_shape": [16, 16, 1],
    "layers": [
        {"type": "UpSampling2D", "size": 64},
        {"type": "UpSampling2D", "size": 4},
    ],
}
"""16.8M output elements (64 MiB as float32, about 400 MB as JSON) a row."""

WIDE_ANSWER = {
    "input_shape": [16, 16, 1],
    "layers": [{"type": "UpSampling2D", "size": 16}],
}
"""256 values in, 65,536 out a row: the response is what costs."""

WIDER_ANSWER = {
    "input_shape": [16, 16, 1],
    "layers": [{"type": "UpSampling2D", "size": 32}],
}
"""256 values in, 262,144 out a row: 256 rows would answer 67M values (about
1.6 GB of JSON) to a request of 64K zeros."""


def _register(client: Any, name: str, definition: Any) -> dict[str, Any]:
    response = client.post("/v2/models", json={"name": name, "definition": definition})
    assert response.status_code in (200, 201), response.text
    return response.json()


def _oip(rows: int, shape: tuple[int, ...] = (16, 16, 1)) -> dict[str, Any]:
    x = np.zeros((rows, *shape), np.float32)
    return {
        "inputs": [
            {
                "name": "input",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.reshape(-1).tolist(),
            }
        ]
    }


def _input_name(client: Any, name: str) -> str:
    return client.get(f"/v2/models/{name}").json()["inputs"][0]["name"]


def _figures(message: str) -> tuple[int, int]:
    """(needed, limit) from a BNN_MAX_REQUEST_BYTES refusal."""
    needed = re.search(r"needs up to ([\d,]+) bytes", message)
    limit = re.search(r"over the limit ([\d,]+) \(BNN_MAX_REQUEST_BYTES\)", message)
    assert needed and limit, message
    return int(needed[1].replace(",", "")), int(limit[1].replace(",", ""))


def test_upsampling_bomb_is_refused_at_registration(client: Any) -> None:
    response = client.post(
        "/v2/models", json={"name": "bomb", "definition": UPSAMPLING_BOMB}
    )
    assert response.status_code == 413, response.text
    message = response.json()["error"]
    assert "definition.layers[1]" in message and "BNN_MAX_REQUEST_BYTES" in message
    # Its output alone is 13,312² floats.
    figure = int(re.search(r"bytes\) ([\d,]+) exceeds", message)[1].replace(",", ""))
    assert figure >= 13_312**2 * 4


@pytest.fixture
def memory_app(tmp_path: Any) -> Iterator[Any]:
    settings = Settings(data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as client:
        _register(client, "upsample", UPSAMPLING_BATCH)
        _register(client, "wide", WIDE_ANSWER)
        _register(client, "wider", WIDER_ANSWER)
        yield client


def _assert_413_before_work(client: Any, response: Any, rows: int) -> None:
    assert response.status_code == 413, response.text[:500]
    message = response.json()["error"]
    needed, limit = _figures(message)
    assert limit == Settings(data_dir="unused").max_request_bytes
    assert needed > limit
    assert f"a batch of {rows:,} rows" in message
    assert client.app.state.inference.loaded == 0  # nothing built, nothing run
    metrics = client.get("/metrics").text
    assert re.search(r'bnn_rejections_total\{reason="memory_limit"\} [1-9]', metrics)


def test_upsampling_bomb_batch_is_413_before_work(memory_app: Any) -> None:
    client = memory_app
    body = _oip(8)
    body["inputs"][0]["name"] = _input_name(client, "upsample")
    response = client.post("/v2/models/upsample/infer", json=body)
    _assert_413_before_work(client, response, 8)
    # The figure: 8 rows × (the 64 MiB output, held twice, plus its JSON).
    needed, _ = _figures(response.json()["error"])
    assert needed >= 8 * 16_777_216 * (2 * 4 + 24)


def test_upsampling_bomb_batch_is_413_on_tf_serving_routes(memory_app: Any) -> None:
    client = memory_app
    x = np.zeros((8, 16, 16, 1), np.float32).tolist()
    for body in ({"instances": x}, {"inputs": x}):
        response = client.post("/v1/models/upsample:predict", json=body)
        _assert_413_before_work(client, response, 8)
        response = client.post("/v1/models/upsample/versions/1:predict", json=body)
        _assert_413_before_work(client, response, 8)


def test_wide_answer_batch_is_413_before_work(memory_app: Any) -> None:
    """64K zeros in, 256 × 262,144 values out: the JSON response alone would
    be over 1.6 GB, counted before anything runs."""
    client = memory_app
    body = _oip(256)
    body["inputs"][0]["name"] = _input_name(client, "wider")
    response = client.post("/v2/models/wider/versions/1/infer", json=body)
    _assert_413_before_work(client, response, 256)
    assert "rows fit: split the request" in response.json()["error"]


def test_a_batch_that_fits_is_served(memory_app: Any) -> None:
    client = memory_app
    body = _oip(2)
    body["inputs"][0]["name"] = _input_name(client, "wide")
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 1)).astype(np.float32)
    body["inputs"][0]["data"] = x.reshape(-1).tolist()
    response = client.post("/v2/models/wide/infer", json=body)
    assert response.status_code == 200, response.text[:300]
    (out,) = response.json()["outputs"]
    expected = x.repeat(16, axis=1).repeat(16, axis=2)
    got = np.asarray(out["data"], np.float64).astype(np.float32)
    assert out["shape"] == [2, 256, 256, 1]
    assert got.view(np.uint32).tolist() == expected.reshape(-1).view(np.uint32).tolist()


def test_request_memory_counts_only_the_requested_outputs(tmp_path: Any) -> None:
    """Two outputs, one 256× larger: asking only for the small one fits."""
    definition = {
        "layers": [
            {"type": "Input", "name": "x", "shape": [16, 16, 1]},
            {"type": "UpSampling2D", "name": "big", "inputs": ["x"], "size": 16},
            {"type": "GlobalAveragePooling2D", "name": "small", "inputs": ["x"]},
        ],
        "outputs": ["big", "small"],
    }
    settings = Settings(data_dir=tmp_path / "data", max_request_bytes=48 * 2**20)
    with TestClient(create_app(settings)) as client:
        _register(client, "two", definition)
        cost = asyncio.run(_cost(client, "two"))
        rows = cost.max_rows(settings.max_request_bytes, [1], JSON_BYTES_PER_VALUE)
        assert cost.max_rows(settings.max_request_bytes, [0, 1], 28) < rows <= 256
        body = _oip(rows)
        body["inputs"][0]["name"] = "x"
        both = client.post("/v2/models/two/infer", json=body)
        assert both.status_code == 413, both.text[:300]
        body["outputs"] = [{"name": "small"}]
        one = client.post("/v2/models/two/infer", json=body)
        assert one.status_code == 200, one.text[:300]
        body["inputs"][0]["shape"][0] = rows + 1
        body["inputs"][0]["data"] += [0.0] * 256
        over = client.post("/v2/models/two/infer", json=body)
        assert over.status_code == 413


async def _cost(client: Any, name: str) -> RequestCost:
    service = client.app.state.inference
    return await service.cost(await service.record(name, None))


def test_merged_dynamic_batch_respects_the_request_memory() -> None:
    """Requests of 1 row each, for a model where 3 rows fit: the batcher never
    merges more than 3, though ``max_size`` allows 8."""
    batcher = Batcher(max_size=8, max_wait_s=0.05)
    seen: list[int] = []

    async def execute(arrays: list[np.ndarray], rows: int) -> list[np.ndarray]:
        seen.append(rows)
        await asyncio.sleep(0)
        return [arrays[0] * 2]

    async def run() -> list[list[np.ndarray]]:
        jobs = [
            batcher.submit("m", [np.full((1, 2), i, np.float32)], 1, execute, 3)
            for i in range(7)
        ]
        return await asyncio.gather(*jobs)

    results = asyncio.run(run())
    assert max(seen) == 3 and sum(seen) == 7
    for i, (out,) in enumerate(results):
        assert out.tolist() == [[2.0 * i, 2.0 * i]]


def test_merged_dynamic_batch_is_capped_by_the_service(tmp_path: Any) -> None:
    """Through the service: concurrent 1-row requests to a model where 2 rows
    fit are merged 2 at most (the batch-size histogram's largest bucket)."""
    settings = Settings(
        data_dir=tmp_path / "data",
        batching=True,
        batch_max_size=16,
        batch_max_wait_ms=200,
        max_request_bytes=SCRATCH_BYTES + 6 * 2**20,  # a row: 0.6 + 1.8 MB
    )
    with TestClient(create_app(settings)) as client:
        _register(client, "wide", WIDE_ANSWER)
        cost = asyncio.run(_cost(client, "wide"))
        fits = cost.max_rows(settings.max_request_bytes, [0], 28)
        assert fits == 2
        body = _oip(1)
        body["inputs"][0]["name"] = _input_name(client, "wide")
        with ThreadPoolExecutor(6) as pool:
            codes = list(
                pool.map(
                    lambda _: client.post("/v2/models/wide/infer", json=body),
                    range(6),
                )
            )
        assert [r.status_code for r in codes] == [200] * 6
        buckets = {}
        for family in text_string_to_metric_families(client.get("/metrics").text):
            for s in family.samples:
                if s.name == "bnn_inference_batch_size_bucket":
                    buckets[float(s.labels["le"])] = s.value
                if s.name == "bnn_inference_batch_size_count":
                    runs = s.value
        assert buckets[2.0] == runs >= 3  # every run had at most 2 rows
        assert buckets[1.0] < runs  # and some were merged


# --------------------------------------------------------------------------
# Responses without a Python object per value
# --------------------------------------------------------------------------


def _extreme_float32(count: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**32, count, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32).copy()
    values[:6] = [np.nan, np.inf, -np.inf, -0.0, 1.4e-45, -3.4028235e38]
    return values


def test_json_response_round_trips_float32_bit_for_bit() -> None:
    values = _extreme_float32(200_000).reshape(2, 100_000)
    meta = [{"name": "y", "shape": [-1, 100_000]}]
    encoded, nonfinite = encode_oip([values], [0], meta)
    text = to_json({"outputs": encoded})
    data = json.loads(text)["outputs"][0]
    finite = np.isfinite(values.reshape(-1))
    assert nonfinite == data["parameters"]["nonfinite"] == int((~finite).sum())
    assert data["shape"] == [2, 100_000] and data["datatype"] == "FP32"
    decoded = [np.nan if v is None else v for v in data["data"]]
    back = np.asarray(decoded, np.float64).astype(np.float32)
    assert np.array_equal(
        back[finite].view(np.uint32), values.reshape(-1)[finite].view(np.uint32)
    )
    assert all(data["data"][i] is None for i in np.flatnonzero(~finite))
    # Today's text: each value as json.dumps wrote float(value).
    sample = values.reshape(-1)[finite][:1000]
    expected = json.dumps([float(v) for v in sample], separators=(",", ":"))
    assert json.loads(to_json(sample.astype(np.float64))) == json.loads(expected)
    # The bound used for the request memory holds for every value written.
    array = text.decode().split('"data":[')[1].split("]")[0]
    longest = max(len(t) for t in array.split(","))
    assert longest >= 20 and longest + 1 <= JSON_BYTES_PER_VALUE


def test_tf_serving_response_nests_arrays_as_lists() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    b = np.array([[np.inf], [1.5]], np.float32)
    meta = [{"name": "a"}, {"name": "b"}]
    rows, nonfinite = encode_tfs([a, b], meta, rows_format=True)
    assert nonfinite == 1
    assert json.loads(to_json(rows)) == {
        "predictions": [
            {"a": [float(v) for v in a[0]], "b": [None]},
            {"a": [float(v) for v in a[1]], "b": [1.5]},
        ]
    }
    columns, _ = encode_tfs([a], meta[:1], rows_format=False)
    assert json.loads(to_json(columns)) == {"outputs": a.astype(float).tolist()}


def _traced_peak(fn: Any) -> tuple[int, bytes]:
    tracemalloc.start()
    try:
        out = fn()
        return tracemalloc.get_traced_memory()[1], out
    finally:
        tracemalloc.stop()


def test_response_encoding_allocates_no_python_float_per_value() -> None:
    """The encoder's peak traced allocation is the float64 copy and the JSON
    text (orjson's buffer, then the bytes), well under what a list of Python
    floats took (``tolist()`` + ``json.dumps``, the encoder before)."""
    n = 250_000
    values = np.random.default_rng(3).normal(size=(1, n)).astype(np.float32)
    meta = [{"name": "y", "shape": [-1, n]}]

    def new() -> bytes:
        encoded, _ = encode_oip([values], [0], meta)
        return to_json({"outputs": encoded})

    def old() -> bytes:
        data = values.reshape(-1).tolist()
        return json.dumps({"outputs": [{"data": data}]}).encode()

    peak, text = _traced_peak(new)
    before, _ = _traced_peak(old)
    assert peak <= 8 * n + 2 * len(text) + 2**20, (peak, len(text))
    assert peak < 0.75 * before, (peak, before)


def test_zoo_model_batch_is_costed_from_its_layers(tmp_path: Any) -> None:
    """A zoo architecture has no analytic estimate: its cost is counted from
    the built layers, bounds what TensorFlow's graph holds, and a batch over
    the limit is 413 before it runs."""
    settings = Settings(data_dir=tmp_path / "data", max_request_bytes=400 * 2**20)
    zoo = {"zoo": "BinaryAlexNet", "input_shape": [64, 64, 3], "num_classes": 10}
    with TestClient(create_app(settings)) as client:
        _register(client, "alex", zoo)
        service = client.app.state.inference
        record = asyncio.run(service.record("alex", None))
        cost = asyncio.run(service.cost(record))
        model = asyncio.run(service.served(record)).model
        for batch in (1, 2):
            live = simulated_peak(trace(model, batch))
            assert live <= cost.fixed_bytes + batch * cost.row_bytes
        fits = cost.max_rows(settings.max_request_bytes, [0], JSON_BYTES_PER_VALUE)
        assert 1 <= fits < 256
        x = np.zeros((fits + 1, 64, 64, 3), np.float32).tolist()
        response = client.post("/v1/models/alex:predict", json={"instances": x})
        assert response.status_code == 413, response.text[:300]
        needed, limit = _figures(response.json()["error"])
        assert needed > limit == settings.max_request_bytes
        x = np.zeros((1, 64, 64, 3), np.float32).tolist()
        assert client.post("/v1/models/alex:predict", json={"instances": x}).is_success


def test_live_set_holds_tensors_a_later_layer_needs() -> None:
    """``model_peak`` by hand: while ``b`` runs (a large working set), ``a``'s
    output is still held for ``d``; the inputs are held twice throughout and
    the outputs twice at the end."""
    specs = [
        LAYER.validate_python(item)
        for item in (
            {"type": "Input", "name": "x", "shape": [10]},
            {"type": "Dense", "name": "a", "inputs": ["x"], "units": 100},
            {"type": "Dense", "name": "b", "inputs": ["x"], "units": 5},
            {"type": "Dense", "name": "c", "inputs": ["b"], "units": 5},
            {"type": "Add", "name": "d", "inputs": ["a", "c"]},
        )
    ]
    sizes = {"x": 10, "a": 100, "b": 5, "c": 5, "d": 100}

    def lp(name: str, inputs: int, inter: int, out: int) -> LayerPeak:
        return LayerPeak(name, "T", inputs, inter, out, fixed_bytes=7)

    peaks = {
        "a": lp("a", 10, 0, 100),
        "b": lp("b", 10, 1000, 5),
        "c": lp("c", 5, 0, 5),
        "d": lp("d", 105, 0, 100),
    }
    peak = model_peak(specs, peaks, sizes, ["x"], ["d"])
    assert peak.peak_layer == "b"
    assert peak.row_bytes == 4 * (2 * 10 + 100) + 4 * (10 + 1000 + 5)
    assert peak.fixed_bytes == SCRATCH_BYTES + 4 * 7
    small = {**peaks, "b": lp("b", 10, 0, 5)}
    peak = model_peak(specs, small, sizes, ["x"], ["d"])
    assert (peak.peak_layer, peak.row_bytes) == ("d", 4 * (2 * 10) + 4 * 205)
    peak = model_peak(specs, small, {**sizes, "d": 400}, ["x"], ["d"])
    assert (peak.peak_layer, peak.row_bytes) == ("", 4 * (2 * 10 + 2 * 400))


def test_estimate_reports_the_largest_batch_that_fits(tmp_path: Any) -> None:
    """/v2/estimate's memory.max_batch is the largest request the service
    serves: that many rows are answered, one more is a 413."""
    definition = {
        "input_shape": [8, 8, 1],
        "layers": [{"type": "UpSampling2D", "size": 16}, {"type": "Flatten"}],
    }
    settings = Settings(data_dir=tmp_path / "data", max_request_bytes=64 * 1024 * 1024)
    with TestClient(create_app(settings)) as client:
        memory = client.post("/v2/estimate", json=definition).json()["memory"]
        per_row = memory["row_bytes"] + memory["response_row_bytes"]
        expected = (settings.max_request_bytes - memory["fixed_bytes"]) // per_row
        assert memory["max_batch"] == expected
        assert (
            1 <= expected < settings.max_batch
        )  # the memory bound is the one that binds
        # The 16,384 output values of a row are in its JSON bound, and its
        # output tensor (held twice at the end) in the live set.
        assert memory["response_row_bytes"] >= 16_384 * 16
        assert memory["row_bytes"] >= 2 * 16_384 * 4
        _register(client, "up", definition)
        name = _input_name(client, "up")
        for rows, status in ((expected, 200), (expected + 1, 413)):
            body = _oip(rows, (8, 8, 1))
            body["inputs"][0]["name"] = name
            response = client.post("/v2/models/up/infer", json=body)
            assert response.status_code == status, response.text[:300]

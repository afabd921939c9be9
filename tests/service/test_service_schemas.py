"""The definition language: normalization, content hashes and graph checks."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError
from test_service_estimate import DEFINITIONS

from bnncore_service.schemas.definitions import Definition, content_hash

DEFINITION = TypeAdapter(Definition)


@pytest.mark.parametrize(("case", "definition"), DEFINITIONS[::7])
def test_normalized_definitions_are_fixed_points(
    case: str, definition: dict[str, Any]
) -> None:
    normalized = DEFINITION.validate_python(definition).normalized()
    again = DEFINITION.validate_python(normalized).normalized()
    assert again == normalized
    assert content_hash(again) == content_hash(normalized)


def test_spellings_of_one_model_hash_alike_and_changes_do_not() -> None:
    def digest(layer: dict[str, Any]) -> str:
        definition = {"input_shape": [8, 8, 1], "layers": [layer]}
        return content_hash(DEFINITION.validate_python(definition).normalized())

    base = {"type": "QuantConv2D", "filters": 2, "kernel_size": 3}
    assert digest({**base, "kernel_quantizer": "ste_sign"}) == digest(
        {
            **base,
            "kernel_size": [3, 3],
            "kernel_quantizer": {"type": "SteSign"},
            "kernel_initializer": "GlorotUniform",
            "name": "quant_conv2d",
        }
    )
    assert digest({**base, "kernel_quantizer": "ste_sign"}) != digest(
        {**base, "kernel_quantizer": {"type": "SteSign", "clip_value": 0.5}}
    )


@pytest.mark.parametrize(
    ("definition", "needle"),
    [
        (
            {
                "layers": [
                    {"type": "Input", "name": "x", "shape": [4]},
                    {"type": "Dense", "name": "d", "units": 2, "inputs": ["y"]},
                ],
                "outputs": ["d"],
            },
            "layers[1].inputs: 'y' is not the name of an earlier",
        ),
        (
            {
                "layers": [
                    {"type": "Input", "name": "x", "shape": [4]},
                    {"type": "Dense", "name": "x", "units": 2, "inputs": ["x"]},
                ],
                "outputs": ["x"],
            },
            "layers[1].name: duplicate name 'x'",
        ),
        (
            {
                "layers": [
                    {"type": "Input", "name": "x", "shape": [4]},
                    {"type": "Add", "name": "a", "inputs": ["x"]},
                ],
                "outputs": ["a"],
            },
            "takes 2 to 64 inputs, received 1",
        ),
        (
            {
                "layers": [
                    {"type": "Input", "name": "x", "shape": [4]},
                    {"type": "Dense", "name": "d", "units": 2, "inputs": ["x"]},
                    {"type": "Dense", "name": "e", "units": 2, "inputs": ["x"]},
                ],
                "outputs": ["d"],
            },
            "layer 'e' does not lead to any output",
        ),
        ({"input_shape": [4], "layers": [{"type": "Add"}]}, "use the graph form"),
        (
            {
                "input_shape": [4],
                "layers": [{"type": "Dense", "units": 2, "inputs": ["input"]}],
            },
            "inputs: not allowed in a Sequential",
        ),
    ],
)
def test_graph_mistakes_name_the_layer(definition: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        DEFINITION.validate_python(definition)
    assert needle in str(info.value)


def test_quant_conv1d_causal_padding_with_pad_values_is_refused(client) -> None:
    layer = {
        "type": "QuantConv1D",
        "filters": 2,
        "kernel_size": 3,
        "padding": "causal",
        "pad_values": 1.0,
    }
    response = client.post(
        "/v2/estimate", json={"input_shape": [8, 2], "layers": [layer]}
    )
    assert response.status_code == 422
    text = response.text
    assert "definition.layers[0]" in text and "pad_values" in text and "causal" in text
    layer["pad_values"] = 0.0
    assert (
        client.post(
            "/v2/estimate", json={"input_shape": [8, 2], "layers": [layer]}
        ).status_code
        == 200
    )

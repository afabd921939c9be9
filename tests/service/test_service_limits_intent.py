"""Limits protect what they are meant to, and bad bodies say where and why.

Widths (``units``, ``filters``) and tensor sizes (activation elements) are
limited separately: a Flatten of a large feature map is not a wide layer.
Sizes are computed by hand from the convolution arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from bnncore_service.config import Settings
from bnncore_service.main import create_app

Q = {"kernel_quantizer": "ste_sign", "kernel_constraint": "weight_clip"}
BN = {"type": "BatchNormalization", "scale": False}


def _mnist(pools: tuple[bool, bool]) -> dict[str, Any]:
    """Larq's MNIST tutorial BNN, with or without each of its two poolings."""
    conv = {"type": "QuantConv2D", "kernel_size": 3, "use_bias": False, **Q}
    binary = {"input_quantizer": "ste_sign"}
    layers: list[dict[str, Any]] = [{**conv, "filters": 32}]
    layers += [{"type": "MaxPooling2D"}] if pools[0] else []
    layers += [BN, {**conv, "filters": 64, **binary}]
    layers += [{"type": "MaxPooling2D"}] if pools[1] else []
    layers += [BN, {**conv, "filters": 64, **binary}, BN, {"type": "Flatten"}]
    dense = {"type": "QuantDense", "use_bias": False, **binary, **Q}
    layers += [{**dense, "units": 64}, BN, {**dense, "units": 10}, BN]
    layers += [{"type": "Activation", "activation": "softmax"}]
    return {"input_shape": [28, 28, 1], "layers": layers}


def _flat(size: int, pools: tuple[bool, bool]) -> int:
    size -= 2  # 3×3 valid
    size = size // 2 if pools[0] else size
    size -= 2
    size = size // 2 if pools[1] else size
    size -= 2
    return size * size * 64


@pytest.fixture
def small(tmp_path: Any) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", max_activation_elements=50_000)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    "pools",
    [(True, True), (False, True), (True, False), (False, False)],
    ids=["tutorial", "first-pool-removed", "second-pool-removed", "no-pooling"],
)
def test_mnist_tutorial_without_pooling_registers(
    client: TestClient, pools: tuple[bool, bool]
) -> None:
    created = client.post(
        "/v2/models", json={"name": "mnist", "definition": _mnist(pools)}
    )
    assert created.status_code == 201, created.text
    estimate = client.post("/v2/estimate", json=_mnist(pools)).json()
    flatten = next(row for row in estimate["layers"] if row["type"] == "Flatten")
    assert flatten["output_shape"] == [None, _flat(28, pools)]


def test_no_pooling_flatten_is_wider_than_the_old_dimension_limit() -> None:
    # The case the old BNN_MAX_DIMENSION (16,384 per axis) refused.
    assert _flat(28, (False, False)) == 22 * 22 * 64 > 16_384


@pytest.mark.parametrize(
    ("layer", "parts"),
    [
        (
            {"type": "Dense", "units": 70_000, "name": "wide"},
            ("units 70,000", "65,536", "BNN_MAX_UNITS", "'wide'", "Dense"),
        ),
        (
            {"type": "Conv1D", "filters": 9_000, "kernel_size": 1, "name": "fat"},
            ("filters 9,000", "8,192", "BNN_MAX_FILTERS", "'fat'", "Conv1D"),
        ),
    ],
    ids=["units", "filters"],
)
def test_widths_are_still_limited(
    client: TestClient, layer: dict[str, Any], parts: tuple[str, ...]
) -> None:
    response = client.post(
        "/v2/estimate", json={"input_shape": [4, 2], "layers": [layer]}
    )
    assert response.status_code == 413
    for part in parts:
        assert part in response.json()["error"], (part, response.json())


def test_input_extent_is_limited_by_the_dimension_setting(client: TestClient) -> None:
    response = client.post(
        "/v2/estimate",
        json={"input_shape": [20_000, 1], "layers": [{"type": "Flatten"}]},
    )
    assert response.status_code == 413
    message = response.json()["error"]
    for part in ("20,000", "16,384", "BNN_MAX_DIMENSION", "Input"):
        assert part in message, (part, message)


def test_tensor_sizes_are_limited_by_activation_elements(small: TestClient) -> None:
    definition = {
        "input_shape": [100, 100, 2],  # 20,000 elements
        "layers": [{"type": "UpSampling2D", "size": 2, "name": "grow"}],  # 80,000
    }
    response = small.post("/v2/estimate", json=definition)
    assert response.status_code == 413
    message = response.json()["error"]
    for part in ("100,000", "50,000", "BNN_MAX_ACTIVATION_ELEMENTS", "'grow'"):
        assert part in message, (part, message)


BAD = b'{"input_shape": [4],\n "layers": [,]}'


@pytest.mark.parametrize(
    ("path", "root"),
    [
        ("/v2/models", "body"),
        ("/v2/summary", "definition"),
        ("/v2/estimate", "definition"),
    ],
)
def test_non_json_body_names_position_and_reason(
    client: TestClient, path: str, root: str
) -> None:
    response = client.post(
        path, content=BAD, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    # The stray comma: the 13th character of line 2, offset 33.
    assert BAD.index(b",]") == 33 and BAD.index(b"\n") == 20
    assert response.json()["error"] == (
        f"{root}: not valid JSON: Expecting value at line 2 column 13 (character 33)"
    )


class _Body(BaseModel):
    value: int


def test_fastapi_parsed_bodies_get_the_same_message(settings: Settings) -> None:
    # A route using FastAPI's own JSON parsing goes through the app's
    # validation handler, which says where and why too.
    app = create_app(settings)

    @app.post("/echo")
    def echo(body: _Body) -> int:
        return body.value

    with TestClient(app) as client:
        response = client.post(
            "/echo", content=BAD, headers={"content-type": "application/json"}
        )
    assert response.status_code == 422
    assert response.json()["error"] == (
        "body: not valid JSON: Expecting value at line 2 column 13 (character 33)"
    )


@pytest.mark.parametrize(
    ("path", "wrap"),
    [("/v2/estimate", False), ("/v2/models", True)],
    ids=["estimate", "register"],
)
def test_invalid_layer_argument_names_value_layer_and_rule(
    client: TestClient, path: str, wrap: bool
) -> None:
    definition = {
        "input_shape": [4],
        "layers": [
            {"type": "Dense", "units": 2},
            {"type": "BatchNormalization", "name": "bn", "momentum": 3},
        ],
    }
    body = {"name": "m", "definition": definition} if wrap else definition
    response = client.post(path, json=body)
    assert response.status_code == 422
    assert response.json()["error"] == (
        "definition.layers[1].momentum: Input should be less than or equal to 1 "
        "(received 3) (layer 'bn', type BatchNormalization)"
    )

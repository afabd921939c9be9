"""The estimate and the profile agree on the zoo's models, through one table.

Both apply :mod:`bnncore_runtime.layer_rules`: the service's estimate to the
definition before anything is built (``POST /v2/estimate`` of the model's
Keras JSON), the profile (``bnncore.models.profile``) to the built Keras
model. The oracle for the numbers is the built model itself: Keras's own
output shapes, weights and ``count_params()``.

Zoo models the service refuses (a custom initializer or quantizer class from
``bnncore.zoo``) are checked layer by layer instead: the table applied to each
built layer gives Keras's output shape and weights.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import keras
import pytest
from fastapi.testclient import TestClient

from bnncore import zoo
from bnncore.models import profile
from bnncore_runtime.layer_rules import RULES, rule_of
from bnncore_service.config import Settings
from bnncore_service.main import create_app
from bnncore_service.schemas.layers import LAYER_TYPES

SHAPE = (64, 64, 3)  # small enough to build quickly, large enough for all
LAYER_FIELDS = (
    "type",
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
    "inference_params_by_bits",
    "memory_bits",
    "memory_bytes",
    "memory_bytes_8bit_floats",
    "macs",
    "macs_by_bits",
    "bops",
    "binary_mac_ratio",
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("zoo"))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _model(name: str) -> keras.Model:
    return zoo.get(name)(input_shape=SHAPE, num_classes=10)


@pytest.mark.parametrize("name", ["BiRealNet", "BinaryDenseNet28"])
def test_zoo_estimate_equals_profile(client: TestClient, name: str) -> None:
    model = _model(name)
    response = client.post("/v2/estimate", json=json.loads(model.to_json()))
    assert response.status_code == 200, response.text
    estimate = response.json()
    report = profile(model).to_dict()
    assert all(not row["layers"] for row in report["layers"])  # no nesting
    rows = {row["name"]: row for row in estimate["layers"]}
    assert list(rows) == [row["name"] for row in report["layers"]]
    for theirs in report["layers"]:
        mine = rows[theirs["name"]]
        for field in LAYER_FIELDS:
            assert mine[field] == theirs[field], (theirs["name"], field)
        assert [
            (w["name"], w["shape"], w["bits"], w["trainable"]) for w in mine["weights"]
        ] == [
            (w["name"], w["shape"], w["bits"], w["trainable"])
            for w in theirs["weights"]
        ], theirs["name"]
    for field in TOTAL_FIELDS:
        assert estimate["totals"][field] == report["totals"][field], field
    # The independent count: Keras's.
    assert estimate["totals"]["params"] == model.count_params()
    assert report["totals"]["binary_mac_ratio"] > 0.5  # a binarized network


def _inputs(layer: Any) -> list[tuple[int, ...]]:
    tensors = layer.input if isinstance(layer.input, list) else [layer.input]
    return [tuple(int(n) for n in t.shape[1:]) for t in tensors]


@pytest.mark.parametrize("name", ["QuickNetSmall", "DoReFaNet"])
def test_table_gives_keras_shapes_and_weights_on_zoo_layers(name: str) -> None:
    model = _model(name)
    checked = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        rule = rule_of(layer)
        assert rule is not None and rule.estimable, type(layer).__name__
        shapes = _inputs(layer)
        out = rule.output_shape(layer, shapes)
        assert out == tuple(layer.output.shape[1:]), layer.name
        weights = rule.weights(layer, shapes, out)
        assert [
            (w.name, w.shape, w.trainable and layer.trainable) for w in weights
        ] == [(v.name, tuple(v.shape), v.trainable) for v in layer.weights], layer.name
        checked += 1
    assert checked == len(model.layers) - 1


def test_every_allowed_layer_type_has_an_estimable_rule() -> None:
    allowed = set(LAYER_TYPES) - {"Input"}
    assert allowed <= set(RULES)
    assert all(RULES[name].estimable for name in allowed)

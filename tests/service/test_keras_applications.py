"""``keras.applications`` models import from ``model.to_json()`` and report exactly.

The oracle is ``bnncore.models.profile`` (Larq's ``lq.models.profile`` on
Keras 3) of the very Keras model whose JSON is sent: the service's estimate
(``POST /v2/estimate``, nothing built) must equal it layer by layer and in
total. Inputs are 32×32 (the smallest most constructors take) to keep the
models quick to build.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np
import pytest
from fastapi.testclient import TestClient

from bnncore.models import profile
from bnncore_service.config import Settings
from bnncore_service.main import create_app

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
    "memory_bits",
    "memory_bytes",
    "macs",
    "macs_by_bits",
    "bops",
)
SHAPE = (32, 32, 3)
APPLICATIONS: dict[str, Callable[..., keras.Model]] = {
    "MobileNetV2": keras.applications.MobileNetV2,
    "ResNet50": keras.applications.ResNet50,
    "EfficientNetB0": keras.applications.EfficientNetB0,
    "DenseNet121": keras.applications.DenseNet121,
    "NASNetMobile": keras.applications.NASNetMobile,
    "ConvNeXtTiny": keras.applications.ConvNeXtTiny,
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("apps"))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _application(name: str) -> keras.Model:
    return APPLICATIONS[name](weights=None, input_shape=SHAPE, classes=10)


def _weight_name(row: dict[str, Any], weight: dict[str, Any]) -> str:
    """Keras's LayerScale leaves its weight unnamed (``variable``,
    ``variable_1``, ... by a process-wide counter); the service calls it
    ``gamma``."""
    if row["type"] == "LayerScale":
        assert re.fullmatch(r"variable(_\d+)?", weight["name"]), weight
        return "gamma"
    return str(weight["name"])


def _flat(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Profile rows with a nested model's row replaced by its layers' rows
    (the service imports a nested Sequential as its layers)."""
    out = []
    for row in rows:
        if row["layers"]:
            children = _flat(row["layers"])
            assert sum(c["params"] for c in children) == row["params"]
            assert sum(c["macs"] for c in children) == row["macs"]
            out.extend(children)
        else:
            out.append(row)
    return out


@pytest.mark.parametrize("name", list(APPLICATIONS))
def test_application_estimate_equals_profile(client: TestClient, name: str) -> None:
    model = _application(name)
    response = client.post("/v2/estimate", json=json.loads(model.to_json()))
    assert response.status_code == 200, response.text
    estimate = response.json()
    report = profile(model).to_dict()
    rows = {row["name"]: row for row in estimate["layers"]}
    assert list(rows) == [row["name"] for row in _flat(report["layers"])]
    for theirs in _flat(report["layers"]):
        mine = rows[theirs["name"]]
        for field in LAYER_FIELDS:
            assert mine[field] == theirs[field], (theirs["name"], field)
        assert [
            (w["name"], w["shape"], w["bits"], w["trainable"]) for w in mine["weights"]
        ] == [
            (_weight_name(theirs, w), w["shape"], w["bits"], w["trainable"])
            for w in theirs["weights"]
        ], theirs["name"]
    for field in TOTAL_FIELDS:
        assert estimate["totals"][field] == report["totals"][field], field
    assert estimate["totals"]["params"] == model.count_params()
    assert estimate["name"] == model.name


def test_mobilenet_with_a_dotted_name_registers(client: TestClient) -> None:
    model = keras.applications.MobileNetV2(
        weights=None, input_shape=SHAPE, classes=10, alpha=0.35
    )
    assert "." in model.name  # mobilenetv2_0.35_32
    created = client.post(
        "/v2/models",
        json={"name": "mobilenet", "definition": json.loads(model.to_json())},
    )
    assert created.status_code == 201, created.text
    assert created.json()["params"] == model.count_params()
    definition = client.get("/v2/models/mobilenet/definition").json()
    assert definition["name"] == model.name
    metadata = client.get("/v2/models/mobilenet").json()
    assert metadata["outputs"][0]["shape"] == [-1, 10]


def _conv_bn(axis: Any) -> dict[str, Any]:
    inputs = keras.Input((6, 6, 2), name="image")
    x = keras.layers.Conv2D(3, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(axis=3, name="bn")(x)
    document = json.loads(keras.Model(inputs, x, name="net").to_json())
    document["config"]["layers"][2]["config"]["axis"] = axis
    return document


@pytest.mark.parametrize(
    ("axis", "status", "parts"),
    [
        (-1, 200, ()),
        (3, 200, ()),
        (
            2,
            422,
            ("axis: 2", "not the last axis", "allowed: -1 or 3", "'bn'", "Batch"),
        ),
        (-2, 422, ("axis: -2", "allowed: -1 or 3", "'bn'")),
        (9, 422, ("axis", "received 9", "'bn'", "BatchNormalization")),
    ],
    ids=["minus-one", "rank-minus-one", "middle", "minus-two", "out-of-range"],
)
def test_last_axis_in_any_spelling(
    client: TestClient, axis: int, status: int, parts: tuple[str, ...]
) -> None:
    response = client.post("/v2/estimate", json=_conv_bn(axis))
    assert response.status_code == status, response.text
    for part in parts:
        assert part in response.json()["error"], (part, response.json())


def test_refusals_name_the_value_the_layer_and_what_is_allowed(
    client: TestClient,
) -> None:
    inputs = keras.Input((8,), name="features")
    x = keras.layers.Dense(4, name="hidden")(inputs)
    document = json.loads(keras.Model(inputs, x).to_json())
    document["config"]["layers"][1]["config"]["units"] = 0
    response = client.post("/v2/estimate", json=document)
    assert response.status_code == 422
    message = response.json()["error"]
    for part in ("units", "greater than or equal to 1", "received 0", "'hidden'"):
        assert part in message, (part, message)
    document["config"]["layers"][1]["config"]["units"] = 70_000
    response = client.post("/v2/estimate", json=document)
    assert response.status_code == 413
    message = response.json()["error"]
    for part in ("70,000", "65,536", "BNN_MAX_UNITS", "'hidden'", "Dense"):
        assert part in message, (part, message)


def test_private_keras_classes_are_refused_by_module(client: TestClient) -> None:
    # LayerScale is read as the service's own layer only from the module
    # Keras writes for it; any other keras.src class is refused.
    model = keras.applications.ConvNeXtTiny(weights=None, input_shape=SHAPE, classes=10)
    document = json.loads(model.to_json())
    scale = next(
        e for e in document["config"]["layers"] if e["class_name"] == "LayerScale"
    )
    scale["module"] = "keras.src.layers.secret"
    response = client.post("/v2/estimate", json=document)
    assert response.status_code == 422
    message = response.json()["error"]
    for part in ("keras.src.layers.secret", "not a public", "LayerScale"):
        assert part in message, (part, message)
    scale["module"] = "keras.src.applications.convnext"
    scale["config"]["projection_dim"] = 7
    response = client.post("/v2/estimate", json=document)
    assert response.status_code == 422
    message = response.json()["error"]
    for part in ("projection_dim: 7", "96 channels", scale["name"]):
        assert part in message, (part, message)


def test_adapted_normalization_imports(client: TestClient) -> None:
    # adapt() builds the layer on the adapt data, so its build_config states
    # that batch size (10 here); the batch is not part of the model.
    inputs = keras.Input((4,), name="x")
    layer = keras.layers.Normalization(name="norm")
    layer.adapt(np.arange(40, dtype="float32").reshape(10, 4))
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(layer(inputs)))
    document = json.loads(model.to_json())
    assert document["config"]["layers"][1]["build_config"] == {"input_shape": [10, 4]}
    response = client.post("/v2/estimate", json=document)
    assert response.status_code == 200, response.text
    assert response.json()["totals"]["params"] == model.count_params()  # 4+4+1+10
    document["config"]["layers"][1]["build_config"] = {"input_shape": [10, 5]}
    response = client.post("/v2/estimate", json=document)
    assert response.status_code == 422
    assert "states [10, 5]" in response.json()["error"]


def _with_nested() -> keras.Model:
    inputs = keras.Input((6, 6, 2), name="image")
    block = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(4, 3, name="inner_conv"),
            keras.layers.ReLU(name="inner_relu"),
        ],
        name="block",
    )
    x = block(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name="outer")


def test_nested_sequential_is_read_as_its_layers(client: TestClient) -> None:
    model = _with_nested()
    response = client.post("/v2/estimate", json=json.loads(model.to_json()))
    assert response.status_code == 200, response.text
    rows = response.json()["layers"]
    assert [r["name"] for r in rows] == ["inner_conv", "inner_relu", "pool"]
    assert [r["output_shape"] for r in rows] == [
        [None, 4, 4, 4],
        [None, 4, 4, 4],
        [None, 4],
    ]
    assert response.json()["totals"]["params"] == model.count_params()


@pytest.mark.parametrize(
    ("edit", "parts"),
    [
        (
            lambda d: d["config"]["layers"][1]["config"]["layers"][0]["config"].update(
                batch_shape=[None, 5, 5, 2]
            ),
            ("config.layers[1].config.layers[0].config.batch_shape", "[None, 6, 6, 2]"),
        ),
        (
            lambda d: d["config"]["layers"][1]["config"]["layers"][1].update(
                module="keras.src.layers.hidden"
            ),
            ("config.layers[1].config.layers[1].module", "not a public", "inner_conv"),
        ),
        (
            lambda d: d["config"]["layers"][1]["config"]["layers"].append(
                copy.deepcopy(d["config"]["layers"][1])
            ),
            ("config.layers[1].config.layers[3].class_name", "nested model"),
        ),
    ],
    ids=["inner-input-shape", "private-inner-class", "nested-twice"],
)
def test_nested_sequential_refusals_name_the_inner_field(
    client: TestClient, edit: Any, parts: tuple[str, ...]
) -> None:
    document = json.loads(_with_nested().to_json())
    edit(document)
    response = client.post("/v2/estimate", json=document)
    assert response.status_code == 422, response.text
    for part in parts:
        assert part in response.json()["error"], (part, response.json())

"""The REST API through TestClient (with the lifespan): reports, registry, errors."""

from __future__ import annotations

import copy
from typing import Any

import keras
import pytest
from service_samples import MNIST

from bnncore.analysis import render
from bnncore.layers import QuantConv2D, QuantDense
from bnncore.models import profile
from bnncore_service.schemas.layers import LAYER_TYPES


def local_mnist() -> keras.Model:
    """The MNIST definition built by hand in Python: the oracle of the reports."""
    clip = {"kernel_constraint": "weight_clip"}
    x = keras.Input((28, 28, 1), name="input")
    y = QuantConv2D(
        32, 3, kernel_quantizer="ste_sign", use_bias=False, **clip, name="quant_conv2d"
    )(x)
    y = keras.layers.MaxPooling2D(2, name="max_pooling2d")(y)
    y = keras.layers.BatchNormalization(scale=False, name="batch_normalization")(y)
    y = keras.layers.Flatten(name="flatten")(y)
    y = QuantDense(
        10,
        input_quantizer="ste_sign",
        kernel_quantizer="ste_sign",
        **clip,
        name="quant_dense",
    )(y)
    return keras.Model(x, y, name="mnist-bnn")


@pytest.fixture(scope="module")
def oracle() -> Any:
    return profile(local_mnist())


@pytest.mark.parametrize(
    ("fmt", "media"),
    [("text", "text/plain"), ("csv", "text/csv"), ("markdown", "text/markdown")],
)
def test_dry_run_renders_the_profile_of_the_same_model(client, oracle, fmt, media):
    response = client.post(f"/v2/summary?format={fmt}", json=MNIST)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media)
    assert response.text == render(oracle, format=fmt)


def test_dry_run_json_is_the_profile_document_and_stores_nothing(client, oracle):
    response = client.post("/v2/summary", json=MNIST)
    assert response.status_code == 200
    assert response.json() == oracle.to_dict()
    assert client.get("/v2/models").json()["total"] == 0


def test_estimate_endpoint_agrees_with_the_report(client, oracle):
    estimate = client.post("/v2/estimate", json=MNIST).json()
    assert estimate["totals"]["params"] == oracle.totals.params
    assert estimate["totals"]["memory_bytes"] == oracle.totals.memory_bytes
    assert estimate["totals"]["macs"] == oracle.totals.macs
    assert estimate["outputs"] == [[None, 10]]


def test_register_is_idempotent_and_versions_are_immutable(client, oracle):
    first = client.post("/v2/models", json={"name": "mnist", "definition": MNIST})
    assert first.status_code == 201
    body = first.json()
    assert (body["version"], body["created"]) == (1, True)
    assert body["params"] == oracle.totals.params

    again = client.post("/v2/models", json={"name": "mnist", "definition": MNIST})
    assert again.status_code == 200
    assert again.json() == {**body, "created": False}

    # Spelled differently, same model: aliases and defaults normalize away.
    spelled = copy.deepcopy(MNIST)
    spelled["layers"][0]["kernel_quantizer"] = {"type": "SteSign", "clip_value": 1.0}
    spelled["layers"][0]["kernel_size"] = [3, 3]
    spelled["layers"][1]["padding"] = "valid"
    same = client.post("/v2/models", json={"name": "mnist", "definition": spelled})
    assert (same.status_code, same.json()["version"]) == (200, 1)

    changed = copy.deepcopy(MNIST)
    changed["layers"][0]["filters"] = 16
    second = client.post("/v2/models", json={"name": "mnist", "definition": changed})
    assert (second.status_code, second.json()["version"]) == (201, 2)

    # Deleting version 2 does not free its number.
    assert client.delete("/v2/models/mnist/versions/2").json() == {
        "name": "mnist",
        "version": 2,
        "deleted": True,
    }
    assert client.get("/v2/models/mnist/versions/2").status_code == 404
    third = client.post("/v2/models", json={"name": "mnist", "definition": changed})
    assert (third.status_code, third.json()["version"]) == (201, 3)
    assert client.get("/v2/models/mnist").json()["versions"] == ["1", "3"]


def test_metadata_has_the_open_inference_protocol_shape(client):
    client.post("/v2/models", json={"name": "mnist", "definition": MNIST})
    metadata = client.get("/v2/models/mnist").json()
    assert metadata["name"] == "mnist"
    assert metadata["versions"] == ["1"]
    assert metadata["platform"]
    assert metadata["inputs"] == [
        {"name": "input", "datatype": "FP32", "shape": [-1, 28, 28, 1]}
    ]
    assert metadata["outputs"] == [
        {"name": "quant_dense", "datatype": "FP32", "shape": [-1, 10]}
    ]
    version = client.get("/v2/models/mnist/versions/1").json()
    assert version["versions"] == ["1"] and version["inputs"] == metadata["inputs"]


def test_registered_summary_and_definition(client, oracle):
    client.post("/v2/models", json={"name": "mnist", "definition": MNIST})
    for path in ("/v2/models/mnist", "/v2/models/mnist/versions/1"):
        text = client.get(f"{path}/summary?format=markdown")
        assert text.text == render(oracle, format="markdown")
        assert client.get(f"{path}/summary").json() == oracle.to_dict()
    definition = client.get("/v2/models/mnist/definition").json()
    assert definition["layers"][0]["kernel_quantizer"] == {
        "type": "SteSign",
        "clip_value": 1.0,
    }
    assert [layer["name"] for layer in definition["layers"]] == [
        "quant_conv2d",
        "max_pooling2d",
        "batch_normalization",
        "flatten",
        "quant_dense",
    ]
    # The normalized definition is a fixed point: registering it changes nothing.
    again = client.post("/v2/models", json={"name": "mnist", "definition": definition})
    assert (again.status_code, again.json()["version"]) == (200, 1)
    assert client.get("/v2/models/mnist/versions/1/definition").json() == definition


def test_list_is_paginated_by_name(client):
    small = {"input_shape": [4], "layers": [{"type": "Dense", "units": 2}]}
    for name in ("c", "a", "b"):
        assert (
            client.post(
                "/v2/models", json={"name": name, "definition": small}
            ).status_code
            == 201
        )
    page = client.get("/v2/models?limit=2").json()
    assert [m["name"] for m in page["models"]] == ["a", "b"]
    assert (page["total"], page["next_offset"]) == (3, 2)
    rest = client.get("/v2/models?limit=2&offset=2").json()
    assert [m["name"] for m in rest["models"]] == ["c"]
    assert rest["next_offset"] is None
    entry = rest["models"][0]
    assert {k: entry[k] for k in ("name", "versions", "latest_version")} == {
        "name": "c",
        "versions": [1],
        "latest_version": 1,
    }
    # Each version's sizes (tests/service/test_report_schema_typed.py): 2 × 4 + 2
    assert [(d["version"], d["params"]) for d in entry["version_details"]] == [(1, 10)]


def test_graph_definition_with_residual_and_concatenation(client):
    graph = {
        "name": "residual",
        "layers": [
            {"type": "Input", "name": "image", "shape": [8, 8, 3]},
            {
                "type": "QuantConv2D",
                "name": "conv",
                "inputs": ["image"],
                "filters": 3,
                "kernel_size": 3,
                "padding": "same",
                "input_quantizer": "ste_sign",
                "kernel_quantizer": "ste_sign",
                "pad_values": 1.0,
            },
            {"type": "Add", "name": "shortcut", "inputs": ["image", "conv"]},
            {"type": "Concatenate", "name": "cat", "inputs": ["image", "shortcut"]},
            {"type": "GlobalAveragePooling2D", "name": "pool", "inputs": ["cat"]},
            {"type": "Dense", "name": "logits", "inputs": ["pool"], "units": 4},
        ],
        "outputs": ["logits", "shortcut"],
    }
    created = client.post("/v2/models", json={"name": "res", "definition": graph})
    assert created.status_code == 201
    metadata = client.get("/v2/models/res").json()
    assert [(t["name"], t["shape"]) for t in metadata["outputs"]] == [
        ("logits", [-1, 4]),
        ("shortcut", [-1, 8, 8, 3]),
    ]
    report = client.get("/v2/models/res/summary").json()
    # Hand count: conv 3·3·3·3 + 3 bias, dense 6·4 + 4.
    assert report["totals"]["params"] == 81 + 3 + 24 + 4
    assert report["totals"]["params_by_bits"] == {"1": 81, "32": 31}


def test_health_server_metadata_and_docs(client, settings):
    assert client.get("/v2/health/live").json() == {"status": "live"}
    assert client.get("/v2/health/ready").json() == {"status": "ready"}
    server = client.get("/v2").json()
    assert server["name"] == "bnncore" and server["version"]
    assert server["layer_types"] == sorted(LAYER_TYPES)
    assert server["limits"]["max_params"] == settings.max_params
    for name in ("max_request_bytes", "max_definition_keys", "max_batch"):
        assert server["limits"][name] == getattr(settings, name)
    assert "swagger" in client.get("/docs").text.lower()
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v2/summary", "/v2/models", "/v2/models/{name}/versions/{version}"} <= set(
        paths
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("get", "/v2/models/ghost", None, 404, "'ghost' is not registered"),
        ("get", "/v2/models/ghost/versions/1/summary", None, 404, "not registered"),
        ("delete", "/v2/models/ghost/versions/1", None, 404, "not registered"),
        ("get", "/v2/models/bad%20name", None, 422, "name"),
        ("get", "/v2/models/x/versions/0", None, 422, "version"),
        ("get", "/v2/nowhere", None, 404, "Not Found"),
        ("put", "/v2/models", None, 405, "Method Not Allowed"),
        ("post", "/v2/summary?format=pdf", MNIST, 422, "format"),
        ("post", "/v2/summary", [1, 2], 422, "definition"),
        ("post", "/v2/models", {"name": "x"}, 422, "definition: Field required"),
        (
            "post",
            "/v2/models",
            {"name": "x", "definition": MNIST, "extra": 1},
            422,
            "extra: Extra inputs are not permitted",
        ),
        (
            "post",
            "/v2/summary",
            {"input_shape": [4], "layers": [{"type": "Dense", "units": 0}]},
            422,
            "definition.layers[0].units: Input should be greater than or equal to 1 "
            "(received 0)",
        ),
        (
            "post",
            "/v2/summary",
            {"input_shape": [4], "layers": [{"type": "Dense", "units": 70_000}]},
            413,
            "definition.layers[0].units: units 70,000 exceeds the limit 65,536 "
            "(BNN_MAX_UNITS)",
        ),
        ("post", "/v2/summary", {"zoo": "NoSuchNet"}, 422, "unknown architecture"),
    ],
)
def test_errors_use_the_envelope(client, method, path, body, status, needle):
    kwargs = {} if body is None else {"json": body}
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status
    assert list(response.json()) == ["error"]
    assert needle in response.json()["error"]


def test_malformed_json_and_oversized_bodies(client, settings):
    broken = client.post(
        "/v2/summary",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert broken.status_code == 422 and "error" in broken.json()
    big = b'{"pad": "' + b"x" * settings.max_body_bytes + b'"}'
    response = client.post(
        "/v2/summary", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "BNN_MAX_BODY_BYTES" in response.json()["error"]


def test_built_models_are_cached(client):
    runtime = client.app.state.runtime
    for _ in range(3):
        assert client.post("/v2/summary", json=MNIST).status_code == 200
    client.post("/v2/models", json={"name": "mnist", "definition": MNIST})
    client.get("/v2/models/mnist/summary")
    assert runtime.builds == 1


ZOO = {"zoo": "BinaryAlexNet", "input_shape": [64, 64, 3], "num_classes": 10}


def test_zoo_definition_reports_the_zoo_model(client):
    from bnncore import zoo

    model = zoo.get("BinaryAlexNet")(input_shape=(64, 64, 3), num_classes=10)
    expected = profile(model).to_dict()
    created = client.post("/v2/models", json={"name": "alex", "definition": ZOO})
    assert created.status_code == 201
    assert created.json()["params"] == model.count_params()
    report = client.get("/v2/models/alex/summary").json()
    assert report["totals"] == expected["totals"]
    metadata = client.get("/v2/models/alex").json()
    assert metadata["inputs"][0]["shape"] == [-1, 64, 64, 3]
    assert metadata["outputs"][0]["shape"] == [-1, 10]
    assert "BinaryAlexNet" in client.get("/v2").json()["zoo_models"]


def test_zoo_models_over_the_params_limit_are_refused(tmp_path):
    from fastapi.testclient import TestClient

    from bnncore_service.config import Settings
    from bnncore_service.main import create_app

    app = create_app(Settings(data_dir=tmp_path / "data", max_params=1_000_000))
    with TestClient(app) as small:
        response = small.post("/v2/summary", json=ZOO)
    assert response.status_code == 413
    assert "BNN_MAX_PARAMS" in response.json()["error"]

"""TensorFlow Serving REST model status (``GET /v1/models/{name}[/versions/{v}]``)
and metadata (``.../metadata``) against expectations derived by hand from the
registered definitions, version routing, and the error envelope."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_inference_common import FLOAT, RES, SEQ, register

from bnncore_service.config import Settings
from bnncore_service.inference.tfserving import model_status
from bnncore_service.main import create_app

AVAILABLE = {"state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}

# Shapes worked out from the definitions in test_inference_common (-1: batch).
RES_IO = (
    # image 6x6x4; extra 3
    {"image": [-1, 6, 6, 4], "extra": [-1, 3]},
    # logits = Dense(3)(pool) + extra: 3; pool = GAP(image + bn(conv 4 filters,
    # same padding)): 4 channels
    {"logits": [-1, 3], "pool": [-1, 4]},
)
FLOAT_IO = (
    # Sequential: the input is named "input"; unnamed Dense layers get Keras's
    # names dense, dense_1; the output is the last layer, Dense(2)
    {"input": [-1, 4]},
    {"dense_1": [-1, 2]},
)
SEQ_IO = (
    {"input": [-1, 6, 6, 2]},
    # 6x6x2 -> QuantConv2D(8, 3, valid) 4x4x8 -> BN -> Flatten 128 -> QuantDense(4)
    {"quant_dense": [-1, 4]},
)


def tensor_info(name: str, shape: list[int]) -> dict[str, Any]:
    """TF Serving's JSON for a float32 TensorInfo (int64 sizes as strings)."""
    return {
        "dtype": "DT_FLOAT",
        "tensor_shape": {
            "dim": [{"size": str(size), "name": ""} for size in shape],
            "unknown_rank": False,
        },
        "name": f"{name}:0",
    }


def expected_metadata(
    name: str, version: int, io: tuple[dict[str, list[int]], dict[str, list[int]]]
) -> dict[str, Any]:
    inputs, outputs = io
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    "serving_default": {
                        "inputs": {n: tensor_info(n, s) for n, s in inputs.items()},
                        "outputs": {n: tensor_info(n, s) for n, s in outputs.items()},
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            }
        },
    }


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """``tfs`` version 1 is the graph RES, version 2 the Sequential FLOAT (so a
    wrong version answers visibly wrong shapes); ``seq`` is SEQ."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("tfserving") / "data")
    with TestClient(create_app(settings)) as test_client:
        assert register(test_client, "tfs", RES)["version"] == 1
        assert register(test_client, "tfs", FLOAT)["version"] == 2
        assert register(test_client, "seq", SEQ)["version"] == 1
        yield test_client


def test_model_status_lists_every_version_latest_first(client: TestClient) -> None:
    reply = client.get("/v1/models/tfs")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {
        "model_version_status": [
            {"version": "2", **AVAILABLE},
            {"version": "1", **AVAILABLE},
        ]
    }
    for version in (1, 2):
        reply = client.get(f"/v1/models/tfs/versions/{version}")
        assert reply.status_code == 200
        assert reply.json() == {
            "model_version_status": [{"version": str(version), **AVAILABLE}]
        }


def test_model_status_orders_versions_whatever_the_input_order() -> None:
    versions = [s["version"] for s in model_status([1, 10, 3])["model_version_status"]]
    assert versions == ["10", "3", "1"]


def test_metadata_of_the_latest_and_of_each_version(client: TestClient) -> None:
    for path, expected in (
        ("/v1/models/tfs/metadata", expected_metadata("tfs", 2, FLOAT_IO)),
        ("/v1/models/tfs/versions/2/metadata", expected_metadata("tfs", 2, FLOAT_IO)),
        ("/v1/models/tfs/versions/1/metadata", expected_metadata("tfs", 1, RES_IO)),
        ("/v1/models/seq/metadata", expected_metadata("seq", 1, SEQ_IO)),
    ):
        reply = client.get(path)
        assert reply.status_code == 200, path
        assert reply.json() == expected, path


def test_metadata_agrees_with_the_open_inference_protocol_metadata(
    client: TestClient,
) -> None:
    for name, version in (("tfs", 1), ("tfs", 2), ("seq", 1)):
        oip = client.get(f"/v2/models/{name}/versions/{version}").json()
        tfs = client.get(f"/v1/models/{name}/versions/{version}/metadata").json()
        signature = tfs["metadata"]["signature_def"]["signature_def"]
        assert list(signature) == ["serving_default"]
        for side in ("inputs", "outputs"):
            tensors = signature["serving_default"][side]
            assert list(tensors) == [t["name"] for t in oip[side]]  # same order
            for tensor in oip[side]:
                info = tensors[tensor["name"]]
                assert tensor["datatype"] == "FP32" and info["dtype"] == "DT_FLOAT"
                sizes = [int(d["size"]) for d in info["tensor_shape"]["dim"]]
                assert sizes == tensor["shape"]


def test_predict_accepts_what_the_metadata_describes(client: TestClient) -> None:
    """A client that builds its columnar request from the metadata (batch of 2
    for the -1) gets every output the metadata lists, with those shapes."""
    metadata = client.get("/v1/models/tfs/versions/1/metadata").json()
    signature = metadata["metadata"]["signature_def"]["signature_def"]
    serving = signature["serving_default"]

    def shape(info: dict[str, Any]) -> list[int]:
        sizes = [int(d["size"]) for d in info["tensor_shape"]["dim"]]
        return [2 if size == -1 else size for size in sizes]

    def zeros(dims: list[int]) -> Any:
        return 0.0 if not dims else [zeros(dims[1:]) for _ in range(dims[0])]

    body = {
        "signature_name": "serving_default",
        "inputs": {n: zeros(shape(i)) for n, i in serving["inputs"].items()},
    }
    reply = client.post("/v1/models/tfs/versions/1:predict", json=body)
    assert reply.status_code == 200, reply.text
    outputs = reply.json()["outputs"]
    assert list(outputs) == list(serving["outputs"])
    for name, info in serving["outputs"].items():
        value, dims = outputs[name], []
        while isinstance(value, list):
            dims.append(len(value))
            value = value[0]
        assert dims == shape(info), name


@pytest.mark.parametrize(
    "path, message",
    [
        ("/v1/models/nope", "model 'nope' is not registered"),
        ("/v1/models/nope/metadata", "model 'nope' is not registered"),
        ("/v1/models/nope/versions/1", "'nope' version 1 is not registered"),
        ("/v1/models/tfs/versions/3", "'tfs' version 3 is not registered"),
        ("/v1/models/tfs/versions/3/metadata", "'tfs' version 3 is not registered"),
    ],
)
def test_unknown_model_or_version_is_404_in_the_envelope(
    client: TestClient, path: str, message: str
) -> None:
    reply = client.get(path)
    assert reply.status_code == 404
    assert reply.json() == {"error": message}


@pytest.mark.parametrize(
    "path, fragments",
    [
        ("/v1/models/tfs/versions/abc", ["path.version", "valid integer", "'abc'"]),
        (
            "/v1/models/tfs/versions/0/metadata",
            ["path.version", "greater than or equal to 1", "'0'"],
        ),
        ("/v1/models/foo:predict", ["path.name", "pattern", "'foo:predict'"]),
        ("/v1/models/1bad/metadata", ["path.name", "pattern", "'1bad'"]),
    ],
)
def test_bad_path_parameters_are_400_naming_the_field(
    client: TestClient, path: str, fragments: list[str]
) -> None:
    reply = client.get(path)
    assert reply.status_code == 400
    assert list(reply.json()) == ["error"]
    for fragment in fragments:
        assert fragment in reply.json()["error"], (fragment, reply.json())


def test_deleting_the_latest_version_moves_status_and_metadata(
    tmp_path: Any,
) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path / "data"))) as own:
        register(own, "m", RES)
        register(own, "m", FLOAT)
        assert own.delete("/v2/models/m/versions/2").status_code == 200
        assert own.get("/v1/models/m").json() == {
            "model_version_status": [{"version": "1", **AVAILABLE}]
        }
        assert own.get("/v1/models/m/metadata").json() == expected_metadata(
            "m", 1, RES_IO
        )
        assert own.get("/v1/models/m/versions/2").status_code == 404
        assert own.delete("/v2/models/m/versions/1").status_code == 200
        assert own.get("/v1/models/m").status_code == 404


def test_the_routes_are_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, schema in (
        ("/v1/models/{name}", "TFSModelStatus"),
        ("/v1/models/{name}/versions/{version}", "TFSModelStatus"),
        ("/v1/models/{name}/metadata", "TFSModelMetadata"),
        ("/v1/models/{name}/versions/{version}/metadata", "TFSModelMetadata"),
    ):
        operation = paths[path]["get"]
        ok = operation["responses"]["200"]["content"]["application/json"]
        assert ok["schema"]["$ref"] == f"#/components/schemas/{schema}"
        assert {"200", "400", "404"} <= set(operation["responses"])
        assert operation["security"] == [{"bearerAuth": ["read"]}]

"""PUT /v2/models/{name}/versions/{version}/weights: upload, checks, atomicity.

Oracles: the trained model in this process (its own forward pass), files
written by ``bnncore.export`` and by ``safetensors.numpy`` directly, hashlib
for the reported sha256, and the files on disk.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import keras
import numpy as np
import pytest
import safetensors.numpy
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

import bnncore as lq
from bnncore_service.builder import plan
from bnncore_service.config import Settings as ServiceSettings
from bnncore_service.main import create_app
from bnncore_service.routes.models import _definition_adapter
from bnncore_service.weights import WeightsRefusedError, check

logging.getLogger("bnncore").setLevel(logging.ERROR)

URL = "/v2/models/bnn/versions/1/weights"
OCTETS = {"content-type": "application/octet-stream"}


def weight_files(store: Any) -> list[str]:
    """The names of the stored weights files, through the store's blobs (a
    directory by default, a bucket under ``-p backend_plugin``)."""
    return sorted(PurePosixPath(blob.key).name for blob in store.blobs.list("weights"))


def small_bnn(units: int = 3) -> keras.Model:
    """A small binarized CNN with explicit layer names (stable weight names)."""
    binary = {"kernel_quantizer": "ste_sign", "kernel_constraint": "weight_clip"}
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            lq.layers.QuantConv2D(4, 3, use_bias=False, name="conv1", **binary),
            keras.layers.BatchNormalization(name="bn1"),
            keras.layers.Flatten(name="flat"),
            lq.layers.QuantDense(
                units, input_quantizer="ste_sign", name="dense1", **binary
            ),
            keras.layers.BatchNormalization(scale=False, name="bn2"),
            keras.layers.Activation("softmax", name="softmax"),
        ],
        name="bnn",
    )


def trained(model: keras.Model, seed: int) -> keras.Model:
    """Random values of both signs and non-trivial BatchNorm statistics, as
    training leaves them."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if variable.path.endswith("moving_variance"):
            value = rng.uniform(0.3, 3.0, shape)
        elif variable.path.endswith("gamma"):
            value = rng.uniform(0.5, 2.0, shape)
        else:
            value = rng.normal(0.0, 0.7, shape)
        variable.assign(value.astype("float32"))
    return model


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    a, b = trained(small_bnn(), 1), trained(small_bnn(), 2)
    x = np.random.default_rng(3).normal(size=(5, 6, 6, 2)).astype("float32")
    return {
        "a": a,
        "b": b,
        "x": x,
        "definition": lq.export.to_definition(a),
        "file_a": lq.export.to_bytes(a),
        "file_b": lq.export.to_bytes(b),
    }


@pytest.fixture
def app_client(tmp_path: Path, models: dict[str, Any]) -> Iterator[TestClient]:
    settings = ServiceSettings(
        data_dir=tmp_path / "data", max_body_bytes=8192, max_weights_bytes=64 * 1024
    )
    with TestClient(create_app(settings)) as client:
        reply = client.post(
            "/v2/models", json={"name": "bnn", "definition": models["definition"]}
        )
        assert reply.status_code == 201, reply.text
        yield client


def served_model(client: TestClient) -> keras.Model:
    """What serving runs: the model of Runtime.built(plan, Store.weights)."""
    app = client.app
    store, runtime, settings = app.state.store, app.state.runtime, app.state.settings
    record = store.get("bnn", 1)
    definition = _definition_adapter.validate_python(
        store.load_definition(record.content_hash)
    )
    return runtime.built(plan(definition, settings), store.weights("bnn", 1)).model


def served(client: TestClient, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(served_model(client)(x, training=False))


def assert_serves(
    client: TestClient, model: keras.Model, file: bytes, x: np.ndarray
) -> None:
    """The served model is ``model`` reloaded from its bnncore ``file``, bit
    for bit on any CPU: the same TensorFlow ops on the same values in this
    process, and each folded batch norm (bn1: 4 channels, bn2: 3, scale=False)
    rebuilt by ``bnncore.export.batchnorm.unfold``, which searched its
    variables with the layer's own operation on its own channels on this CPU,
    so the layer computes the stored x·s + o (checked on bn2 in NumPy)."""
    np.testing.assert_array_equal(served(client, x), expect(model, x))
    served_bn2 = served_model(client).get_layer("bn2")
    given = np.asarray(
        keras.Model(model.inputs[0], model.get_layer("bn2").input)(x), np.float32
    )
    raw = safetensors.numpy.load(file)
    np.testing.assert_array_equal(
        np.asarray(served_bn2(given, training=False)),
        given * raw["bn2/scale"] + raw["bn2/offset"],
    )


def infer(client: TestClient, x: np.ndarray) -> np.ndarray:
    """``POST .../infer`` (Open Inference Protocol V2) on version 1."""
    name = metadata(client)["inputs"][0]["name"]
    request = {
        "id": "w",
        "inputs": [
            {
                "name": name,
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.reshape(-1).tolist(),
            }
        ],
    }
    reply = client.post("/v2/models/bnn/versions/1/infer", json=request)
    assert reply.status_code == 200, reply.text
    (output,) = reply.json()["outputs"]
    return np.asarray(output["data"], "float32").reshape(output["shape"])


def close(served: np.ndarray, expected: np.ndarray) -> None:
    """HTTP inference may run the packed engine, whose float rounding differs
    from TensorFlow's in the last bits (the Keras model itself is checked
    bit-exactly through ``served``)."""
    np.testing.assert_allclose(served, expected, rtol=1e-6, atol=1e-7)


def metadata(client: TestClient) -> dict[str, Any]:
    reply = client.get("/v2/models/bnn/versions/1")
    assert reply.status_code == 200
    return reply.json()


def expect(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


def test_upload_serves_the_trained_model_and_replaces_without_staleness(
    app_client: TestClient, models: dict[str, Any]
) -> None:
    x, file_a, file_b = models["x"], models["file_a"], models["file_b"]
    assert metadata(app_client)["weights"] == "initial"
    assert metadata(app_client)["weights_sha256"] is None
    initial = served(app_client, x)
    assert not np.allclose(initial, expect(models["a"], x))

    reply = app_client.put(URL, content=file_a, headers=OCTETS)
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["sha256"] == hashlib.sha256(file_a).hexdigest()
    assert (body["size"], body["format"], body["replaced"]) == (
        len(file_a),
        "bnncore",
        None,
    )
    assert body["tensors"] == len(lq.export.weight_names(models["a"]))
    meta = metadata(app_client)
    assert (meta["weights"], meta["weights_sha256"]) == ("uploaded", body["sha256"])
    assert_serves(app_client, models["a"], file_a, x)
    close(infer(app_client, x), expect(models["a"], x))

    # Re-upload replaces: the cache keys on the sha256, so b serves at once.
    reply = app_client.put(URL, content=file_b, headers=OCTETS)
    assert reply.status_code == 200, reply.text
    assert reply.json()["replaced"] == body["sha256"]
    assert_serves(app_client, models["b"], file_b, x)
    close(infer(app_client, x), expect(models["b"], x))
    # The initial-weights model (shared by identical definitions) is untouched.
    store, runtime = app_client.app.state.store, app_client.app.state.runtime
    record = store.get("bnn", 1)
    definition = _definition_adapter.validate_python(
        store.load_definition(record.content_hash)
    )
    base = runtime.built(plan(definition, app_client.app.state.settings))
    # Exact: the same model and weights (nothing reloaded), in this process.
    np.testing.assert_array_equal(expect(base.model, x), initial)
    # Only the current file is kept, under its sha256.
    assert weight_files(store) == [f"{hashlib.sha256(file_b).hexdigest()}.safetensors"]


def test_plain_float32_safetensors_file_is_accepted(
    app_client: TestClient, models: dict[str, Any]
) -> None:
    x, model = models["x"], models["b"]
    plain = {
        name: keras.ops.convert_to_numpy(variable)
        for name, variable in lq.export.weight_names(model).items()
    }
    data = safetensors.numpy.save(plain)  # no __metadata__ at all
    reply = app_client.put(URL, content=data)  # no Content-Type: accepted too
    assert reply.status_code == 201, reply.text
    assert reply.json()["format"] == "float32"
    # Exact: the variables themselves (nothing folded), the same TF ops here.
    np.testing.assert_array_equal(served(app_client, x), expect(model, x))
    other = safetensors.numpy.save(plain, metadata={"format": "pt"})
    assert app_client.put(URL, content=other, headers=OCTETS).status_code == 200


def _corrupt_header(data: bytes) -> bytes:
    length = int.from_bytes(data[:8], "little")
    return data[:8] + b"{" * length + data[8 + length :]


def test_refused_files_leave_the_previous_weights_serving(
    app_client: TestClient, models: dict[str, Any]
) -> None:
    x, file_a = models["x"], models["file_a"]
    assert app_client.put(URL, content=file_a, headers=OCTETS).status_code == 201
    sha = hashlib.sha256(file_a).hexdigest()
    wrong = lq.export.to_bytes(trained(small_bnn(units=5), 4))
    plain = {
        n: keras.ops.convert_to_numpy(v)
        for n, v in lq.export.weight_names(models["a"]).items()
    }
    plain["conv1/kernel"] = plain["conv1/kernel"].astype("float64")
    nan = dict(plain, **{"conv1/kernel": np.full((3, 3, 2, 4), np.nan, "float32")})
    cases = {
        "truncated": (file_a[:-7], 400, "truncated"),
        "corrupted header": (_corrupt_header(file_a), 400, "header: not valid JSON"),
        "flipped length": (b"\xff" * 8 + file_a[8:], 400, "header: length"),
        "not safetensors": (b"PK\x03\x04 a zip archive", 400, "header"),
        "empty": (b"", 400, "empty body"),
        "float64 tensor": (safetensors.numpy.save(plain), 400, "'F64', allowed"),
        "non-finite": (safetensors.numpy.save(nan), 422, "NaN or infinity"),
        "other architecture": (wrong, 422, "does not fit the model"),
    }
    for label, (data, status, fragment) in cases.items():
        reply = app_client.put(URL, content=data, headers=OCTETS)
        assert reply.status_code == status, (label, reply.text)
        assert fragment in reply.json()["error"], (label, reply.json())
        meta = metadata(app_client)
        assert (meta["weights"], meta["weights_sha256"]) == ("uploaded", sha), label
    assert_serves(app_client, models["a"], file_a, x)
    close(infer(app_client, x), expect(models["a"], x))


def test_a_mismatch_lists_every_difference(app_client: TestClient) -> None:
    names = lq.export.weight_names(small_bnn())
    tensors = {
        name: np.zeros(tuple(v.shape), "float32")
        for name, v in names.items()
        if name != "bn1/gamma"
    }
    tensors["dense1/kernel"] = np.zeros((16, 3), "float32")
    tensors["dense1/bias"] = np.zeros(3, "uint8")
    tensors["extra/kernel"] = np.zeros(2, "float32")
    reply = app_client.put(URL, content=safetensors.numpy.save(tensors))
    assert reply.status_code == 422
    assert sorted(reply.json()["differences"]) == sorted(
        [
            "missing from the file: 'bn1/gamma' (shape [4], float32)",
            "'dense1/kernel': shape [16, 3] in the file, [64, 3] in the model",
            "'dense1/bias': dtype uint8 in the file, float32 in the model",
            "not in the model: 'extra/kernel'",
        ]
    )
    assert "4 differences" in reply.json()["error"]
    assert metadata(app_client)["weights"] == "initial"
    assert not weight_files(app_client.app.state.store)


def test_limits_content_type_and_unknown_versions(
    app_client: TestClient, models: dict[str, Any]
) -> None:
    big = b"\0" * (64 * 1024 + 1)
    reply = app_client.put(URL, content=big, headers=OCTETS)
    assert reply.status_code == 413
    assert "BNN_MAX_WEIGHTS_BYTES" in reply.json()["error"]
    # Bodies over BNN_MAX_BODY_BYTES (8 KiB here) reach the upload route only.
    reply = app_client.post("/v2/models", content=b"{" + b" " * 9000 + b"}")
    assert reply.status_code == 413 and "BNN_MAX_BODY_BYTES" in reply.json()["error"]
    reply = app_client.put(
        "/v2/models/bnn/versions/9/weights", content=b"\0" * 9000, headers=OCTETS
    )
    assert reply.status_code == 404 and "version 9" in reply.json()["error"]
    reply = app_client.put(
        URL, files={"file": ("w.safetensors", models["file_a"])}
    )  # multipart
    assert reply.status_code == 415
    assert "multipart/form-data" in reply.json()["error"]
    assert "application/octet-stream" in reply.json()["error"]
    assert app_client.put("/v2/models/nope/versions/1/weights").status_code == 404


def test_a_failed_write_keeps_the_previous_weights(
    app_client: TestClient, models: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert app_client.put(URL, content=models["file_a"]).status_code == 201
    store = app_client.app.state.store

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    # The upload is streamed to a temporary file; the disk refuses its flush.
    monkeypatch.setattr("bnncore_service.records.os.fsync", full_disk)
    reply = app_client.put(URL, content=models["file_b"])
    assert reply.status_code == 503
    assert "No space left" in reply.json()["error"]
    assert (
        metadata(app_client)["weights_sha256"]
        == hashlib.sha256(models["file_a"]).hexdigest()
    )
    assert_serves(app_client, models["a"], models["file_a"], models["x"])
    assert len(weight_files(store)) == 1


def test_deleting_the_version_removes_its_weights(
    app_client: TestClient, models: dict[str, Any]
) -> None:
    assert app_client.put(URL, content=models["file_a"]).status_code == 201
    store = app_client.app.state.store
    assert store.weights("bnn", 1) is not None
    assert app_client.delete("/v2/models/bnn/versions/1").status_code == 200
    assert store.weights("bnn", 1) is None
    assert not weight_files(store)


def test_a_file_shared_by_two_versions_outlives_one_of_them(
    app_client: TestClient, models: dict[str, Any]
) -> None:
    reply = app_client.post(
        "/v2/models", json={"name": "twin", "definition": models["definition"]}
    )
    assert reply.status_code == 201
    for url in (URL, "/v2/models/twin/versions/1/weights"):
        assert app_client.put(url, content=models["file_a"]).status_code == 201
    store = app_client.app.state.store
    assert store.weights("twin", 1).path == store.weights("bnn", 1).path
    assert app_client.delete("/v2/models/bnn/versions/1").status_code == 200
    assert store.weights("twin", 1).read() == models["file_a"]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(data=st.data())
def test_damaged_files_are_refused_or_fit_never_an_unexpected_error(
    models: dict[str, Any], data: st.DataObject
) -> None:
    """Random byte changes (header and data) and truncations of a real file:
    ``check`` either accepts a file that fits the model or refuses it with
    400/422; nothing else escapes."""
    original = models["file_a"]
    header_end = 8 + int.from_bytes(original[:8], "little")
    damaged = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        in_header = data.draw(st.booleans())
        position = data.draw(
            st.integers(8, header_end - 1)
            if in_header
            else st.integers(0, len(damaged) - 1)
        )
        damaged[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        damaged = damaged[: data.draw(st.integers(0, len(damaged)))]
    try:
        checked = check(models["a"], bytes(damaged), 10**6)
    except WeightsRefusedError as refused:
        assert refused.status in (400, 422) and str(refused)
    else:
        assert checked.sha256 == hashlib.sha256(bytes(damaged)).hexdigest()
        assert not lq.export.mismatches(models["a"], checked.arrays)

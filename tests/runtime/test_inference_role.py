"""The inference replica (``BNN_ROLE=inference``): a real server on the store a
full replica wrote, with neither TensorFlow nor Keras loaded, answering with the
full replica's packed-engine bits, and refusing what needs TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from runtime_models import randomize

warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402

from bnncore_service.config import Settings  # noqa: E402
from bnncore_service.inference.runtime_models import (  # noqa: E402
    NeedsFullReplicaError,
    keras_document,
    load,
)

ROOT = Path(__file__).resolve().parents[2]
HEADER = "Inference-Header-Content-Length"
FORBIDDEN = ("tensorflow", "keras", "bnncore")

WEIGHTED = {"kernel_quantizer": "ste_sign", "kernel_constraint": "weight_clip"}
BINARY = {"input_quantizer": "ste_sign", **WEIGHTED}
# The service's Sequential form (names generated, Input "input").
MNIST_SEQUENTIAL: dict[str, Any] = {
    "name": "mnist-seq",
    "input_shape": [28, 28, 1],
    "layers": [
        {"type": "QuantConv2D", "filters": 32, "kernel_size": 3, **WEIGHTED,
         "use_bias": False},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "BatchNormalization", "scale": False},
        {"type": "QuantConv2D", "filters": 16, "kernel_size": 3, "padding": "same",
         "pad_values": 1.0, "activation": "relu", **BINARY},
        {"type": "BatchNormalization"},
        {"type": "Flatten"},
        {"type": "QuantDense", "units": 10, **BINARY},
        {"type": "Softmax"},
    ],
}  # fmt: skip
AVERAGE_POOL: dict[str, Any] = {
    "name": "avg",
    "input_shape": [8, 8, 2],
    "layers": [
        {"type": "QuantConv2D", "filters": 4, "kernel_size": 3, **BINARY},
        {"type": "AveragePooling2D", "pool_size": 2, "name": "the_pool"},
        {"type": "Flatten"},
        {"type": "Dense", "units": 3},
    ],
}  # fmt: skip

FLOAT_ONLY: dict[str, Any] = {
    "name": "float",
    "input_shape": [8, 8, 2],
    "layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "Flatten"},
        {"type": "Dense", "units": 3},
    ],
}


def _zoo_initializers_replaced(node: Any) -> Any:
    """QuickNet's blur-pool initializer (a bnncore.zoo class the service does
    not accept) replaced by zeros: the weights are uploaded anyway."""
    if isinstance(node, dict):
        for key, value in node.items():
            module = value.get("module") if isinstance(value, dict) else None
            if isinstance(module, str) and module.startswith("bnncore.zoo"):
                node[key] = {"module": "keras.initializers", "class_name": "Zeros",
                             "config": {}, "registered_name": None}  # fmt: skip
            else:
                _zoo_initializers_replaced(value)
    elif isinstance(node, list):
        for value in node:
            _zoo_initializers_replaced(value)
    return node


def _oip(x: np.ndarray, input_name: str) -> dict[str, Any]:
    return {
        "inputs": [{"name": input_name, "shape": list(x.shape), "datatype": "FP32",
                    "data": x.reshape(-1).tolist()}],
        "parameters": {"binary_data_output": True},
    }  # fmt: skip


def _binary_outputs(response: Any) -> list[bytes]:
    """The raw little-endian bytes of each output of a binary OIP response."""
    assert response.status_code == 200, response.text
    length = int(response.headers[HEADER])
    header = json.loads(response.content[:length])
    out, offset = [], length
    for output in header["outputs"]:
        size = output["parameters"]["binary_data_size"]
        out.append(response.content[offset : offset + size])
        offset += size
    assert offset == len(response.content)
    return out


@pytest.fixture(scope="module")
def full_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store written by a full replica: registered models, uploaded bnncore
    weights files, and what the full replica answers (on the packed engine,
    itself checked against ``bnncore.engine.compile(model).predict``)."""
    from pydantic import TypeAdapter

    import bnncore as lq
    from bench.engine import mnist_bnn
    from bnncore_service.builder import build, plan
    from bnncore_service.main import create_app
    from bnncore_service.schemas.definitions import Definition

    data_dir = tmp_path_factory.mktemp("shared-store")
    rng = np.random.default_rng(7)
    mnist = mnist_bnn()
    quicknet = lq.zoo.get("QuickNetSmall")(input_shape=(32, 32, 3), num_classes=10)
    # name: (definition, input shape, the Keras model it describes or None)
    models: dict[str, tuple[Any, Any, Any]] = {
        "mnist": (lq.export.to_definition(mnist), (28, 28, 1), mnist),
        "mnist-seq": (MNIST_SEQUENTIAL, (28, 28, 1), None),
        "quicknet": (_zoo_initializers_replaced(lq.export.to_definition(quicknet)),
                     (32, 32, 3), quicknet),
        "avg": (AVERAGE_POOL, (8, 8, 2), None),
        "float": (FLOAT_ONLY, (8, 8, 2), None),
    }  # fmt: skip
    expected: dict[str, Any] = {}
    with TestClient(create_app(Settings(data_dir=data_dir))) as client:
        for seed, (name, (definition, shape, model)) in enumerate(models.items()):
            body = {"name": name, "definition": definition}
            assert client.post("/v2/models", json=body).status_code == 201
            # The same model with random weights, uploaded as a bnncore file.
            if model is None:
                validated = TypeAdapter(Definition).validate_python(definition)
                model = build(plan(validated, Settings()), Settings())
            built = randomize(model, seed)
            put = client.put(
                f"/v2/models/{name}/versions/1/weights",
                content=lq.export.to_bytes(built),
                headers={"Content-Type": "application/octet-stream"},
            )
            assert put.status_code in (200, 201), put.text
            x = rng.normal(size=(3, *shape)).astype(np.float32)
            input_name = client.get(f"/v2/models/{name}").json()["inputs"][0]["name"]
            expected[name] = {"x": x, "input": input_name}
            if name in ("avg", "float"):
                continue
            answer = client.post(f"/v2/models/{name}/infer", json=_oip(x, input_name))
            assert answer.headers["X-BNN-Engine"] == "packed"
            expected[name]["outputs"] = _binary_outputs(answer)
            oracle = np.asarray(lq.engine.compile(built).predict(x), dtype="<f4")
            # Bit for bit on any CPU: unfold rebuilt each batch norm so its own
            # rsqrt (the engine's op on the same (C,) vector) gives the stored
            # scale and offset, which `built`'s layers computed here.
            assert expected[name]["outputs"] == [oracle.tobytes()]
        # Registered without weights: its initial weights are drawn by Keras.
        body = {"name": "unweighted", "definition": MNIST_SEQUENTIAL}
        assert client.post("/v2/models", json=body).status_code == 201
        tfs = client.post(
            "/v1/models/mnist-seq:predict",
            json={"instances": expected["mnist-seq"]["x"][:2].tolist()},
        )
        assert tfs.status_code == 200, tfs.text
        expected["tfs"] = tfs.json()
    return {"data_dir": data_dir, "expected": expected}


@pytest.fixture(scope="module")
def replica(start_service: Any, full_store: dict[str, Any]) -> Iterator[Any]:
    """The inference replica: ``python -m bnncore_service``, ``BNN_ROLE=inference``."""
    running = start_service(full_store["data_dir"], env={"BNN_ROLE": "inference"})
    yield running
    running.stop()


@pytest.mark.parametrize("name", ["mnist", "mnist-seq", "quicknet"])
def test_inference_replica_answers_with_the_full_replicas_bits(
    replica: Any, full_store: dict[str, Any], name: str
) -> None:
    case = full_store["expected"][name]
    answer = httpx.post(
        f"{replica.base}/v2/models/{name}/infer",
        json=_oip(case["x"], case["input"]),
        timeout=60,
    )
    assert answer.headers["X-BNN-Engine"] == "packed"
    # Bit for bit on any CPU: the replica applies the stored scale and offset,
    # which the full replica's unfolded batch norms compute again exactly.
    assert _binary_outputs(answer) == case["outputs"]
    ready = httpx.get(f"{replica.base}/v2/models/{name}/versions/1/ready")
    assert ready.status_code == 200
    assert ready.json() == {"name": name, "ready": True}


def test_tensorflow_serving_predict_matches(
    replica: Any, full_store: dict[str, Any]
) -> None:
    x = full_store["expected"]["mnist-seq"]["x"][:2]
    answer = httpx.post(
        f"{replica.base}/v1/models/mnist-seq:predict", json={"instances": x.tolist()}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == full_store["expected"]["tfs"]


def test_replica_process_has_no_tensorflow(replica: Any) -> None:
    """After serving, the server process has mapped no TensorFlow library."""
    assert httpx.get(f"{replica.base}/v2/models/mnist/ready").status_code == 200
    maps = Path(f"/proc/{replica.process.pid}/maps").read_text()
    assert "_kernels" in maps  # the core is loaded: the maps are the right ones
    assert "tensorflow" not in maps.lower()
    assert "libtensorflow" not in maps


def test_a_layer_the_core_does_not_run_needs_a_full_replica(
    replica: Any, full_store: dict[str, Any]
) -> None:
    case = full_store["expected"]["avg"]
    answer = httpx.post(
        f"{replica.base}/v2/models/avg/infer", json=_oip(case["x"], case["input"])
    )
    assert answer.status_code == 501
    message = answer.json()["error"]
    assert "'the_pool' (AveragePooling2D)" in message
    assert "full replica" in message
    ready = httpx.get(f"{replica.base}/v2/models/avg/ready")
    assert ready.status_code == 503
    assert "not ready" in ready.json()["error"]
    assert "AveragePooling2D" in ready.json()["error"]
    # Remembered: refused again at once, with the same reason.
    again = httpx.post(
        f"{replica.base}/v2/models/avg/infer", json=_oip(case["x"], case["input"])
    )
    assert again.status_code == 501
    assert again.json()["error"] == message


def test_a_model_without_binary_layers_needs_a_full_replica(
    replica: Any, full_store: dict[str, Any]
) -> None:
    """A full replica runs it with Keras, so only a full replica answers it
    with the same bits (the core runs every layer of it, but rounds its own
    way)."""
    case = full_store["expected"]["float"]
    answer = httpx.post(
        f"{replica.base}/v2/models/float/infer", json=_oip(case["x"], case["input"])
    )
    assert answer.status_code == 501
    assert "it has no binary layer" in answer.json()["error"]


def test_no_uploaded_weights_needs_a_full_replica(
    replica: Any, full_store: dict[str, Any]
) -> None:
    x = full_store["expected"]["mnist-seq"]["x"]
    answer = httpx.post(
        f"{replica.base}/v2/models/unweighted/infer",
        json=_oip(x, full_store["expected"]["mnist-seq"]["input"]),
    )
    assert answer.status_code == 501
    assert "no weights were uploaded" in answer.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/v2/models", 404),
        ("GET", "/v2/models", 404),
        ("PUT", "/v2/models/mnist/versions/1/weights", 404),
        ("POST", "/v2/summary", 404),
        ("GET", "/v2/models/mnist/summary", 404),
        ("DELETE", "/v2/models/mnist/versions/1", 405),
    ],
    ids=["register", "list", "upload", "report", "summary", "delete"],
)
def test_full_routes_are_not_served(
    replica: Any, method: str, path: str, status: int
) -> None:
    answer = httpx.request(method, f"{replica.base}{path}", json={})
    assert answer.status_code == status
    assert "BNN_ROLE=inference" in answer.json()["error"]


def test_metadata_and_health(replica: Any) -> None:
    meta = httpx.get(f"{replica.base}/v2/models/mnist").json()
    assert meta["name"] == "mnist" and meta["versions"] == ["1"]
    assert meta["inputs"][0]["shape"] == [-1, 28, 28, 1]
    assert httpx.get(f"{replica.base}/v2/health/ready").json() == {"status": "ready"}
    assert httpx.get(f"{replica.base}/v2").json()["role"] == "inference"
    metrics = httpx.get(f"{replica.base}/metrics").text
    assert "bnn_" in metrics


def test_serving_in_a_fresh_process_imports_no_tensorflow(
    full_store: dict[str, Any],
) -> None:
    """The app factory, its lifespan and an inference, in a process of its own:
    neither TensorFlow, Keras nor bnncore is imported."""
    case = full_store["expected"]["mnist"]
    script = f"""
import json, sys, warnings
warnings.filterwarnings("ignore")
from fastapi.testclient import TestClient
from bnncore_service.config import Settings
from bnncore_service.inference_app import create_inference_app
body = json.loads(sys.stdin.read())
settings = Settings(data_dir={str(full_store["data_dir"])!r}, role="inference")
with TestClient(create_inference_app(settings)) as client:
    reply = client.post("/v2/models/mnist/infer", json=body)
    assert reply.status_code == 200, reply.text
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {FORBIDDEN!r})))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BNN_")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(_oip(case["x"], case["input"])),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_plain_float32_weights_need_a_full_replica() -> None:
    header = json.dumps(
        {"dense/kernel": {"dtype": "F32", "shape": [2, 1], "data_offsets": [0, 8]}}
    ).encode()
    data = len(header).to_bytes(8, "little") + header + bytes(8)
    definition = {
        "name": "tiny",
        "input_shape": [2],
        "layers": [{"type": "Dense", "name": "dense", "units": 1, "use_bias": False}],
    }
    with pytest.raises(
        NeedsFullReplicaError, match="plain float32 safetensors"
    ) as info:
        load("tiny", 1, ("h", "w"), definition, data, 2**20)
    assert info.value.status == 501


def test_zoo_definitions_need_a_full_replica() -> None:
    zoo = {"zoo": "QuickNet", "input_shape": [224, 224, 3], "num_classes": 1000,
           "include_top": True}  # fmt: skip
    with pytest.raises(NeedsFullReplicaError, match=r"zoo definition \('QuickNet'\)"):
        load("qn", 2, ("h", "w"), zoo, b"", 2**20)
    with pytest.raises(ValueError, match="Keras JSON"):
        keras_document(zoo)


def test_api_keys_and_scopes_apply(full_store: dict[str, Any]) -> None:
    from bnncore_service.inference_app import create_inference_app

    settings = Settings(
        data_dir=full_store["data_dir"], role="inference", api_keys="r:read,i:infer"
    )
    case = full_store["expected"]["mnist"]
    body = _oip(case["x"], case["input"])
    with TestClient(create_inference_app(settings)) as client:
        assert client.post("/v2/models/mnist/infer", json=body).status_code == 401
        read = {"Authorization": "Bearer r"}
        refused = client.post("/v2/models/mnist/infer", json=body, headers=read)
        assert refused.status_code == 403
        assert "'infer' scope" in refused.json()["error"]
        assert client.get("/v2/models/mnist", headers=read).status_code == 200
        infer = {"Authorization": "Bearer i"}
        answer = client.post("/v2/models/mnist/infer", json=body, headers=infer)
        assert _binary_outputs(answer) == case["outputs"]
        assert client.get("/v2/health/live").status_code == 200  # open


def test_the_full_app_module_serves_the_role_it_is_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``uvicorn bnncore_service.main:app`` with ``BNN_ROLE=inference`` is an
    inference replica too; ``BNN_ENGINE=keras`` cannot be one."""
    from bnncore_service import main

    monkeypatch.setenv("BNN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BNN_ROLE", "inference")
    app = main._app_from_environment()
    assert "inference replica" in app.title
    monkeypatch.setenv("BNN_ENGINE", "keras")
    with pytest.raises(SystemExit) as stopped:
        main._app_from_environment()
    assert stopped.value.code == 2
    assert "BNN_ENGINE='keras' needs TensorFlow" in capsys.readouterr().err
    monkeypatch.setenv("BNN_ROLE", "full")
    assert "inference replica" not in main._app_from_environment().title


def test_preload_decides_readiness(full_store: dict[str, Any]) -> None:
    """``BNN_PRELOAD`` on an inference replica (as KServe runs it): ready once
    its model is loaded; a model that needs a full replica keeps it not
    ready, with the reason."""
    import time

    from bnncore_service.inference_app import create_inference_app

    def ready_after(preload: str) -> Any:
        settings = Settings(
            data_dir=full_store["data_dir"], role="inference", preload=preload
        )
        with TestClient(create_inference_app(settings)) as client:
            deadline = time.monotonic() + 30
            while True:
                # The states first: a failure stays "failed" while retried.
                states = client.app.state.preload.states()  # type: ignore[attr-defined]
                answer = client.get("/v2/health/ready")
                if answer.status_code == 200 or "failed" in states.values():
                    return answer
                assert time.monotonic() < deadline, answer.text
                time.sleep(0.05)

    assert ready_after("mnist:1").json() == {"status": "ready"}
    refused = ready_after("avg")
    assert refused.status_code == 503
    assert "avg failed to load" in refused.json()["error"]
    assert "AveragePooling2D" in refused.json()["error"]

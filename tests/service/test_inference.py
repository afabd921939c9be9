"""Inference over REST equals ``model.predict`` in-process: OIP V2 and TF Serving,
Sequential, graph and zoo models, every input datatype, both engines; OIP
conformance (shape/datatype errors, id echo, version routing, ready) and the
NaN/Inf policy."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from test_inference_common import (
    FLOAT,
    NAN,
    RES,
    SEQ,
    assert_engine_close,
    output,
    randomize,
    register,
    served_model,
    tensor,
)

from bnncore_service.config import Settings
from bnncore_service.main import create_app

ZOO = {"zoo": "QuickNetSmall", "input_shape": [32, 32, 3], "num_classes": 10}


@pytest.fixture(scope="module")
def env(tmp_path_factory: Any) -> Iterator[dict[str, Any]]:
    """One app with the test models registered and given random weights."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("inference") / "data")
    with TestClient(create_app(settings)) as client:
        models = {}
        for index, (name, definition) in enumerate(
            [("seq", SEQ), ("res", RES), ("float", FLOAT), ("zoo", ZOO)]
        ):
            registered = register(client, name, definition)
            model = served_model(client, registered["content_hash"])
            randomize(model, seed=index)
            models[name] = model
        yield {"client": client, "models": models}


def _infer(client: Any, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, json=body)


def _io(client: Any, name: str) -> tuple[list[str], list[str]]:
    metadata = client.get(f"/v2/models/{name}").json()
    return [t["name"] for t in metadata["inputs"]], [
        t["name"] for t in metadata["outputs"]
    ]


RNG = np.random.default_rng(7)
SHAPE = (3, 6, 6, 2)
SAMPLES = {
    "FP32": RNG.normal(size=SHAPE).astype(np.float32),
    "FP64": RNG.normal(size=SHAPE),
    "FP16": RNG.normal(size=SHAPE).astype(np.float16),
    "INT8": RNG.integers(-128, 128, SHAPE).astype(np.int8),
    "INT16": RNG.integers(-5, 6, SHAPE).astype(np.int16),
    "INT32": RNG.integers(-5, 6, SHAPE).astype(np.int32),
    "INT64": RNG.integers(-(2**40), 2**40, SHAPE),
    "UINT8": RNG.integers(0, 256, SHAPE).astype(np.uint8),
    "UINT16": RNG.integers(0, 7, SHAPE).astype(np.uint16),
    "UINT32": RNG.integers(0, 7, SHAPE).astype(np.uint32),
    "UINT64": RNG.integers(0, 7, SHAPE).astype(np.uint64),
    "BOOL": RNG.random(SHAPE) < 0.5,
}


@pytest.mark.parametrize("engine", ["keras", "packed"])
def test_sequential_every_datatype_equals_predict(env, engine):
    client, model = env["client"], env["models"]["seq"]
    (input_name,), (output_name,) = _io(client, "seq")
    # One oracle call for every sample: rows are independent and no value
    # depends on the batch size on any CPU (exact ±1 sums; the batch norm and
    # the bias are elementwise IEEE operations, TensorFlow's rsqrt on the same
    # 8 channels), so 36 stacked rows give each row's bits.
    stacked = np.concatenate([x.astype(np.float32) for x in SAMPLES.values()])
    oracle = model.predict(stacked, verbose=0).reshape(len(SAMPLES), SHAPE[0], -1)
    for index, (datatype, x) in enumerate(SAMPLES.items()):
        expected = oracle[index]
        body = {
            "inputs": [tensor(input_name, x, datatype, nested=index % 2 == 1)],
            "parameters": {"engine": engine},
        }
        response = _infer(client, "/v2/models/seq/infer", body)
        assert response.status_code == 200, (datatype, response.text)
        result = response.json()
        assert result["parameters"]["engine"] == engine
        assert response.headers["x-bnn-engine"] == engine
        assert_engine_close(output(result, output_name), expected, engine)


def test_auto_engine_is_packed_for_a_bnn_and_keras_otherwise(env):
    client = env["client"]
    seq = client.post(
        "/v2/models/seq/infer",
        json={"inputs": [tensor("input", SAMPLES["FP32"], "FP32")]},
    ).json()
    assert seq["parameters"] == {"engine": "packed"}

    x = RNG.normal(size=(2, 4)).astype(np.float32)
    (input_name,), (output_name,) = _io(client, "float")
    plain = client.post(
        "/v2/models/float/infer", json={"inputs": [tensor(input_name, x, "FP32")]}
    )
    assert plain.json()["parameters"] == {"engine": "keras"}
    # Exact: the same model's predict on the same 2 rows, in this process.
    np.testing.assert_array_equal(
        output(plain.json(), output_name),
        env["models"]["float"].predict(x, verbose=0),
    )
    forced = client.post(
        "/v2/models/float/infer",
        json={
            "inputs": [tensor(input_name, x, "FP32")],
            "parameters": {"engine": "packed"},
        },
    )
    assert forced.status_code == 400
    assert "parameters.engine" in forced.json()["error"]
    assert "no binary layer" in forced.json()["error"]


@pytest.mark.parametrize("engine", ["keras", "packed"])
def test_graph_with_two_inputs_and_outputs_equals_predict(env, engine):
    client, model = env["client"], env["models"]["res"]
    image = RNG.normal(size=(2, 6, 6, 4)).astype(np.float32)
    extra = RNG.integers(-3, 4, (2, 3)).astype(np.int32)
    logits, pool = model.predict([image, extra.astype(np.float32)], verbose=0)
    body = {
        "id": "graph-1",
        # Inputs in the other order, outputs requested in the other order.
        "inputs": [tensor("extra", extra, "INT32"), tensor("image", image, "FP64")],
        "outputs": [{"name": "pool"}, {"name": "logits"}],
        "parameters": {"engine": engine},
    }
    result = _infer(client, "/v2/models/res/infer", body).json()
    assert result["id"] == "graph-1"
    assert [o["name"] for o in result["outputs"]] == ["pool", "logits"]
    assert result["parameters"]["engine"] == engine
    assert_engine_close(output(result, "pool"), pool, engine)
    assert_engine_close(output(result, "logits"), logits, engine)

    only = {**body, "outputs": [{"name": "logits"}]}
    result = _infer(client, "/v2/models/res/infer", only).json()
    assert [o["name"] for o in result["outputs"]] == ["logits"]


def test_zoo_model_equals_predict_on_both_engines(env):
    client, model = env["client"], env["models"]["zoo"]
    (input_name,), (output_name,) = _io(client, "zoo")
    x = RNG.normal(size=(2, 32, 32, 3)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    for engine in ("auto", "keras"):
        body = {
            "inputs": [tensor(input_name, x, "FP32")],
            "parameters": {"engine": engine},
        }
        result = _infer(client, "/v2/models/zoo/infer", body).json()
        ran = result["parameters"]["engine"]
        assert ran == ("packed" if engine == "auto" else "keras")
        assert_engine_close(output(result, output_name), expected, ran)
    rows = client.post("/v1/models/zoo:predict", json={"instances": x.tolist()})
    assert rows.headers["x-bnn-engine"] == "packed"
    assert_engine_close(
        np.asarray(rows.json()["predictions"], np.float32), expected, "packed"
    )


def test_tf_serving_row_and_columnar_formats(env):
    client = env["client"]
    model = env["models"]["seq"]
    x = SAMPLES["FP32"]
    expected = model.predict(x, verbose=0)
    rows = client.post(
        "/v1/models/seq:predict",
        json={"signature_name": "serving_default", "instances": x.tolist()},
    )
    assert rows.status_code == 200 and list(rows.json()) == ["predictions"]
    assert_engine_close(
        np.asarray(rows.json()["predictions"], np.float32), expected, "packed"
    )
    named = client.post(
        "/v1/models/seq/versions/1:predict",
        json={"instances": [{"input": row} for row in x.tolist()]},
    )
    assert named.json() == rows.json()
    columns = client.post("/v1/models/seq:predict", json={"inputs": x.tolist()})
    assert columns.json() == {"outputs": rows.json()["predictions"]}
    assert (
        client.post(
            "/v1/models/seq:predict", json={"inputs": {"input": x.tolist()}}
        ).json()
        == columns.json()
    )

    # Two inputs, two outputs: objects per instance, objects per output.
    res = env["models"]["res"]
    image = RNG.normal(size=(2, 6, 6, 4)).astype(np.float32)
    extra = RNG.normal(size=(2, 3)).astype(np.float32)
    logits, pool = res.predict([image, extra], verbose=0)
    instances = [
        {"image": i.tolist(), "extra": e.tolist()}
        for i, e in zip(image, extra, strict=True)
    ]
    predictions = client.post(
        "/v1/models/res:predict", json={"instances": instances}
    ).json()["predictions"]
    assert [sorted(p) for p in predictions] == [["logits", "pool"]] * 2
    got = np.asarray([p["logits"] for p in predictions], np.float32)
    assert_engine_close(got, logits, "packed")
    outputs = client.post(
        "/v1/models/res:predict",
        json={"inputs": {"image": image.tolist(), "extra": extra.tolist()}},
    ).json()["outputs"]
    assert_engine_close(np.asarray(outputs["pool"], np.float32), pool, "packed")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"instances": [[0.0] * 72], "inputs": [[0.0] * 72]},
            "received both",
        ),
        ({"signature_name": "serving_default"}, "missing 'instances'"),
        ({"signature_name": "predict", "instances": [1]}, "signature_name"),
        ({"instances": []}, "instances: received an empty list"),
        ({"instances": [{"input": 1}, 2]}, "mix objects and values"),
        ({"instances": [{"inputs": 1}]}, "unknown input 'inputs'"),
        ({"instances": [[1, 2]]}, "shape [1, 2]"),
        ({"instances": ["a"]}, "received 'a'"),
        ({"inputs": {"image": [1]}}, "unknown input 'image'"),
        ({"inputs": 3}, "non-empty list"),
        ({"instance": [1]}, "instance: Extra inputs are not permitted"),
    ],
)
def test_tf_serving_refusals(env, body, message):
    response = env["client"].post("/v1/models/seq:predict", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_tf_serving_multi_input_model_needs_named_instances(env):
    response = env["client"].post("/v1/models/res:predict", json={"instances": [[1]]})
    assert response.status_code == 400
    assert "each instance must be an object" in response.json()["error"]


def _good() -> dict[str, Any]:
    return {"inputs": [tensor("input", SAMPLES["FP32"][:1], "FP32")]}


def _with(path: str, value: Any) -> dict[str, Any]:
    """The good request with one field replaced (``path``: dotted, list indexes)."""
    body = copy.deepcopy(_good())
    target: Any = body
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    return body


OIP_ERRORS = [
    (_with("inputs.0.shape", [1, 6, 6]), "inputs[0].shape: received [1, 6, 6]"),
    (_with("inputs.0.shape", [1, 6, 7, 2]), "has shape [-1, 6, 6, 2]"),
    (_with("inputs.0.shape", [0, 6, 6, 2]), "at least 1"),
    (_with("inputs.0.shape", [1, 6, 6, -2]), "inputs[0].shape[3]"),
    (_with("inputs.0.name", "image"), "inputs[0].name: received 'image'"),
    (_with("inputs.0.datatype", "FP8"), "received 'FP8': unknown datatype; allowed"),
    (_with("inputs.0.datatype", "BYTES"), "BYTES tensors are not supported"),
    (_with("inputs.0.data", [1.0] * 71), "received 71 values; shape [1, 6, 6, 2]"),
    (_with("inputs.0.data", [[[1.0] * 12] * 6]), "nested lists of shape [1, 6, 12]"),
    (_with("inputs.0.data", [1.0] * 71 + ["x"]), "elements must be JSON numbers"),
    (_with("inputs.0.data", [[1.0] * 72, [2.0]]), "received 2 values"),
    (_with("inputs.0.datatype", "BOOL"), "BOOL elements must be true or false"),
    (
        _with("inputs.0.datatype", "INT32"),
        "INT32 elements must be integers; received",
    ),
    (
        {"inputs": [tensor("input", np.full((1, 6, 6, 2), 300), "INT8")]},
        "300 is out of range for INT8 [-128, 127]",
    ),
    (
        {"inputs": [tensor("input", np.full((1, 6, 6, 2), 7e4), "FP16")]},
        "out of range for FP16",
    ),
    (
        {"inputs": [tensor("input", np.full((1, 6, 6, 2), 1e300), "FP64")]},
        "beyond the float32 range",
    ),
    ({"inputs": [_good()["inputs"][0]] * 2}, "is also given as inputs[0]"),
    ({**_good(), "outputs": [{"name": "nope"}]}, "outputs[0].name: received 'nope'"),
    ({**_good(), "parameters": {"engine": "tpu"}}, "parameters.engine: received 'tpu'"),
    (
        {**_good(), "parameters": {"binary_data_output": "yes"}},
        "parameters.binary_data_output: received 'yes'; allowed: true or false",
    ),
    ({**_good(), "id": 5}, "id: Input should be a valid string"),
    ({**_good(), "input": []}, "input: Extra inputs are not permitted"),
    ({"inputs": []}, "inputs: List should have at least 1 item"),
]


@pytest.mark.parametrize(("body", "message"), OIP_ERRORS)
def test_oip_requests_that_do_not_fit_are_400_naming_the_field(env, body, message):
    response = env["client"].post("/v2/models/seq/infer", json=body)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}
    assert message in response.json()["error"]


def test_oip_missing_input_batch_mismatch_nan_and_bad_json(env):
    client = env["client"]
    image = tensor("image", np.zeros((2, 6, 6, 4)), "FP32")
    missing = client.post("/v2/models/res/infer", json={"inputs": [image]})
    assert "inputs: missing ['extra']" in missing.json()["error"]
    extra = tensor("extra", np.zeros((3, 3)), "FP32")
    mismatch = client.post("/v2/models/res/infer", json={"inputs": [image, extra]})
    assert "batch size 3 differs from 2" in mismatch.json()["error"]

    with_nan = _good()
    with_nan["inputs"][0]["data"][5] = float("nan")
    body = json.dumps(with_nan)  # Python writes the non-standard token NaN
    nan = client.post(
        "/v2/models/seq/infer",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert nan.status_code == 400
    assert "must be finite; received nan" in nan.json()["error"]
    broken = client.post(
        "/v2/models/seq/infer",
        content=b'{"inputs": [',
        headers={"content-type": "application/json"},
    )
    assert broken.status_code == 400 and "JSON" in broken.json()["error"]


def test_id_echo_versions_and_ready(env):
    client = env["client"]
    with_id = client.post("/v2/models/seq/infer", json={**_good(), "id": "abc-42"})
    assert with_id.json()["id"] == "abc-42"
    without = client.post("/v2/models/seq/infer", json=_good()).json()
    assert "id" not in without
    assert (without["model_name"], without["model_version"]) == ("seq", "1")

    first = register(client, "ver", SEQ)
    changed = copy.deepcopy(SEQ)
    changed["layers"][-1]["units"] = 5
    assert (first["version"], register(client, "ver", changed)["version"]) == (1, 2)
    model = served_model(client, first["content_hash"])
    x = SAMPLES["FP32"][:1]
    latest = client.post("/v2/models/ver/infer", json=_good()).json()
    assert latest["model_version"] == "2"
    assert latest["outputs"][0]["shape"] == [1, 5]
    one = client.post("/v2/models/ver/versions/1/infer", json=_good()).json()
    assert (one["model_version"], one["outputs"][0]["shape"]) == ("1", [1, 4])
    ref = model.predict(x, verbose=0)
    assert_engine_close(output(one, one["outputs"][0]["name"]), ref, "packed")
    rows = client.post(
        "/v1/models/ver/versions/1:predict", json={"instances": x.tolist()}
    )
    assert_engine_close(
        np.asarray(rows.json()["predictions"], np.float32), ref, "packed"
    )
    assert np.asarray(
        client.post("/v1/models/ver:predict", json={"instances": x.tolist()}).json()[
            "predictions"
        ]
    ).shape == (1, 5)

    assert client.get("/v2/models/ver/ready").json() == {"name": "ver", "ready": True}
    assert client.get("/v2/models/ver/versions/1/ready").json() == {
        "name": "ver",
        "ready": True,
    }
    for path in (
        "/v2/models/nosuch/ready",
        "/v2/models/ver/versions/9/ready",
        "/v2/models/nosuch/infer",
        "/v2/models/ver/versions/9/infer",
        "/v1/models/nosuch:predict",
    ):
        method = client.get if path.endswith("ready") else client.post
        response = method(path, **({} if method == client.get else {"json": _good()}))
        assert response.status_code == 404, path
        assert "is not registered" in response.json()["error"]


def test_nonfinite_outputs_are_null_and_counted(env):
    client = env["client"]
    registered = register(client, "nan", NAN)
    model = served_model(client, registered["content_hash"])
    model.get_layer("diff").set_weights([np.array([[1.0], [-1.0]], np.float32)])
    x = np.array([[1000.0, 1000.0], [1.0, 0.0]], np.float32)
    diff, exp = model.predict(x, verbose=0)
    assert np.isnan(diff[0, 0]) and np.isinf(exp[0]).all()  # the oracle overflows

    response = client.post(
        "/v2/models/nan/infer", json={"inputs": [tensor("x", x, "FP32")]}
    )
    assert response.status_code == 200
    result = response.json()
    assert result["parameters"] == {"engine": "keras", "nonfinite": 3}
    assert response.headers["x-bnn-nonfinite"] == "3"
    by_name = {o["name"]: o for o in result["outputs"]}
    assert by_name["diff"]["data"][0] is None
    assert by_name["diff"]["data"][1] == pytest.approx(float(diff[1, 0]))
    assert by_name["diff"]["parameters"] == {"nonfinite": 1}
    assert by_name["exp"]["data"][:2] == [None, None]
    assert by_name["exp"]["data"][2:] == exp[1].tolist()
    assert by_name["exp"]["parameters"] == {"nonfinite": 2}

    rows = client.post("/v1/models/nan:predict", json={"instances": x.tolist()})
    assert rows.status_code == 200 and rows.headers["x-bnn-nonfinite"] == "3"
    assert rows.json()["predictions"][0] == {"diff": [None], "exp": [None, None]}

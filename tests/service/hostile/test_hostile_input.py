"""Lax-input attacks of the red-team report (issue 14, finding 8), each refused.

Every test replays one attack against ``POST /v2/models`` (and the dry runs
where they parse the same body) and checks the answer: a 422 whose message
names the JSON path of the offending field, and nothing registered. The
oracles are the documents Keras itself writes (``model.to_json()``), edited
by hand in one place, and the same documents unedited, which must still be
accepted (so a test cannot pass by refusing everything).
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import keras
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from bnncore.layers import QuantDense
from bnncore_service.config import Settings
from bnncore_service.jsonbody import JSONBodyError, check_duplicate_keys
from bnncore_service.main import create_app

MAX_KEYS = 2_000


@pytest.fixture(scope="module")
def client(tmp_path_factory: Any) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("hostile-input") / "data",
        max_definition_keys=MAX_KEYS,
        max_json_depth=16,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def sequential_json() -> dict[str, Any]:
    model = keras.Sequential(
        [
            keras.Input((6,)),
            QuantDense(4, kernel_quantizer="ste_sign", name="q"),
            keras.layers.Dense(2, name="d"),
        ],
        name="seq",
    )
    return json.loads(model.to_json())


def functional_json() -> dict[str, Any]:
    x = keras.Input((4, 4, 2), name="image")
    y = keras.layers.Conv2D(3, 3, padding="same", name="conv")(x)
    z = keras.layers.Concatenate(name="cat")([x, y])
    out = keras.layers.Flatten(name="flat")(z)
    return json.loads(keras.Model(x, out, name="fun").to_json())


SEQUENTIAL = sequential_json()
FUNCTIONAL = functional_json()


def edited(document: dict[str, Any], edit: Callable[[dict[str, Any]], Any]) -> Any:
    copied = copy.deepcopy(document)
    edit(copied)
    return copied


def refused(client: TestClient, name: str, body: Any, path: str) -> str:
    """Registers ``body`` under ``name``: 422 naming ``path``, nothing stored."""
    before = client.get("/v2/models").json()["total"]
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post(
        "/v2/models",
        content=b'{"name": "%s", "definition": %s}' % (name.encode(), raw),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    message = response.json()["error"]
    assert path in message, message
    assert client.get(f"/v2/models/{name}").status_code == 404
    assert client.get("/v2/models").json()["total"] == before
    return message


@pytest.mark.parametrize("document", [SEQUENTIAL, FUNCTIONAL], ids=["seq", "fun"])
def test_unedited_keras_documents_are_accepted(
    client: TestClient, document: dict[str, Any]
) -> None:
    # The control: build_config, tensor shapes and the empty compile_config
    # Keras writes are all checked and true, so the document registers.
    name = f"control_{document['class_name']}"
    response = client.post("/v2/models", json={"name": name, "definition": document})
    assert response.status_code == 201, response.text


def test_compile_config_naming_os_system_is_refused(client: TestClient) -> None:
    attack = {"module": "os", "class_name": "system", "config": {"command": "id"}}
    body = edited(SEQUENTIAL, lambda d: d.update(compile_config=attack))
    message = refused(client, "compile_os", body, "compile_config")
    assert "not accepted" in message


def test_compiled_model_training_configuration_is_refused(
    client: TestClient,
) -> None:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    document = json.loads(model.to_json())
    message = refused(client, "compiled", document, "compile_config")
    assert "'optimizer'" in message


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (
            lambda d: d["config"]["layers"][1]["build_config"].update(
                input_shape=[None, 7]
            ),
            "config.layers[1].build_config.input_shape",
        ),
        (
            lambda d: d["config"]["layers"][2]["build_config"].update(
                module="os", class_name="system"
            ),
            "config.layers[2].build_config",
        ),
        (
            lambda d: d["config"]["layers"][2].update(build_config=["os.system"]),
            "config.layers[2].build_config",
        ),
        (
            lambda d: d.update(build_config={"input_shape": [None, 5]}),
            "build_config.input_shape",
        ),
        (
            lambda d: d["config"].update(build_input_shape=[None, 6, 1]),
            "config.build_input_shape",
        ),
    ],
    ids=["layer-shape", "layer-extra-keys", "layer-not-object", "model", "seq-config"],
)
def test_build_config_that_is_not_the_models_shape_is_refused(
    client: TestClient, edit: Any, path: str
) -> None:
    refused(client, "build_cfg", edited(SEQUENTIAL, edit), path)


def test_keras_tensor_shape_that_is_not_the_models_is_refused(
    client: TestClient,
) -> None:
    def edit(d: dict[str, Any]) -> None:
        tensor = d["config"]["layers"][2]["inbound_nodes"][0]["args"][0][1]
        tensor["config"]["shape"] = [None, 4, 4, 30]

    path = "config.layers[2].inbound_nodes[0].args[0][1].config.shape"
    message = refused(client, "tensor_shape", edited(FUNCTIONAL, edit), path)
    assert "[None, 4, 4, 3]" in message  # the model's shape, from the estimate


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (
            lambda t: t.update(module="os"),
            "config.layers[2].inbound_nodes[0].args[0][0]",
        ),
        (
            lambda t: t["config"].update(registered_name="os>system"),
            "config.layers[2].inbound_nodes[0].args[0][0].config",
        ),
    ],
    ids=["tensor", "tensor-config"],
)
def test_keras_tensor_extra_keys_are_refused(
    client: TestClient, edit: Any, path: str
) -> None:
    body = edited(
        FUNCTIONAL,
        lambda d: edit(d["config"]["layers"][2]["inbound_nodes"][0]["args"][0][0]),
    )
    message = refused(client, "tensor_keys", body, path)
    assert "unexpected keys" in message


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: p.update(module_path="os.system"),
        lambda p: p["config"].update(exec="import os"),
    ],
    ids=["policy", "policy-config"],
)
def test_dtype_policy_extra_keys_are_refused(client: TestClient, edit: Any) -> None:
    body = edited(
        SEQUENTIAL, lambda d: edit(d["config"]["layers"][1]["config"]["dtype"])
    )
    refused(client, "policy", body, "config.layers[1].config.dtype")


@pytest.mark.parametrize(
    "module",
    ["bnncore.evil; import os", "bnncore.", "bnncore.layers.quantized.os", "bnncoreX"],
)
def test_module_prefix_trick_is_refused(client: TestClient, module: str) -> None:
    body = edited(SEQUENTIAL, lambda d: d["config"]["layers"][1].update(module=module))
    message = refused(client, "prefix", body, "config.layers[1].module")
    assert repr(module) in message


@pytest.mark.parametrize(
    ("layer", "path"),
    [
        ({"type": "Dense", "units": "4"}, "definition.layers[0].units"),
        ({"type": "Dense", "units": True}, "definition.layers[0].units"),
        ({"type": "Dense", "units": 4.0}, "definition.layers[0].units"),
        ({"type": "Rescaling", "scale": "1"}, "definition.layers[0].scale"),
        ({"type": "Rescaling", "scale": True}, "definition.layers[0].scale"),
        (
            {"type": "BatchNormalization", "momentum": "0.9"},
            "definition.layers[0].momentum",
        ),
        ({"type": "Reshape", "target_shape": ["6"]}, "definition.layers[0]"),
        ({"type": "ZeroPadding1D", "padding": "1"}, "definition.layers[0].padding"),
    ],
    ids=[
        "int-as-string",
        "int-as-bool",
        "int-as-float",
        "float-as-string",
        "float-as-bool",
        "momentum-as-string",
        "dim-as-string",
        "padding-as-string",
    ],
)
def test_string_number_is_not_coerced(
    client: TestClient, layer: dict[str, Any], path: str
) -> None:
    body = {"input_shape": [6], "layers": [layer]}
    message = refused(client, "coerced", body, path)
    if isinstance(next(iter(layer.values())), str):
        assert "received" in message


def test_an_integer_is_still_a_float(client: TestClient) -> None:
    # JSON has one number type: 1 for a float argument is not a coercion.
    body = {"input_shape": [6], "layers": [{"type": "Rescaling", "scale": 2}]}
    response = client.post("/v2/estimate", json=body)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b'{"input_shape": [6], "input_shape": [7], "layers": []}', "input_shape"),
        (
            b'{"input_shape": [6], "layers": [{"type": "Dense", "units": 4}, '
            b'{"type": "Dense", "units": 2, "units": 200000}]}',
            "definition.layers[1].units",
        ),
        (
            b'{"input_shape": [6], "layers": [{"type": "Dense", "units": 2, '
            b'"kernel_quantizer": {"type": "SteSign", "clip_value": 1, '
            b'"clip_value": "x"}}]}',
            "definition.layers[0].kernel_quantizer.clip_value",
        ),
    ],
    ids=["top", "layer", "nested"],
)
def test_duplicate_json_keys_are_refused(
    client: TestClient, raw: bytes, path: str
) -> None:
    message = refused(client, "dup", raw, path)
    assert "duplicate key" in message
    # The dry runs parse their bodies the same way (the body is the
    # definition, so paths start at "definition").
    for route in ("/v2/summary", "/v2/estimate"):
        response = client.post(
            route, content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, response.text
        assert "duplicate key" in response.json()["error"]
        assert path.removeprefix("definition.") in response.json()["error"]


def test_duplicate_name_key_cannot_smuggle_a_second_name(client: TestClient) -> None:
    definition = b'{"input_shape": [2], "layers": [{"type": "Dense", "units": 1}]}'
    raw = b'{"name": "shown", "name": "hidden", "definition": %s}' % definition
    response = client.post(
        "/v2/models", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"].startswith("name: duplicate key 'name'")
    for name in ("shown", "hidden"):
        assert client.get(f"/v2/models/{name}").status_code == 404


def test_more_keys_than_the_limit_are_refused_before_parsing(
    client: TestClient,
) -> None:
    extra = {f"k{i}": 0 for i in range(MAX_KEYS)}
    body = {"input_shape": [6], "layers": [{"type": "Dense", "units": 1, **extra}]}
    text = json.dumps(body)
    message = refused(client, "keys", text.encode(), "body")
    assert message == (
        f"body: more than {MAX_KEYS:,} object keys (BNN_MAX_DEFINITION_KEYS; "
        "counted by the ':' characters, one for each key)"
    )
    # One under the limit is parsed (and refused for its unknown fields).
    extra = {f"k{i}": 0 for i in range(MAX_KEYS - 8)}
    body = {"input_shape": [6], "layers": [{"type": "Dense", "units": 1, **extra}]}
    message = refused(client, "keys", body, "definition.layers[0]")
    assert "unknown fields" in message


def test_many_unknown_fields_make_one_error(client: TestClient) -> None:
    extra = {f"k{i}": 0 for i in range(MAX_KEYS - 50)}
    body = {"input_shape": [6], "layers": [{"type": "Dense", "units": 1, **extra}]}
    message = refused(client, "unknown", body, "definition.layers[0]")
    assert f"{MAX_KEYS - 50:,} unknown fields ('k0', 'k1'" in message
    assert "allowed: type, name, inputs" in message


def test_deep_nesting_is_refused(client: TestClient) -> None:
    deep: Any = 1
    for _ in range(20):
        deep = [deep]
    body = {"class_name": "Sequential", "config": {"name": "m", "layers": deep}}
    refused(client, "deep", body, "definition.config.layers[0][0]")
    # Deeper than the parser's recursion: refused the same, never a 500.
    raw = b"[" * 100_000 + b"]" * 100_000
    message = refused(client, "deeper", raw, "body")
    assert "BNN_MAX_JSON_DEPTH" in message


@pytest.fixture(scope="module")
def served(client: TestClient) -> str:
    body = {
        "name": "oip",
        "definition": {"input_shape": [3], "layers": [{"type": "Dense", "units": 2}]},
    }
    assert client.post("/v2/models", json=body).status_code == 201
    return "/v2/models/oip/infer"


@pytest.mark.parametrize(
    "shape",
    [[1.0, 3], ["1", 3], [True, 3], [1, 3.0]],
    ids=["float", "string", "bool", "float-last"],
)
def test_oip_shape_float_is_refused(
    client: TestClient, served: str, shape: list[Any]
) -> None:
    tensor = {"name": "input", "datatype": "FP32", "data": [1.0, 2.0, 3.0]}
    ok = client.post(served, json={"inputs": [{**tensor, "shape": [1, 3]}]})
    assert ok.status_code == 200, ok.text  # the control
    response = client.post(served, json={"inputs": [{**tensor, "shape": shape}]})
    # The inference routes answer body errors with 400 (Open Inference Protocol).
    assert response.status_code == 400, response.text
    index = next(i for i, d in enumerate(shape) if type(d) is not int)
    assert f"inputs[0].shape[{index}]" in response.json()["error"]


def test_oip_duplicate_json_keys_are_refused(client: TestClient, served: str) -> None:
    # pydantic's parser keeps the last "shape"; a filter reading the first
    # would see [1, 3]. The body is refused instead, naming the key.
    tensor = '"name":"input","datatype":"FP32","data":[1,2,3]'
    ok = f'{{"inputs":[{{{tensor},"shape":[1,3]}}]}}'
    twice = f'{{"inputs":[{{{tensor},"shape":[3,1],"shape":[1,3]}}]}}'
    headers = {"content-type": "application/json"}
    assert client.post(served, content=ok, headers=headers).status_code == 200
    response = client.post(served, content=twice, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error.startswith("inputs[0].shape: duplicate key 'shape'"), error


def test_tf_serving_duplicate_json_keys_are_refused(
    client: TestClient, served: str
) -> None:
    predict = served.replace("/v2/models/oip/infer", "/v1/models/oip:predict")
    headers = {"content-type": "application/json"}
    ok = client.post(predict, content='{"instances":[[1,2,3]]}', headers=headers)
    assert ok.status_code == 200, ok.text
    twice = '{"instances":[[1,2,3]],"instances":[[4,5,6]]}'
    response = client.post(predict, content=twice, headers=headers)
    assert response.status_code == 400, response.text
    assert "duplicate key 'instances'" in response.json()["error"]


# check_duplicate_keys is the check the inference routes can run after
# pydantic's JSON parser (which keeps the last of duplicate keys). Its oracle:
# json.loads with a hook that sees every object's pairs.
KEYS = st.sampled_from(["a", "b", "a\\", 'q"', "{", "}", ":", "é", "ü"])
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
VALUES = st.recursive(
    SCALARS | KEYS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(st.tuples(KEYS, inner), max_size=4).map(lambda p: ("object", p))
    ),
    max_leaves=20,
)


def render(value: Any, ascii_keys: bool) -> str:
    """JSON text of nested values, objects as pair lists (duplicates kept);
    keys are written alternately escaped (``\\u00e9``) and as they are, so
    that the same key appears in both spellings."""
    flip = itertools.count(int(ascii_keys))

    def text(node: Any) -> str:
        if isinstance(node, tuple):
            pairs = (
                f"{json.dumps(k, ensure_ascii=next(flip) % 2 == 1)} :{text(v)}"
                for k, v in node[1]
            )
            return "{" + ", ".join(pairs) + "}"
        if isinstance(node, list):
            return "[" + ",".join(text(v) for v in node) + "]"
        return json.dumps(node)

    return text(value)


def has_duplicates(text: str) -> bool:
    found = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found.append(len({k for k, _ in pairs}) != len(pairs))
        return dict(pairs)

    json.loads(text, object_pairs_hook=hook)
    return any(found)


@settings(max_examples=300, deadline=None)
@given(value=VALUES, ascii_keys=st.booleans())
def test_duplicate_keys_found_without_parsing_match_the_parser(
    value: Any, ascii_keys: bool
) -> None:
    text = render(value, ascii_keys)
    try:
        check_duplicate_keys(text.encode())
        refused = False
    except JSONBodyError as error:
        refused = True
        assert "duplicate key" in str(error)
    assert refused == has_duplicates(text)


def test_oip_body_that_is_not_json_says_where_not_what(
    client: TestClient, served: str
) -> None:
    secret = "s3cr3t-token-in-a-broken-body"
    text = (
        '{"inputs": [\n  {"name": "input", '
        + f'"note": "{secret}", '
        + "shape: [1, 3]}]}"
    )
    response = client.post(
        served, content=text, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error.startswith("body: not valid JSON: ") and "line 2 column" in error, (
        error
    )
    assert secret not in error  # the body is not echoed back

"""The fast JSON path of OIP requests (``codec.parse_oip``): for every body,
the request it gives decodes exactly as pydantic's validation of the same body
does (same arrays bit for bit, or the same refusal word for word); it is taken
for ordinary tensor bodies and declines (``None``) where orjson and pydantic
could read a body differently.

The oracle is the route's pydantic path (``model_validate_json`` and the
duplicate-key check), which the existing inference tests pin down.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

import bnncore_service.inference.handlers as route
from bnncore_service.inference import oip
from bnncore_service.inference.oip import (
    OipBody,
    OipInput,
    OipOutput,
    OipRequest,
    decode_oip,
    parse_oip,
)
from bnncore_service.inference.schemas import (
    InferenceRequest,
    RequestInput,
    RequestOutput,
)
from bnncore_service.inference.tensors import InferenceError, Limits
from bnncore_service.routes.inference import _parse

INPUTS = [{"name": "x", "shape": [-1, 2, 3]}, {"name": "y:z", "shape": [-1, 2]}]
OUTPUTS = [{"name": "out"}, {"name": "aux"}]
LIMITS = Limits(max_batch=64, max_tensor_elements=100_000)


def _outcome(raw: bytes, request: OipBody | None) -> tuple[Any, ...]:
    """What decoding ``raw`` gives: the error, or the decoded request."""
    try:
        if request is None:
            request = _parse(raw, InferenceRequest)
        decoded = decode_oip(request, "m", INPUTS, OUTPUTS, LIMITS)
    except InferenceError as error:
        return ("refused", error.status, str(error))
    arrays = [(a.dtype.str, a.shape, a.tobytes()) for a in decoded.arrays]
    return ("ok", request.id, arrays, decoded.rows, decoded.outputs,
            decoded.engine, decoded.binary)  # fmt: skip


def _both(raw: bytes) -> tuple[OipRequest | None, tuple[Any, ...]]:
    """The fast request (or None) and the outcome of the route's fallback
    rule ``parse_oip(raw) or pydantic``, checked against pydantic alone."""
    fast = parse_oip(raw)
    got = _outcome(raw, fast)
    assert got == _outcome(raw, None)
    return fast, got


def _body(**changes: Any) -> dict[str, Any]:
    rng = np.random.default_rng(len(changes))
    body: dict[str, Any] = {
        "id": "req-1",
        "inputs": [
            {"name": "x", "shape": [2, 2, 3], "datatype": "FP32",
             "data": rng.normal(size=12).astype(np.float32).tolist()},
            {"name": "y:z", "shape": [2, 2], "datatype": "INT16",
             "data": [[1, -2], [3, 400]]},
        ],
        "outputs": [{"name": "aux"}, {"name": "out", "parameters": {"k": "a:b"}}],
        "parameters": {"engine": "keras", "note": {"deep": [1, "x:y"]}},
    }  # fmt: skip
    body.update(changes)
    return body


def _raw(body: Any) -> bytes:
    return json.dumps(body).encode()


TAKEN = {
    "full": _body(),
    "no optional fields": {"inputs": _body()["inputs"]},
    "nulls": _body(id=None, parameters=None, outputs=None),
    "nested data": _body(
        inputs=[
            {
                "name": "x",
                "shape": [1, 2, 3],
                "datatype": "FP64",
                "data": [[[0.5, -1e-300, 3], [4, 5.25, 6e10]]],
            },
            {"name": "y:z", "shape": [1, 2], "datatype": "BOOL", "data": [True, False]},
        ]
    ),
    "64-bit integers": _body(
        inputs=[
            {
                "name": "x",
                "shape": [1, 2, 3],
                "datatype": "UINT64",
                "data": [0, 2**63 - 1, 1, 2, 3, 4],
            },
            {
                "name": "y:z",
                "shape": [1, 2],
                "datatype": "INT64",
                "data": [-(2**63), 2**63 - 1],
            },
        ]
    ),
    "binary outputs": _body(parameters={"binary_data_output": True}),
}


@pytest.mark.parametrize("body", TAKEN.values(), ids=TAKEN.keys())
def test_ordinary_bodies_take_the_fast_path_and_decode_as_pydantic(body: Any) -> None:
    fast, outcome = _both(_raw(body))
    assert fast is not None
    assert outcome[0] == "ok"


PLAIN_AND_MODEL = [
    (OipRequest, InferenceRequest, oip.REQUEST_KEYS),
    (OipInput, RequestInput, oip.INPUT_KEYS),
    (OipOutput, RequestOutput, oip.OUTPUT_KEYS),
]


@pytest.mark.parametrize(("plain", "model", "keys"), PLAIN_AND_MODEL)
def test_the_fast_requests_fields_are_the_request_models(
    plain: type, model: type[Any], keys: frozenset[str]
) -> None:
    """The plain objects (no pydantic) have exactly the request models'
    fields, required where the model requires them, else with its default;
    the keys the fast path accepts are those fields."""
    fields = {field.name: field for field in dataclasses.fields(plain)}
    assert fields.keys() == model.model_fields.keys() == keys
    for name, info in model.model_fields.items():
        if info.is_required():
            assert fields[name].default is dataclasses.MISSING, name
        else:
            assert fields[name].default == info.default, name


@pytest.mark.parametrize("body", [_body(), {"inputs": _body()["inputs"]}])
def test_the_fast_request_holds_what_pydantic_reads(body: dict[str, Any]) -> None:
    raw = _raw(body)
    fast = parse_oip(raw)
    slow = InferenceRequest.model_validate_json(raw)
    assert fast is not None
    assert (fast.id, fast.parameters) == (slow.id, slow.parameters)
    assert (fast.outputs is None) == (slow.outputs is None)
    for got_out, want_out in zip(fast.outputs or [], slow.outputs or [], strict=True):
        assert dataclasses.asdict(got_out) == want_out.model_dump()
    for got, want in zip(fast.inputs, slow.inputs, strict=True):
        assert (got.name, got.shape, got.datatype, got.parameters) == (
            want.name,
            want.shape,
            want.datatype,
            want.parameters,
        )
        assert isinstance(got.data, np.ndarray)  # converted once
        np.testing.assert_array_equal(got.data, np.asarray(want.data))


DECLINED = {
    # a repeated key, anywhere, also when a ':' in a string would make up
    # for the key lost
    "duplicate top key": b'{"inputs": [], "inputs": INPUTS}',
    "duplicate input key": b'{"inputs": [{"name": "y:z", "name": "y:z", '
    b'"shape": [1, 2], "datatype": "FP32", "data": [1, 2]}, X]}',
    "duplicate parameter, colon compensates": b'{"id": "a:b", "inputs": INPUTS, '
    b'"parameters": {"engine": "auto", "engine": "keras"}}',
    "escape in a string": b'{"id": "\\u0061", "inputs": INPUTS}',
    "integer beyond 64 bits": b'{"inputs": INPUTS, "parameters": '
    b'{"n": 18446744073709551616}}',
    "NaN token": b'{"inputs": INPUTS, "parameters": {"n": NaN}}',
    "unknown key": b'{"input": [], "inputs": INPUTS}',
    "byte order mark": b'\xef\xbb\xbf{"inputs": INPUTS}',
}


@pytest.mark.parametrize("template", DECLINED.values(), ids=DECLINED.keys())
def test_bodies_orjson_could_read_differently_take_pydantics_path(
    template: bytes,
) -> None:
    inputs = _body()["inputs"]
    raw = template.replace(b"INPUTS", _raw(inputs)).replace(b"X", _raw(inputs[0]))
    fast, _ = _both(raw)
    assert fast is None


BIG = {
    "int beyond 64 bits in data": 2**64,
    "uint64 beyond int64 in data": 2**64 - 1,
    "int below int64 in data": -(2**63) - 1,
    "float at 2**63 in data": 2.0**63,
}


@pytest.mark.parametrize("value", BIG.values(), ids=BIG.keys())
@pytest.mark.parametrize("datatype", ["FP32", "INT64", "UINT64"])
def test_large_numbers_in_data_are_refused_or_accepted_as_before(
    value: Any, datatype: str
) -> None:
    body = _body()
    body["inputs"][0]["datatype"] = datatype
    body["inputs"][0]["data"] = [value, *range(11)]
    fast, _ = _both(_raw(body))
    assert fast is None


def test_refusals_name_the_same_field_either_way() -> None:
    cases = [
        _body(inputs=[{**_body()["inputs"][0], "data": [1, "two", 3]}]),
        _body(inputs=[{**_body()["inputs"][0], "data": [[1, 2], [3]]}]),
        _body(inputs=[{**_body()["inputs"][0], "datatype": "INT8"}]),
        _body(inputs=[{**_body()["inputs"][0], "shape": [2, 2, 3.0]}]),
        _body(inputs=[{**_body()["inputs"][0], "shape": [2, 2, True]}]),
        _body(inputs=[{**_body()["inputs"][0], "name": "n" * 257}]),
        _body(inputs=[]),
        _body(id=7),
        _body(outputs=[{"name": "out", "extra": 1}]),
        _body(parameters=["engine"]),
        [1, 2],
    ]
    for body in cases:
        _, outcome = _both(_raw(body))
        assert outcome[0] == "refused", body


def _mutations(rng: np.random.Generator, body: Any) -> Any:
    """A random change of one value somewhere in ``body``."""
    replacements = [None, True, 0, -1, 2**63, 1.5, 1e300, "", "a:b", [], {}, [1, [2]],
                    {"k": 1}, "FP16", "BYTES", [2, 2, 3], 70000, -1e-9]  # fmt: skip
    node = body
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return body
        key = keys[rng.integers(len(keys))]
        child = node[key]
        if isinstance(child, dict | list) and child and rng.random() < 0.7:
            node = child
            continue
        node[key] = replacements[rng.integers(len(replacements))]
        return body


def test_random_changes_decode_the_same_either_way() -> None:
    rng = np.random.default_rng(19)
    taken = 0
    for _ in range(400):
        body = _mutations(rng, json.loads(_raw(_body())))
        fast, _ = _both(_raw(body))
        taken += fast is not None
    assert taken > 100  # the fast path is exercised, not only the fallback


def test_the_route_answers_through_the_fast_path_as_through_pydantic(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    definition = {"input_shape": [3], "layers": [{"type": "Dense", "units": 2}]}
    created = client.post("/v2/models", json={"name": "tiny", "definition": definition})
    assert created.status_code == 201, created.text
    name = client.get("/v2/models/tiny").json()["inputs"][0]["name"]
    calls: list[bool] = []

    def spy(raw: bytes) -> InferenceRequest | None:
        found = parse_oip(raw)
        calls.append(found is not None)
        return found

    monkeypatch.setattr(route, "parse_oip", spy)
    tensor = {"name": name, "shape": [2, 3], "datatype": "FP32",
              "data": [0.5, -1.25, 3.0, 7.0, 0.0, -2.5]}  # fmt: skip
    fast = client.post("/v2/models/tiny/infer", json={"id": "a", "inputs": [tensor]})
    # An escape in the id ("a" as \u0061) sends the same request down pydantic's path.
    raw = json.dumps({"id": "a", "inputs": [tensor]}).replace('"a"', '"\\u0061"')
    slow = client.post(
        "/v2/models/tiny/infer",
        content=raw,
        headers={"Content-Type": "application/json"},
    )
    assert calls == [True, False]
    assert fast.status_code == slow.status_code == 200, (fast.text, slow.text)
    assert fast.json() == slow.json()
    refused = client.post(
        "/v2/models/tiny/infer", json={"inputs": [{**tensor, "shape": [2, 4]}]}
    )
    assert calls[-1] is True
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("inputs[0].shape: received [2, 4]")

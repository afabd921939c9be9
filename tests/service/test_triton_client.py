"""``tritonclient[http]`` with its defaults against a real ``python -m bnncore_service``
process: the binary tensor data extension (inputs and outputs, async, several
outputs), and every extension the server metadata lists (model repository,
configuration, statistics).

Oracles: a float graph model whose weights the test uploads, computed with
NumPy; a BNN whose binary-data answers must equal its JSON answers bit for bit
(same engine, same rows); counts worked out from the requests sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import safetensors.numpy
from test_inference_common import SEQ

tritonclient_http = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

PAIR: dict[str, Any] = {
    "name": "pair",
    "layers": [
        {"type": "Input", "name": "a", "shape": [4]},
        {"type": "Input", "name": "b", "shape": [3]},
        {"type": "Dense", "name": "da", "inputs": ["a"], "units": 3},
        {"type": "Dense", "name": "db", "inputs": ["b"], "units": 3},
        {"type": "Add", "name": "sum", "inputs": ["da", "db"]},
    ],
    "outputs": ["sum", "da"],
}
"""Two inputs, two outputs: sum = (a Wa + ba) + (b Wb + bb), da = a Wa + ba."""

RNG = np.random.default_rng(16)
WEIGHTS = {
    "da/kernel": RNG.normal(size=(4, 3)).astype(np.float32),
    "da/bias": RNG.normal(size=3).astype(np.float32),
    "db/kernel": RNG.normal(size=(3, 3)).astype(np.float32),
    "db/bias": RNG.normal(size=3).astype(np.float32),
}


def _pair_reference(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    da = a64 @ WEIGHTS["da/kernel"] + WEIGHTS["da/bias"]
    db = b64 @ WEIGHTS["db/kernel"] + WEIGHTS["db/bias"]
    return {"da": da, "sum": da + db}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, start_service) -> Iterator[str]:
    """A service process with ``pair`` (uploaded weights) and ``seq``
    registered; yields its ``host:port``."""
    running = start_service(tmp_path_factory.mktemp("triton") / "data")
    base = running.base
    try:
        for name, definition in (("pair", PAIR), ("seq", SEQ)):
            reply = httpx.post(
                f"{base}/v2/models",
                json={"name": name, "definition": definition},
                timeout=120,
            )
            assert reply.status_code == 201, reply.text
        reply = httpx.put(
            f"{base}/v2/models/pair/versions/1/weights",
            content=safetensors.numpy.save(WEIGHTS),
            timeout=60,
        )
        assert reply.status_code == 201, reply.text
        yield f"127.0.0.1:{running.port}"
    finally:
        running.stop()


@pytest.fixture
def client(server: str) -> Iterator[Any]:
    with tritonclient_http.InferenceServerClient(server, network_timeout=120) as c:
        yield c


def _input(name: str, array: np.ndarray, datatype: str, binary: bool = True) -> Any:
    tensor = tritonclient_http.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def _pair_inputs(
    rows: int, binary: bool = True
) -> tuple[list[Any], np.ndarray, np.ndarray]:
    a = RNG.normal(size=(rows, 4)).astype(np.float32)
    b = RNG.normal(size=(rows, 3)).astype(np.float32)
    return [_input("a", a, "FP32", binary), _input("b", b, "FP32", binary)], a, b


def _binary_sizes(result: Any) -> dict[str, int | None]:
    return {
        o["name"]: (o.get("parameters") or {}).get("binary_data_size")
        for o in result.get_response()["outputs"]
    }


def test_infer_with_default_settings_sends_and_receives_binary(client):
    inputs, a, b = _pair_inputs(5)
    outputs = [
        tritonclient_http.InferRequestedOutput("da"),
        tritonclient_http.InferRequestedOutput("sum"),
    ]
    result = client.infer("pair", inputs, outputs=outputs, request_id="7")
    expected = _pair_reference(a, b)
    # Binary on both sides: the inputs' parameters and each output's size.
    assert _binary_sizes(result) == {"da": 5 * 3 * 4, "sum": 5 * 3 * 4}
    assert [o["name"] for o in result.get_response()["outputs"]] == ["da", "sum"]
    assert result.get_response()["id"] == "7"
    for name in ("da", "sum"):
        got = result.as_numpy(name)
        assert got.dtype == np.float32 and got.shape == (5, 3)
        np.testing.assert_allclose(got, expected[name], rtol=1e-5, atol=1e-5)


def test_no_requested_outputs_returns_all_in_binary(client):
    inputs, a, b = _pair_inputs(2)
    result = client.infer("pair", inputs)  # tritonclient sets binary_data_output
    assert _binary_sizes(result) == {"sum": 2 * 3 * 4, "da": 2 * 3 * 4}
    expected = _pair_reference(a, b)
    for name in ("sum", "da"):
        np.testing.assert_allclose(
            result.as_numpy(name), expected[name], rtol=1e-5, atol=1e-5
        )


def test_async_infer(client):
    pending = []
    for rows in (1, 3, 4):
        inputs, a, b = _pair_inputs(rows)
        pending.append((client.async_infer("pair", inputs), a, b))
    for request, a, b in pending:
        result = request.get_result(timeout=120)
        np.testing.assert_allclose(
            result.as_numpy("sum"), _pair_reference(a, b)["sum"], rtol=1e-5, atol=1e-5
        )


def test_asyncio_client(server):
    from tritonclient.http import aio

    inputs, a, b = _pair_inputs(3)

    async def run() -> Any:
        async with aio.InferenceServerClient(server) as client:
            assert await client.is_model_ready("pair")
            return await client.infer("pair", inputs)

    result = asyncio.run(run())
    assert _binary_sizes(result) == {"sum": 3 * 3 * 4, "da": 3 * 3 * 4}
    np.testing.assert_allclose(
        result.as_numpy("sum"), _pair_reference(a, b)["sum"], rtol=1e-5, atol=1e-5
    )


def test_binary_and_json_outputs_mixed_in_one_answer(client):
    inputs, a, b = _pair_inputs(3, binary=False)
    outputs = [
        tritonclient_http.InferRequestedOutput("sum", binary_data=False),
        tritonclient_http.InferRequestedOutput("da", binary_data=True),
    ]
    result = client.infer("pair", inputs, outputs=outputs)
    assert _binary_sizes(result) == {"sum": None, "da": 3 * 3 * 4}
    expected = _pair_reference(a, b)
    for name in ("sum", "da"):
        np.testing.assert_allclose(
            result.as_numpy(name).astype(np.float64),
            expected[name],
            rtol=1e-5,
            atol=1e-5,
        )


SHAPE = (3, 6, 6, 2)
SAMPLES = {
    "FP32": RNG.normal(size=SHAPE).astype(np.float32),
    "FP64": RNG.normal(size=SHAPE),
    "FP16": RNG.normal(size=SHAPE).astype(np.float16),
    "INT8": RNG.integers(-128, 128, SHAPE).astype(np.int8),
    "INT64": RNG.integers(-(2**40), 2**40, SHAPE),
    "UINT8": RNG.integers(0, 256, SHAPE).astype(np.uint8),
    "UINT32": RNG.integers(0, 7, SHAPE).astype(np.uint32),
    "BOOL": RNG.random(SHAPE) < 0.5,
}


@pytest.mark.parametrize("engine", ["packed", "keras"])
def test_binary_equals_json_for_every_datatype(client, engine):
    output = [tritonclient_http.InferRequestedOutput("quant_dense", binary_data=True)]
    as_json = [tritonclient_http.InferRequestedOutput("quant_dense", binary_data=False)]
    parameters = {"engine": engine}
    for datatype, x in SAMPLES.items():
        binary = client.infer(
            "seq",
            [_input("input", x, datatype, True)],
            outputs=output,
            parameters=parameters,
        )
        json_only = client.infer(
            "seq",
            [_input("input", x, datatype, False)],
            outputs=as_json,
            parameters=parameters,
        )
        assert binary.get_response()["parameters"]["engine"] == engine
        assert _binary_sizes(json_only) == {"quant_dense": None}
        got, ref = binary.as_numpy("quant_dense"), json_only.as_numpy("quant_dense")
        assert got.shape == (3, 4), datatype
        np.testing.assert_array_equal(got, ref.astype(np.float32), err_msg=datatype)


def _raw(server: str, header: int | str | None, body: bytes) -> httpx.Response:
    headers = {"Content-Type": "application/octet-stream"}
    if header is not None:
        headers["Inference-Header-Content-Length"] = str(header)
    return httpx.post(
        f"http://{server}/v2/models/pair/infer", content=body, headers=headers
    )


def _request(sizes: tuple[int, int] = (16, 12)) -> bytes:
    return (
        '{"inputs": ['
        f'{{"name": "a", "shape": [1, 4], "datatype": "FP32", '
        f'"parameters": {{"binary_data_size": {sizes[0]}}}}}, '
        f'{{"name": "b", "shape": [1, 3], "datatype": "FP32", '
        f'"parameters": {{"binary_data_size": {sizes[1]}}}}}]}}'
    ).encode()


BINARY_ERRORS = {
    "header beyond the body": (
        lambda j, d: (len(j) + len(d) + 1, j + d),
        f"Inference-Header-Content-Length: received {len(_request()) + 29}, beyond "
        f"the body's {len(_request()) + 28} bytes",
    ),
    "header not a number": (
        lambda j, d: ("twelve", j + d),
        "Inference-Header-Content-Length: received 'twelve'",
    ),
    "fewer bytes than declared": (
        lambda j, d: (len(j), j + d[:-4]),
        "24 bytes follow the JSON header",
    ),
    "more bytes than declared": (
        lambda j, d: (len(j), j + d + b"\0\0\0\0"),
        "add up to 28",
    ),
    "size not shape × dtype": (
        lambda j, d: (len(_request((12, 12))), _request((12, 12)) + d[4:]),
        "inputs[0].parameters.binary_data_size: received 12 bytes; shape [1, 4] of "
        "FP32 (4 bytes each) needs 16",
    ),
    "binary size without the header": (
        lambda j, d: (None, j),
        "the request has no Inference-Header-Content-Length header",
    ),
}


@pytest.mark.parametrize("case", BINARY_ERRORS.values(), ids=BINARY_ERRORS.keys())
def test_malformed_binary_requests_are_400_naming_the_field(server, case):
    build, message = case
    data = np.arange(7, dtype="<f4").tobytes()
    header, body = build(_request(), data)
    reply = _raw(server, header, body)
    assert reply.status_code == 400, reply.text
    assert message in reply.json()["error"]


def test_a_bytes_tensor_in_binary_is_refused_as_in_json(server):
    body = (
        b'{"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", '
        b'"parameters": {"binary_data_size": 7}}]}'
    )
    reply = httpx.post(
        f"http://{server}/v2/models/seq/infer",
        content=body + b"\3\0\0\0abc",
        headers={"Inference-Header-Content-Length": str(len(body))},
    )
    assert reply.status_code == 400
    assert "BYTES tensors are not supported" in reply.json()["error"]


def test_server_metadata_lists_exactly_the_tested_extensions(client):
    assert sorted(client.get_server_metadata()["extensions"]) == [
        "binary_tensor_data",
        "model_configuration",
        "model_repository",
        "statistics",
    ]


def _index(client: Any) -> dict[tuple[str, str], str]:
    return {
        (e["name"], e["version"]): e["state"]
        for e in client.get_model_repository_index()
    }


def test_repository_index_load_and_unload(client, server):
    client.unload_model("seq")
    client.unload_model("pair")
    assert _index(client) == {("pair", "1"): "UNAVAILABLE", ("seq", "1"): "UNAVAILABLE"}
    ready_only = httpx.post(
        f"http://{server}/v2/repository/index", json={"ready": True}
    )
    assert ready_only.json() == []
    client.load_model("seq")
    assert _index(client) == {("pair", "1"): "UNAVAILABLE", ("seq", "1"): "READY"}
    assert client.is_model_ready("seq")
    client.unload_model("seq")
    assert _index(client)[("seq", "1")] == "UNAVAILABLE"
    with pytest.raises(InferenceServerException, match="'nope' is not registered"):
        client.load_model("nope")
    with pytest.raises(InferenceServerException, match=r"parameters\.config"):
        client.load_model("seq", config='{"backend": "python"}')


def test_model_config_in_triton_shape(client):
    config = client.get_model_config("pair")
    assert config["name"] == "pair"
    assert config["platform"] == "bnncore"
    assert 1 <= config["max_batch_size"] <= 256  # BNN_MAX_BATCH default
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("a", "TYPE_FP32", [4]),
        ("b", "TYPE_FP32", [3]),
    ]
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["output"]] == [
        ("sum", "TYPE_FP32", [3]),
        ("da", "TYPE_FP32", [3]),
    ]
    seq = client.get_model_config("seq", model_version="1")
    assert [t["dims"] for t in seq["input"]] == [[6, 6, 2]]
    assert [t["dims"] for t in seq["output"]] == [[4]]


def test_statistics_count_requests_rows_and_failures(client, server):
    before = client.get_inference_statistics("pair", "1")["model_stats"][0]
    rows = [2, 1, 5]
    for n in rows:
        client.infer("pair", _pair_inputs(n)[0])
    bad = _raw(
        server,
        None,
        b'{"inputs": [{"name": "a", "shape": [1, 4], '
        b'"datatype": "FP32", "data": [1, 2, 3]}]}',
    )
    assert bad.status_code == 400
    after = client.get_inference_statistics("pair", "1")["model_stats"][0]
    assert (after["name"], after["version"]) == ("pair", "1")
    assert after["inference_count"] - before["inference_count"] == sum(rows)
    assert after["execution_count"] - before["execution_count"] == len(rows)
    stats, old = after["inference_stats"], before["inference_stats"]
    for kind in (
        "success",
        "queue",
        "compute_input",
        "compute_infer",
        "compute_output",
    ):
        assert stats[kind]["count"] - old[kind]["count"] == len(rows), kind
        assert stats[kind]["ns"] > old[kind]["ns"], kind
    assert stats["fail"]["count"] - old["fail"]["count"] == 1
    # A request's parts take no longer than the whole of it.
    parts = sum(
        stats[k]["ns"] - old[k]["ns"]
        for k in ("queue", "compute_input", "compute_infer", "compute_output")
    )
    assert parts <= stats["success"]["ns"] - old["success"]["ns"]
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in after["batch_stats"]}
    assert all(sizes.get(n, 0) >= 1 for n in rows)
    everything = client.get_inference_statistics()["model_stats"]
    assert {(s["name"], s["version"]) for s in everything} == {
        ("pair", "1"),
        ("seq", "1"),
    }
    by_model = client.get_inference_statistics("pair")["model_stats"]
    assert [s["inference_count"] for s in by_model] == [after["inference_count"]]
    with pytest.raises(InferenceServerException, match="version 9 is not registered"):
        client.get_inference_statistics("pair", "9")

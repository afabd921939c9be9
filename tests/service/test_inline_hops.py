"""Thread hops of an inference request (issue 19): cached registry lookups are
answered on the event loop, small bodies are decoded and small answers encoded
there; the database, large bodies and large answers still go to a worker
thread. The answers are the same either way (NumPy's relu as the oracle)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from bnncore_service.config import Settings
from bnncore_service.inference import handlers as route
from bnncore_service.inference import serving
from bnncore_service.inference.binary import HEADER
from bnncore_service.inference.inline import (
    INLINE_BODY_BYTES,
    INLINE_OUTPUT_VALUES,
    INLINE_TFS_BODY_BYTES,
)
from bnncore_service.main import create_app
from bnncore_service.registry_view import RegistryView
from bnncore_service.store import Store

warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402

SMALL = 16
BIG = INLINE_OUTPUT_VALUES + 808  # an answer over the inline bound


def _relu_model(size: int) -> dict[str, Any]:
    return {
        "name": f"relu{size}",
        "input_shape": [size],
        "layers": [{"type": "Activation", "activation": "relu"}],
    }


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


IO = ([{"name": "x", "shape": [-1, 4]}], [{"name": "y", "shape": [-1, 2]}])


def _register(store: Store, name: str, digest: str) -> Any:
    return store.register(name, digest, {"d": digest}, "Sequential", 10, 40, *IO)


def test_the_view_answers_from_memory_only_what_get_would_not_read(
    tmp_path: Path,
) -> None:
    store = Store(Settings(data_dir=tmp_path / "data")).open()
    clock = _Clock()
    view = RegistryView(store, poll_s=1.0, clock=clock)
    try:
        _register(store, "m", "a" * 64)
        assert view.cached_get("m") == (False, None)  # never read
        record = view.get("m")
        assert record is not None and record.version == 1
        assert view.cached_get("m") == (True, record)
        assert view.cached_weights("m", 1) == (False, None)
        assert view.weights("m", 1) is None
        assert view.cached_weights("m", 1) == (True, None)  # "no weights" kept
        assert view.get("nope") is None
        assert view.cached_get("nope") == (True, None)
        polls = view.polls

        clock.now += 0.99
        assert view.cached_get("m") == (True, record)
        clock.now += 0.01  # the generation is due: only get() may answer
        assert view.cached_get("m") == (False, None)
        assert view.get("m") == record and view.polls == polls + 1
        assert view.cached_get("m") == (True, record)

        _register(store, "m", "b" * 64)  # a write through this store
        assert view.cached_get("m") == (False, None)
        again = view.get("m")
        assert again is not None and again.version == 2
        assert view.cached_get("m") == (True, again)

        view.invalidate()
        assert view.cached_get("m") == (False, None)
    finally:
        store.close()


def test_with_no_poll_interval_nothing_is_answered_from_memory(
    tmp_path: Path,
) -> None:
    store = Store(Settings(data_dir=tmp_path / "data")).open()
    try:
        _register(store, "m", "a" * 64)
        view = RegistryView(store, poll_s=0.0, clock=_Clock())
        assert view.get("m") is not None
        assert view.cached_get("m") == (False, None)
    finally:
        store.close()


class _Hops:
    """Counts ``run_in_threadpool`` calls of a module (they still run)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: Any) -> None:
        self.count = 0
        real = module.run_in_threadpool

        async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await real(fn, *args, **kwargs)

        monkeypatch.setattr(module, "run_in_threadpool", counted)


def _client(tmp_path: Path, poll_s: float) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", registry_poll_s=poll_s)
    with TestClient(create_app(settings)) as client:
        for size in (SMALL, BIG):
            response = client.post(
                "/v2/models",
                json={"name": f"relu{size}", "definition": _relu_model(size)},
            )
            assert response.status_code in (200, 201), response.text
        yield client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    yield from _client(tmp_path, poll_s=3600.0)


def _oip(x: np.ndarray, binary: bool) -> tuple[bytes, dict[str, str]]:
    tensor: dict[str, Any] = {
        "name": "input",
        "shape": list(x.shape),
        "datatype": "FP32",
    }
    if not binary:
        tensor["data"] = x.ravel().tolist()
        return orjson.dumps({"inputs": [tensor]}), {"Content-Type": "application/json"}
    data = x.astype("<f4").tobytes()
    tensor["parameters"] = {"binary_data_size": len(data)}
    header = orjson.dumps({"inputs": [tensor]})
    return header + data, {
        "Content-Type": "application/octet-stream",
        HEADER: str(len(header)),
    }


def _values(size: int, rows: int, short: bool) -> np.ndarray:
    """Inputs of both signs; ``short``: values whose JSON is 3-4 bytes."""
    rng = np.random.default_rng(size + rows)
    if short:
        return rng.choice(np.float32([-1.5, -0.5, 0.5, 2.0]), (rows, size))
    return rng.uniform(-3, 3, (rows, size)).astype(np.float32)


# (size, rows, binary body, decode hop, encode hop)
OIP_CASES = [
    pytest.param(SMALL, 2, False, 0, 0, id="small-json"),
    pytest.param(SMALL, 2, True, 0, 0, id="small-binary"),
    pytest.param(BIG, 1, False, 1, 1, id="large-json-body-and-answer"),
    pytest.param(BIG, 1, True, 0, 1, id="small-binary-body-large-answer"),
    pytest.param(SMALL, 250, False, 1, 0, id="large-json-body-small-answer"),
]


@pytest.mark.parametrize(("size", "rows", "binary", "decode", "encode"), OIP_CASES)
def test_oip_hops_only_for_large_work_with_the_same_answers(
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
    rows: int,
    binary: bool,
    decode: int,
    encode: int,
) -> None:
    x = _values(size, rows, short=False)
    body, headers = _oip(x, binary)
    assert (len(body) > INLINE_BODY_BYTES) == bool(decode)  # the case is right
    assert (x.size > INLINE_OUTPUT_VALUES) == bool(encode)
    url = f"/v2/models/relu{size}/infer"
    assert client.post(url, content=body, headers=headers).status_code == 200  # warm
    route_hops = _Hops(monkeypatch, route)
    lookup_hops = _Hops(monkeypatch, serving)
    response = client.post(url, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert route_hops.count == decode + encode
    assert lookup_hops.count == 0  # record and weights from the view's memory
    (out,) = response.json()["outputs"]
    got = np.asarray(out["data"], np.float32).reshape(out["shape"])
    np.testing.assert_array_equal(got, np.maximum(x, 0))


@pytest.mark.parametrize(
    ("size", "rows", "hops"),
    [
        pytest.param(SMALL, 2, 0, id="small"),
        pytest.param(BIG, 1, 2, id="over-the-tfs-bound-and-large-answer"),
    ],
)
def test_tfs_predict_hops_only_for_large_work(
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
    rows: int,
    hops: int,
) -> None:
    x = _values(size, rows, short=True)
    body = orjson.dumps({"instances": x.tolist()})
    assert (len(body) > INLINE_TFS_BODY_BYTES) == (hops > 0)
    url = f"/v1/models/relu{size}:predict"
    assert client.post(url, content=body).status_code == 200
    route_hops = _Hops(monkeypatch, route)
    response = client.post(url, content=body)
    assert response.status_code == 200, response.text
    assert route_hops.count == hops
    got = np.asarray(response.json()["predictions"], np.float32)
    np.testing.assert_array_equal(got, np.maximum(x, 0))


def test_lookups_hop_when_the_database_must_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for client in _client(tmp_path, poll_s=0.0):  # every lookup reads it
        x = _values(SMALL, 1, short=False)
        body, headers = _oip(x, binary=False)
        url = f"/v2/models/relu{SMALL}/infer"
        assert client.post(url, content=body, headers=headers).status_code == 200
        lookup_hops = _Hops(monkeypatch, serving)
        response = client.post(url, content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert lookup_hops.count == 2  # record (route) and weights (served)

"""Statistics under dynamic batching (executions against Prometheus' own count),
the binary input path's allocations (issue 19 builds its zero-copy path on
it), and the scopes the extension routes enforce with ``BNN_API_KEYS``."""

from __future__ import annotations

import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from test_inference_common import FLOAT, register

from bnncore_service.config import Settings
from bnncore_service.inference.oip import decode_oip
from bnncore_service.inference.schemas import InferenceRequest
from bnncore_service.inference.tensors import Limits
from bnncore_service.main import create_app


def _prometheus(client: Any, name: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not exported")


def test_merged_requests_count_once_as_executions(tmp_path):
    settings = Settings(
        data_dir=tmp_path / "data",
        batching=True,
        batch_max_size=16,
        batch_max_wait_ms=300,
    )
    with TestClient(create_app(settings)) as client:
        register(client, "float", FLOAT)
        x = [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]
        with ThreadPoolExecutor(6) as pool:
            replies = list(
                pool.map(
                    lambda _: client.post("/v2/models/float/infer", json={"inputs": x}),
                    range(6),
                )
            )
        assert [r.status_code for r in replies] == [200] * 6
        (stats,) = client.get("/v2/models/float/versions/1/stats").json()["model_stats"]
        executions = _prometheus(client, "bnn_inference_batch_size_count")
        assert stats["inference_count"] == 6
        assert stats["inference_stats"]["success"]["count"] == 6
        assert stats["execution_count"] == executions < 6  # some were merged
        batches = stats["batch_stats"]
        assert sum(b["batch_size"] * b["compute_infer"]["count"] for b in batches) == 6
        assert sum(b["compute_infer"]["count"] for b in batches) == executions
        # Each request counts its execution's run and its own wait.
        assert stats["inference_stats"]["compute_infer"]["count"] == 6
        assert stats["inference_stats"]["queue"]["count"] == 6
        config = client.get("/v2/models/float/config").json()
        assert config["dynamic_batching"] == {
            "preferred_batch_size": [16],
            "max_queue_delay_microseconds": 300_000,
        }


def test_binary_float32_input_is_read_in_place():
    """1M float32 values in binary: decoded without copying them (the peak
    traced allocation stays far below their 4 MB) and the array reads the
    body's bytes."""
    n = 1_000_000
    values = np.random.default_rng(0).normal(size=(1, n)).astype("<f4")
    body = values.tobytes()
    request = InferenceRequest.model_validate(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, n],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(body)},
                }
            ]
        }
    )
    meta = [{"name": "x", "shape": [-1, n]}]
    limits = Limits(max_batch=8, max_tensor_elements=2 * n)
    tracemalloc.start()
    try:
        decoded = decode_oip(request, "m", meta, meta, limits, memoryview(body))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    (array,) = decoded.arrays
    assert peak < 64 * 1024, peak
    assert np.shares_memory(array, np.frombuffer(body, np.uint8))
    np.testing.assert_array_equal(array, values)


def test_extension_routes_enforce_their_scopes(tmp_path):
    settings = Settings(
        data_dir=tmp_path / "data", api_keys="reader:read,deployer:admin,all:*"
    )
    with TestClient(create_app(settings)) as client:

        def call(method: str, path: str, key: str) -> int:
            headers = {"Authorization": f"Bearer {key}"}
            return client.request(method, path, headers=headers).status_code

        assert _register_as(client, "all") == 201
        reads = [
            ("POST", "/v2/repository/index"),
            ("GET", "/v2/models/float/config"),
            ("GET", "/v2/models/float/stats"),
            ("GET", "/v2/models/stats"),
        ]
        for method, path in reads:
            assert call(method, path, "reader") == 200, path
            assert call(method, path, "deployer") == 403, path
        for action in ("load", "unload"):
            path = f"/v2/repository/models/float/{action}"
            assert call("POST", path, "reader") == 403, path
            assert call("POST", path, "deployer") == 200, path


def _register_as(client: Any, key: str) -> int:
    return client.post(
        "/v2/models",
        json={"name": "float", "definition": FLOAT},
        headers={"Authorization": f"Bearer {key}"},
    ).status_code

"""Inference under limits and load: 413 (body, batch, elements) before the data
is read, 503 at once when the pool is saturated, 504 on timeout, and dynamic
batching of concurrent requests (each gets its own rows)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from test_inference_common import output, randomize, register, served_model, tensor

from bnncore_service.config import Settings
from bnncore_service.main import create_app

SMALL = {
    "name": "small",
    "input_shape": [4, 4, 1],
    "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 3}],
}
"""16 input elements per row; no binary layer (runs through Keras)."""


def _app(tmp_path_factory: Any, **limits: Any) -> Iterator[tuple[Any, Any]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("limits") / "data", **limits)
    with TestClient(create_app(settings)) as client:
        registered = register(client, "small", SMALL)
        model = served_model(client, registered["content_hash"])
        randomize(model, seed=3)
        yield client, model


@pytest.fixture(scope="module")
def limited(tmp_path_factory: Any) -> Iterator[tuple[Any, Any]]:
    for client, model in _app(
        tmp_path_factory,
        max_body_bytes=4096,
        max_batch=4,
        max_tensor_elements=40,
        inference_workers=1,
        max_pending_inferences=2,
        inference_timeout_s=0.5,
    ):
        # The first calls at a batch size trace the model, which can take
        # longer than this short BNN_INFERENCE_TIMEOUT_S on a busy machine:
        # warm it, so the tests measure the limits, not a cold start.
        for rows in (1, 2):
            body = {"inputs": [tensor("input", _x(rows), "FP32")]}
            for _ in range(20):
                if client.post("/v2/models/small/infer", json=body).status_code == 200:
                    break
        yield client, model


def _scrape(client: Any) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _rejections(client: Any) -> dict[str, float]:
    return {
        dict(labels)["reason"]: value
        for (name, labels), value in _scrape(client).items()
        if name == "bnn_rejections_total"
    }


def _x(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, 4, 4, 1)).astype(np.float32)


def test_batch_and_element_limits_are_413_before_the_data_is_read(limited):
    client, model = limited
    before = _rejections(client)

    def oip(shape: list[int]) -> Any:
        # The data is empty: the declared shape alone is refused.
        body = {
            "inputs": [
                {"name": "input", "shape": shape, "datatype": "FP32", "data": []}
            ]
        }
        return client.post("/v2/models/small/infer", json=body)

    batch = oip([5, 4, 4, 1])
    assert batch.status_code == 413
    assert "batch size 5 exceeds the limit 4 (BNN_MAX_BATCH)" in batch.json()["error"]
    elements = oip([3, 4, 4, 1])
    assert elements.status_code == 413
    assert (
        "48 input elements exceed the limit 40 (BNN_MAX_TENSOR_ELEMENTS)"
        in (elements.json()["error"])
    )
    rows = client.post("/v1/models/small:predict", json={"instances": [0] * 5})
    assert rows.status_code == 413 and "BNN_MAX_BATCH" in rows.json()["error"]
    columns = client.post("/v1/models/small:predict", json={"inputs": _x(3).tolist()})
    assert columns.status_code == 413
    assert "BNN_MAX_TENSOR_ELEMENTS" in columns.json()["error"]

    fits = client.post(
        "/v2/models/small/infer", json={"inputs": [tensor("input", _x(2), "FP32")]}
    )
    assert fits.status_code == 200
    np.testing.assert_array_equal(
        output(fits.json(), "dense"), model.predict(_x(2), verbose=0)
    )
    after = _rejections(client)
    assert after["batch_limit"] - before["batch_limit"] == 2
    assert after["elements_limit"] - before["elements_limit"] == 2


def test_body_limit_covers_inference_routes(limited):
    client, _ = limited
    before = _rejections(client)
    data = [0.123456789] * 400  # > 4096 bytes of JSON
    body = {
        "inputs": [
            {"name": "input", "shape": [25, 4, 4, 1], "datatype": "FP32", "data": data}
        ]
    }
    for path, payload in (
        ("/v2/models/small/infer", body),
        ("/v1/models/small:predict", {"instances": data}),
    ):
        response = client.post(path, json=payload)
        assert response.status_code == 413
        assert "BNN_MAX_BODY_BYTES" in response.json()["error"]
    assert _rejections(client)["body_too_large"] - before["body_too_large"] == 2


def test_saturated_pool_is_503_at_once_and_a_slow_one_504(limited):
    client, model = limited
    good = {"inputs": [tensor("input", _x(1), "FP32")]}
    assert client.post("/v2/models/small/infer", json=good).status_code == 200
    scheduler = client.app.state.inference.scheduler
    before = _rejections(client)
    release = threading.Event()
    # The one worker runs a blocked job, one more waits: the pool is full.
    held = [scheduler.submit(release.wait, 30) for _ in range(2)]
    try:
        busy = client.post("/v2/models/small/infer", json=good)
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "1"
        assert "BNN_MAX_PENDING_INFERENCES=2" in busy.json()["error"]
        tf_busy = client.post(
            "/v1/models/small:predict", json={"instances": _x(1).tolist()}
        )
        assert tf_busy.status_code == 503

        assert held[1].cancel()  # room for one queued request, none running
        slow = client.post("/v2/models/small/infer", json=good)
        assert slow.status_code == 504
        assert "within 0.5 s (BNN_INFERENCE_TIMEOUT_S)" in slow.json()["error"]
        assert scheduler.pending == 1  # the timed-out request left the queue
    finally:
        release.set()
    assert held[0].result(timeout=30) is True
    after = client.post("/v2/models/small/infer", json=good)
    assert after.status_code == 200
    np.testing.assert_array_equal(
        output(after.json(), "dense"), model.predict(_x(1), verbose=0)
    )
    counts = _rejections(client)
    assert counts["queue_full"] - before["queue_full"] == 2
    assert counts["timeout"] - before["timeout"] == 1


@pytest.fixture(scope="module")
def batching(tmp_path_factory: Any) -> Iterator[tuple[Any, Any]]:
    yield from _app(
        tmp_path_factory,
        batching=True,
        batch_max_size=4,
        batch_max_wait_ms=1000,
        inference_workers=1,
    )


def test_concurrent_requests_are_batched_and_each_gets_its_rows(batching):
    client, model = batching
    sizes = [1, 1, 2, 1, 1, 1, 1]  # 8 rows: two full batches of 4
    inputs = [_x(rows, seed=i) for i, rows in enumerate(sizes)]
    expected = [model.predict(x, verbose=0) for x in inputs]

    def call(x: np.ndarray) -> Any:
        return client.post(
            "/v2/models/small/infer", json={"inputs": [tensor("input", x, "FP32")]}
        )

    with ThreadPoolExecutor(len(inputs)) as pool:
        responses = list(pool.map(call, inputs))
    for response, ref in zip(responses, expected, strict=True):
        assert response.status_code == 200, response.text
        got = output(response.json(), "dense")
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)

    samples = _scrape(client)
    labels = (("engine", "keras"), ("model", "small"))
    executions = samples[("bnn_inference_batch_size_count", labels)]
    rows = samples[("bnn_inference_batch_size_sum", labels)]
    singles = samples[
        ("bnn_inference_batch_size_bucket", (*labels[:1], ("le", "1.0"), labels[1]))
    ]
    assert rows == 8
    assert executions < len(inputs)  # requests were merged
    assert singles < executions  # at least one execution ran several requests

"""GET /metrics: Prometheus text of each app's own registry, scraped and parsed
after known calls."""

from __future__ import annotations

from typing import Any

import numpy as np
import prometheus_client
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from test_inference_common import register, tensor

from bnncore_service.config import Settings
from bnncore_service.main import create_app
from bnncore_service.metrics import REJECTION_REASONS

TINY = {"name": "tiny", "input_shape": [3], "layers": [{"type": "Dense", "units": 2}]}
INFER = "/v2/models/{name}/infer"


def scrape(client: Any) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_metrics_after_known_calls(tmp_path):
    settings = Settings(data_dir=tmp_path / "a", max_body_bytes=2048)
    with TestClient(create_app(settings)) as client:
        assert register(client, "tiny", TINY)["version"] == 1
        for rows in (3, 1):
            x = np.ones((rows, 3), np.float32)
            body = {"inputs": [tensor("input", x, "FP32")]}
            assert client.post("/v2/models/tiny/infer", json=body).status_code == 200
        wrong = {"inputs": [tensor("input", np.ones((1, 4)), "FP32")]}
        assert client.post("/v2/models/tiny/infer", json=wrong).status_code == 400
        unknown = client.post("/v2/models/nosuch/infer", json=wrong)
        assert unknown.status_code == 404
        assert client.get("/no/such/route").status_code == 404
        big = {"inputs": [tensor("input", np.ones((200, 3)), "FP64")]}
        assert client.post("/v2/models/tiny/infer", json=big).status_code == 413
        samples = scrape(client)

    requests = "bnn_http_requests_total"
    ok = {"method": "POST", "route": INFER, "model": "tiny", "status": "200"}
    assert value(samples, requests, **ok) == 2
    assert value(samples, requests, **{**ok, "status": "400"}) == 1
    assert value(samples, requests, **{**ok, "model": "", "status": "404"}) == 1
    # Refused by the body limit before routing: still its route template.
    assert value(samples, requests, **{**ok, "model": "", "status": "413"}) == 1
    assert (
        value(
            samples,
            requests,
            method="POST",
            route="/v2/models",
            model="",
            status="201",
        )
        == 1
    )
    assert (
        value(
            samples, requests, method="GET", route="unmatched", model="", status="404"
        )
        == 1
    )
    # Names a client makes up never become label values.
    assert not any("nosuch" in str(labels) for _, labels in samples)
    assert value(samples, "bnn_http_request_duration_seconds_count", **ok) == 2

    engine = {"model": "tiny", "engine": "keras"}
    assert value(samples, "bnn_inference_duration_seconds_count", **engine) == 2
    assert value(samples, "bnn_inference_batch_size_count", **engine) == 2
    assert value(samples, "bnn_inference_batch_size_sum", **engine) == 4
    assert value(samples, "bnn_inference_batch_size_bucket", **engine, le="1.0") == 1
    assert value(samples, "bnn_inference_batch_size_bucket", **engine, le="4.0") == 2
    assert value(samples, "bnn_models_loaded") == 1
    for reason in REJECTION_REASONS:
        expected = 1 if reason == "body_too_large" else 0
        assert value(samples, "bnn_rejections_total", reason=reason) == expected


def test_the_engine_instruction_set_is_exported_at_each_scrape(tmp_path):
    from bnncore.engine import kernels

    levels = kernels.supported_isas()
    assert levels[0] == "portable"
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        try:
            for level in levels:
                kernels.set_isa(level)
                labels = {
                    "isa": level,
                    "supported_isas": ",".join(levels),
                    "kernel": "generic" if level == "portable" else level,
                }
                samples = scrape(client)
                assert value(samples, "bnn_engine_info", **labels) == 1
                assert sum(name == "bnn_engine_info" for name, _ in samples) == 1
        finally:
            kernels.set_isa("auto")


def test_each_app_has_its_own_registry(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path / "a"))) as first:
        register(first, "tiny", TINY)
        body = {"inputs": [tensor("input", np.ones((1, 3)), "FP32")]}
        first.post("/v2/models/tiny/infer", json=body)
        with TestClient(create_app(Settings(data_dir=tmp_path / "b"))) as second:
            samples = scrape(second)
    names = {name for name, _ in samples}
    assert "bnn_inference_batch_size_count" not in names
    assert value(samples, "bnn_models_loaded") == 0
    assert not any(name.startswith("bnn_") for name in _global_names())


def _global_names() -> set[str]:
    return {
        sample.name
        for family in prometheus_client.REGISTRY.collect()
        for sample in family.samples
    }

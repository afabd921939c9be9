"""A full replica's build executor, full, as the inference routes see it
(issue 18: ``BusyError`` is caught by type in ``routes/inference.py``, no
longer looked up in ``sys.modules``).

Oracle: the real app with one build slot, held by a job of our own on the
same executor (``Registry.run_keras``): a version not yet loaded cannot be
built, so inference and the ready probe answer 503 with ``Retry-After`` and
the runtime's message, and ``bnn_rejections_total{reason="build_busy"}``
counts each; once the slot is free the same request succeeds.
"""

from __future__ import annotations

import threading
from pathlib import Path

from fastapi.testclient import TestClient

from bnncore_service.config import Settings
from bnncore_service.main import create_app

DENSE = {"input_shape": [4], "layers": [{"type": "Dense", "units": 3}]}
BODY = {
    "inputs": [
        {
            "name": "input_layer",
            "shape": [1, 4],
            "datatype": "FP32",
            "data": [1.0, -2.0, 3.0, 0.5],
        }
    ]
}


def _busy_count(client: TestClient) -> float | None:
    metrics = client.app.state.metrics  # type: ignore[attr-defined]
    return metrics.registry.get_sample_value(
        "bnn_rejections_total", {"reason": "build_busy"}
    )


def test_inference_and_ready_answer_503_while_the_builds_are_full(
    tmp_path: Path,
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", build_workers=1, max_pending_builds=1
    )
    with TestClient(create_app(settings)) as client:
        reply = client.post("/v2/models", json={"name": "m", "definition": DENSE})
        assert reply.status_code == 201, reply.text
        name = client.get("/v2/models/m").json()["inputs"][0]["name"]
        body = {"inputs": [BODY["inputs"][0] | {"name": name}]}
        registry = client.app.state.registry  # type: ignore[attr-defined]
        assert _busy_count(client) == 0

        started, release = threading.Event(), threading.Event()

        def hold() -> None:
            started.set()
            release.wait(30)

        held = client.portal.start_task_soon(registry.run_keras, hold)
        try:
            assert started.wait(10)
            for method, path, payload in (
                ("POST", "/v2/models/m/infer", body),
                ("GET", "/v2/models/m/ready", None),
            ):
                reply = client.request(method, path, json=payload)
                assert reply.status_code == 503, (path, reply.text)
                assert reply.headers["retry-after"] == "1"
                message = reply.json()["error"]
                assert "BNN_MAX_PENDING_BUILDS=1" in message, message
                assert "is not ready" not in message  # not swallowed by ready
            assert _busy_count(client) == 2
        finally:
            release.set()
            held.result(timeout=30)

        reply = client.post("/v2/models/m/infer", json=body)
        assert reply.status_code == 200, reply.text
        assert client.get("/v2/models/m/ready").json()["ready"] is True
        assert _busy_count(client) == 2

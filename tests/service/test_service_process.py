"""The service as a real process: uvicorn on a loopback port, stopped and restarted.

One test starts ``uvicorn bnncore_service.main:app`` (the command ``make serve`` runs)
with only ``BNN_DATA_DIR`` set, registers a model over HTTP, stops the
process, starts a new one on the same data directory and finds everything
there.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from service_samples import MNIST


def test_register_stop_start_everything_is_there(tmp_path: Path, start_service) -> None:
    data_dir = tmp_path / "data"
    server = start_service(data_dir, command="uvicorn", timeout=90)
    base = server.base
    try:
        created = httpx.post(
            f"{base}/v2/models", json={"name": "mnist", "definition": MNIST}, timeout=60
        )
        assert created.status_code == 201
        before = httpx.get(f"{base}/v2/models/mnist/summary?format=text", timeout=60)
        assert before.status_code == 200
    finally:
        server.stop()
    assert (data_dir / "registry.sqlite3").is_file()

    server = start_service(data_dir, command="uvicorn", timeout=90)
    base = server.base
    try:
        metadata = httpx.get(f"{base}/v2/models/mnist").json()
        assert metadata["versions"] == ["1"]
        assert metadata["inputs"][0]["shape"] == [-1, 28, 28, 1]
        after = httpx.get(f"{base}/v2/models/mnist/summary?format=text", timeout=60)
        assert after.text == before.text
        again = httpx.post(
            f"{base}/v2/models", json={"name": "mnist", "definition": MNIST}, timeout=60
        )
        assert (again.status_code, again.json()["version"]) == (200, 1)
    finally:
        server.stop()

"""The service as a real process: uvicorn on a loopback port, stopped and restarted.

One test starts ``uvicorn service.main:app`` (the command ``make serve`` runs)
with only ``BNN_DATA_DIR`` set, registers a model over HTTP, stops the
process, starts a new one on the same data directory and finds everything
there.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from service_samples import MNIST

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(data_dir: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BNN_")}
    env["BNN_DATA_DIR"] = str(data_dir)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "service.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stderr.read().decode()[-2000:])
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    raise AssertionError("uvicorn did not become ready in 90 s")


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_register_stop_start_everything_is_there(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    process = _start(data_dir, port)
    try:
        created = httpx.post(
            f"{base}/v2/models", json={"name": "mnist", "definition": MNIST}, timeout=60
        )
        assert created.status_code == 201
        before = httpx.get(f"{base}/v2/models/mnist/summary?format=text", timeout=60)
        assert before.status_code == 200
    finally:
        _stop(process)
    assert (data_dir / "registry.sqlite3").is_file()

    process = _start(data_dir, port)
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
        _stop(process)

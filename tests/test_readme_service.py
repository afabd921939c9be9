"""The README's service block runs as printed against a live uvicorn on loopback."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- service-example -->"


def service_block() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(re.escape(MARKER) + r"\n```bash\n(.*?)\n```", text, re.S)
    assert match, "README has no service example block"
    return match.group(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = free_port()
    env = {**os.environ, "BNN_DATA_DIR": str(tmp_path / "data")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bnncore_service.main:app",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the service did not start") from None
                time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_readme_service_block_runs(server, tmp_path):
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", service_block()],
        cwd=tmp_path,
        env={**os.environ, "S": server},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # Hand counts for the README's definition: a 3×3×1×32 binary kernel (288),
    # then 13·13·32 = 5,408 features into a 10-unit binary dense layer (54,080).
    assert '"binary_params":54368' in out.replace(" ", "")
    assert "quant_conv2d" in out and "quant_dense" in out
    # The inference response echoes the id and has one (1, 10) output.
    infer = json.loads(out[out.rindex('{"model_name"') :])
    assert infer["id"] == "1"
    assert infer["model_name"] == "mnist"
    assert infer["outputs"][0]["shape"] == [1, 10]
    assert len(infer["outputs"][0]["data"]) == 10


def test_readme_client_block_runs(server, tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- client-example -->\n```python\n(.*?)\n```", text, re.S)
    assert match, "README has no client example block"
    # Exactly as printed, with the port of this test's server.
    code = match.group(1).replace("http://127.0.0.1:8000", server)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme_client"}
    exec(compile(code, "README.md client block", "exec"), namespace)
    # The block's own assertion compared served and local predictions; check
    # that it really produced a version and probabilities.
    assert namespace["version"] >= 1
    np = namespace["np"]
    np.testing.assert_allclose(namespace["probabilities"].sum(axis=1), 1.0, rtol=1e-5)

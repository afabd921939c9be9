"""What an inference replica imports before its first request: a real
``python -m bnncore_service`` (``BNN_ROLE=inference``) is ready without the
runtime's reader and planner nor pydantic, its first inference imports the
runtime's modules (not pydantic: the JSON fast path reads an ordinary body)
and answers as ``bnncore_runtime.load`` does, and the first body the fast
path declines imports pydantic and the request models.

Oracles: the replica process's own ``sys.modules`` (read by a thread of that
process, once ``GET /v2/health/ready`` answers 200 and again after each
answer), and ``bnncore_runtime.load(...).predict`` on the model exported by
``bnncore.export.save`` (its own definition document, not the store's)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_inference_common import SEQ, register_with_weights

import bnncore as lq
import bnncore_runtime
from bnncore_service.config import Settings
from bnncore_service.inference.oip import parse_oip
from bnncore_service.inference.tfserving import parse_predict
from bnncore_service.inference_app import create_inference_app
from bnncore_service.main import create_app

warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
X = np.random.default_rng(3).normal(size=(3, 6, 6, 2)).astype(np.float32)

DEFERRED = (
    "bnncore_runtime.codec",
    "bnncore_runtime.container",
    "bnncore_runtime.definition",
    "bnncore_runtime.graph",
    "bnncore_runtime.keras_config",
    "bnncore_runtime.layer_rules",
    "bnncore_runtime.layers",
    "bnncore_runtime.planner",
    "bnncore_runtime.steps",
)
"""The runtime's reader and planner, and the layer rules: imported by the
first model loaded (``inference/runtime_models.py``, ``peak.py``). None at
the replica's start."""

VALIDATION = ("bnncore_service.inference.schemas", "pydantic")
"""The request models (pydantic classes) and pydantic itself: imported by
the first body that ``oip.parse_oip`` or ``tfserving.parse_predict``
declines (``handlers.py``), which pydantic validates; neither at the start
nor by an ordinary body."""

LOOKUP = "importlib.metadata"
"""Imported by the first lookup of the server's version (``GET /v2``, the
documentation; pydantic imports it too), neither at the start nor by an
ordinary inference."""

# Runs in the replica's process: a thread waits for readiness, notes the
# modules, makes each request of stdin's list ([path, JSON body or null for
# a GET]) and notes the answer and the modules after it, prints what it saw
# and stops the server; the main thread runs ``python -m bnncore_service``.
CHILD = """
import json, os, runpy, signal, sys, threading, time, urllib.request

PORT, WATCHED = int(sys.argv[1]), json.loads(sys.argv[2])
BASE = f"http://127.0.0.1:{PORT}"
STEPS = json.loads(sys.stdin.read())
OPEN = urllib.request.build_opener(urllib.request.ProxyHandler({})).open  # no proxy


def loaded():
    return sorted(m for m in WATCHED if m in sys.modules)


def probe():
    seen = {}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with OPEN(BASE + "/v2/health/ready") as reply:
                    if reply.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        seen["ready"] = loaded()
        seen["answers"], seen["after"] = [], []
        for path, body in STEPS:
            request = urllib.request.Request(
                BASE + path, data=None if body is None else body.encode(),
                headers={"Content-Type": "application/json"},
            )
            with OPEN(request) as reply:
                seen["answers"].append(json.loads(reply.read()))
            seen["after"].append(loaded())
    except BaseException as exc:
        seen["error"] = repr(exc)
    finally:
        print(json.dumps(seen), flush=True)
        os.kill(os.getpid(), signal.SIGTERM)


threading.Thread(target=probe, daemon=True).start()
sys.argv = ["bnncore_service", "--port", str(PORT)]
runpy.run_module("bnncore_service", run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A store a full replica wrote (``seq``, its bnncore weights file
    uploaded) and the same model exported by ``bnncore.export.save``."""
    root = tmp_path_factory.mktemp("replica_imports")
    data_dir, exported = root / "data", root / "exported"
    with TestClient(create_app(Settings(data_dir=data_dir))) as full:
        model = register_with_weights(full, "seq", SEQ, 7)
        lq.export.save(model, exported)
    return data_dir, exported


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_replica(data_dir: Path, steps: list[tuple[str, str | None]]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BNN_")}
    env.update({"BNN_ROLE": "inference", "BNN_DATA_DIR": str(data_dir),
                "BNN_MIGRATE": "off", "BNN_LOG_LEVEL": "warning"})  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(_free_port()),
         json.dumps([*DEFERRED, *VALIDATION, LOOKUP])],
        input=json.dumps(steps), capture_output=True, text=True, cwd=ROOT,
        env=env, timeout=180, check=False,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    assert lines, (
        f"the replica printed nothing (exit {done.returncode}): "
        + (done.stderr[-3000:])
    )
    seen: dict[str, Any] = json.loads(lines[-1])
    assert "error" not in seen, (seen["error"], done.stderr[-3000:])
    return seen


def test_ready_without_planner_and_pydantic(store: tuple[Path, Path]) -> None:
    """Ready (200) with none of the runtime's reader, planner and layer rules
    nor pydantic and the request models imported; the first inference (an
    ordinary body) imports the runtime's modules, not pydantic, and answers
    exactly as ``bnncore_runtime.load``, and so does a TF Serving predict; a
    body the fast path declines (an
    escape in ``id``) imports pydantic and the request models and gets the
    same answer. ``GET /v2``, asked between them, imports importlib.metadata
    and names the installed distribution's version."""
    data_dir, exported = store
    inputs = [{"name": "input", "shape": list(X.shape), "datatype": "FP32",
               "data": X.reshape(-1).tolist()}]  # fmt: skip
    ordinary = json.dumps({"id": "abc", "inputs": inputs})
    declined = ordinary.replace('"abc"', '"\\u0061bc"')
    assert parse_oip(ordinary.encode()) is not None
    assert parse_oip(declined.encode()) is None  # pydantic validates it
    predict = json.dumps({"instances": X.tolist()})
    assert parse_predict(predict.encode()) is not None
    infer = "/v2/models/seq/infer"
    seen = _run_replica(
        data_dir,
        [(infer, ordinary), ("/v1/models/seq:predict", predict), ("/v2", None),
         (infer, declined)],
    )  # fmt: skip
    assert seen["ready"] == []
    assert seen["after"] == [
        sorted(DEFERRED),
        sorted(DEFERRED),
        sorted([*DEFERRED, LOOKUP]),
        sorted([*DEFERRED, *VALIDATION, LOOKUP]),
    ]
    first, tfs, server, second = seen["answers"]
    assert server["version"] == metadata.version("bnncore")
    expected = bnncore_runtime.load(exported).predict(X)
    predictions = np.asarray(tfs["predictions"], dtype=np.float64).astype(np.float32)
    np.testing.assert_array_equal(predictions, expected)
    for answer in (first, second):
        assert answer["id"] == "abc"
        (output,) = answer["outputs"]
        got = np.asarray(output["data"], dtype=np.float64).astype(np.float32)
        assert output["shape"] == list(expected.shape)
        np.testing.assert_array_equal(got.reshape(expected.shape), expected)


def test_the_server_version_is_the_installed_distributions(tmp_path: Path) -> None:
    """``GET /v2`` names the installed ``bnncore`` distribution's version (its
    metadata read once, at the first lookup), at every request."""
    settings = Settings(data_dir=tmp_path, role="inference")
    with TestClient(create_inference_app(settings)) as replica:
        answers = [replica.get("/v2").json()["version"] for _ in range(2)]
    assert answers == [metadata.version("bnncore")] * 2

"""The memory attacks of issue 14 (findings 1 and 2) against a real server
under a memory cap.

``uvicorn bnncore_service.main:app`` runs in a subprocess with its address space
capped (``RLIMIT_AS``, 4 GiB: TensorFlow reserves about 2 GiB of virtual memory
at start, so any of the attacks' tensors, 16 GiB for the separable bomb, would
fail to allocate and take the server down). Every hostile request must get a
4xx, the server must still be ready afterwards and serve a legitimate request,
and its peak resident memory (``VmHWM``) must have grown by less than
:data:`RSS_GROWTH_BOUND`.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
ADDRESS_SPACE = 4 * 2**30
RSS_GROWTH_BOUND = 300 * 2**20

SEPARABLE_BOMB = {
    "input_shape": [64, 64, 1],
    "layers": [
        {
            "type": "SeparableConv2D",
            "filters": 1,
            "kernel_size": 1,
            "depth_multiplier": 1_048_576,
        }
    ],
}


def _bomb(kind: str) -> dict[str, Any]:
    layer = {**SEPARABLE_BOMB["layers"][0], "type": kind}  # type: ignore[index]
    if "Separable" not in kind:
        del layer["filters"]
    return {"input_shape": [64, 64, 1], "layers": [layer]}


UPSAMPLING_BOMB = {
    "input_shape": [16, 16, 1],
    "layers": [
        {"type": "UpSampling2D", "size": 64},
        {"type": "UpSampling2D", "size": 13},
    ],
}
UPSAMPLING_BATCH = {
    "input_shape": [16, 16, 1],
    "layers": [
        {"type": "UpSampling2D", "size": 64},
        {"type": "UpSampling2D", "size": 4},
    ],
}
WIDER_ANSWER = {
    "input_shape": [16, 16, 1],
    "layers": [{"type": "UpSampling2D", "size": 32}],
}


def _cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any, start_service) -> Iterator[Any]:
    running = start_service(
        tmp_path_factory.mktemp("capped") / "data",
        env={"TF_CPP_MIN_LOG_LEVEL": "2"},
        command="uvicorn",
        preexec_fn=_cap,
        timeout=90,
    )
    yield running
    running.stop()


def _oip(name: str, rows: int) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": name,
                "shape": [rows, 16, 16, 1],
                "datatype": "FP32",
                "data": [0.0] * (rows * 256),
            }
        ]
    }


def test_memory_attacks_get_4xx_and_the_capped_server_survives(server: Any) -> None:
    process = server.process
    http = httpx.Client(base_url=server.base, timeout=60)
    # A legitimate model and one request, so the baseline has TensorFlow warm.
    assert http.post(
        "/v2/models", json={"name": "wider", "definition": WIDER_ANSWER}
    ).status_code in (200, 201)
    assert http.post("/v2/models/wider/infer", json=_oip("input", 1)).is_success
    baseline = _status(process.pid, "VmHWM")

    refused: list[tuple[str, int, str]] = []

    def expect_4xx(label: str, response: httpx.Response) -> None:
        refused.append((label, response.status_code, response.text[:200]))

    # Finding 1: depth_multiplier bombs, at registration and dry run.
    for kind in (
        "SeparableConv2D",
        "QuantSeparableConv2D",
        "DepthwiseConv2D",
        "QuantDepthwiseConv2D",
    ):
        body = {"name": "bomb", "definition": _bomb(kind)}
        expect_4xx(f"register {kind}", http.post("/v2/models", json=body))
        expect_4xx(f"estimate {kind}", http.post("/v2/estimate", json=_bomb(kind)))
        expect_4xx(f"summary {kind}", http.post("/v2/summary", json=_bomb(kind)))
    # Finding 2: the upsampling bomb itself, then batches over the bound.
    body = {"name": "bomb", "definition": UPSAMPLING_BOMB}
    expect_4xx("register upsampling bomb", http.post("/v2/models", json=body))
    body = {"name": "upsample", "definition": UPSAMPLING_BATCH}
    assert http.post("/v2/models", json=body).status_code in (200, 201)
    expect_4xx(
        "OIP infer 8 rows of upsampling",
        http.post("/v2/models/upsample/infer", json=_oip("input", 8)),
    )
    x = np.zeros((8, 16, 16, 1)).tolist()
    for route in (
        "/v1/models/upsample:predict",
        "/v1/models/upsample/versions/1:predict",
    ):
        for layout in ("instances", "inputs"):
            expect_4xx(f"{route} {layout}", http.post(route, json={layout: x}))
    expect_4xx(
        "OIP infer 256 rows of a wide answer",
        http.post("/v2/models/wider/versions/1/infer", json=_oip("input", 256)),
    )

    assert process.poll() is None, server.log_tail()
    wrong = [(label, code) for label, code, _ in refused if not 400 <= code < 500]
    assert not wrong, refused
    assert http.get("/v2/health/ready").status_code == 200
    assert http.post("/v2/models/wider/infer", json=_oip("input", 2)).is_success
    growth = _status(process.pid, "VmHWM") - baseline
    assert growth < RSS_GROWTH_BOUND, (growth, refused)


HEAVY = {
    "conv": {"input_shape": [128, 128, 32], "layers": [
        {"type": "QuantConv2D", "filters": 64, "kernel_size": 3, "padding": "same",
         "input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign",
         "pad_values": 1.0}]},
    "transposed": {"input_shape": [64, 64, 32], "layers": [
        {"type": "Conv2DTranspose", "filters": 32, "kernel_size": 4, "strides": 2}]},
    "separable": {"input_shape": [128, 128, 16], "layers": [
        {"type": "SeparableConv2D", "filters": 16, "kernel_size": 3,
         "depth_multiplier": 8, "padding": "same"}]},
    "depthwise": {"input_shape": [128, 128, 16], "layers": [
        {"type": "DepthwiseConv2D", "kernel_size": 3, "depth_multiplier": 8,
         "padding": "same"}]},
    "upsampling": {"input_shape": [64, 64, 16], "layers": [
        {"type": "UpSampling2D", "size": 8}]},
}  # fmt: skip
"""Layers whose intermediates and outputs dwarf their inputs."""


def test_measured_rss_of_heavy_layers_is_within_the_estimate() -> None:
    """What TensorFlow really takes (the growth of the peak resident set over
    one run of 8 rows, in a fresh process) is at most the estimate."""
    cases = [{"name": k, "definition": d, "rows": 8} for k, d in HEAVY.items()]
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": str(ROOT),
        # Large blocks mapped and unmapped: a run cannot reuse what the
        # previous case freed, so each growth is its own.
        "MALLOC_MMAP_THRESHOLD_": "131072",
        "MALLOC_TRIM_THRESHOLD_": "0",
    }
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("rss_probe.py"))],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["name"] for r in results] == list(HEAVY)
    for result in results:
        # Each run really allocates (at least its output) ...
        assert result["growth"] >= 4 * result["out"] // 2, result
        # ... and no more than estimated.
        assert result["growth"] <= result["estimate"], result

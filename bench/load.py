"""Load generator: throughput, p50/p99 latency and errors of REST inference.

Starts the service (``uvicorn bnncore_service.main:app`` in a subprocess, on a free
**loopback** port, with a temporary data directory and an API key), registers
the Larq MNIST BNN (93,088 binary weights, 28×28×1 input) and, for each number
of concurrent clients N (1, 4 and 16 by default), has N threads send
``POST /v2/models/mnist/infer`` (one image, FP32 JSON, keep-alive connections)
as fast as answers come back. Each level stops at whichever comes first:
``--requests`` answers or ``--seconds`` seconds. The generator only ever
connects to 127.0.0.1 and stops the service when done.

The load generator and the service share the machine's cores; the numbers are
for this machine, not a capacity claim.

Run: ``python -m bench load`` (or ``python -m bench.load --clients 1,8
--requests 500 --seconds 20 --engine keras --batching``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # loopback only, by design
MODEL = "mnist"
BINARY = {
    "input_quantizer": "ste_sign",
    "kernel_quantizer": "ste_sign",
    "kernel_constraint": "weight_clip",
    "use_bias": False,
}
MNIST_BNN: dict[str, Any] = {
    "name": "mnist_bnn",
    "input_shape": [28, 28, 1],
    "layers": [
        {
            "type": "QuantConv2D",
            "filters": 32,
            "kernel_size": 3,
            "kernel_quantizer": "ste_sign",
            "kernel_constraint": "weight_clip",
            "use_bias": False,
        },
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "BatchNormalization", "scale": False},
        {"type": "QuantConv2D", "filters": 64, "kernel_size": 3, **BINARY},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "BatchNormalization", "scale": False},
        {"type": "QuantConv2D", "filters": 64, "kernel_size": 3, **BINARY},
        {"type": "BatchNormalization", "scale": False},
        {"type": "Flatten"},
        {"type": "QuantDense", "units": 64, **BINARY},
        {"type": "BatchNormalization", "scale": False},
        {"type": "QuantDense", "units": 10, **BINARY},
        {"type": "BatchNormalization", "scale": False},
        {"type": "Activation", "activation": "softmax"},
    ],
}
"""Larq's MNIST tutorial BNN in the service's definition language."""


@dataclass
class Level:
    """The results of one concurrency level."""

    clients: int
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def answered(self) -> int:
        return len(self.latencies) + sum(self.errors.values())

    def row(self) -> str:
        ms = np.asarray(self.latencies) * 1000
        p50, p99 = np.percentile(ms, [50, 99]) if len(ms) else (float("nan"),) * 2
        errors = sum(self.errors.values())
        rate = len(self.latencies) / self.elapsed if self.elapsed else 0.0
        return (
            f"| {self.clients:>7} | {self.answered:>8} | {errors:>6} | "
            f"{rate:>16.1f} | {p50:>8.1f} | {p99:>8.1f} |"
        )


HEADER = (
    "| clients | requests | errors | throughput req/s | p50 ms | p99 ms |\n"
    "|--------:|---------:|-------:|-----------------:|-------:|-------:|"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Service:
    """The service in a subprocess on a loopback port (a context manager)."""

    def __init__(self, env: dict[str, str], startup_seconds: float = 120.0) -> None:
        self.port = _free_port()
        self.env = env
        self.startup_seconds = startup_seconds
        self.process: subprocess.Popen | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="bnn-load-")

    def __enter__(self) -> Service:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BNN_")}
        env.update(self.env, BNN_DATA_DIR=str(Path(self._tmp.name) / "data"))
        self.log = open(Path(self._tmp.name) / "service.log", "wb")
        command = [sys.executable, "-m", "uvicorn", "bnncore_service.main:app"]
        self.process = subprocess.Popen(
            [*command, "--host", HOST, "--port", str(self.port), "--no-access-log"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.startup_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited:\n{self.tail()}")
            try:
                status, _ = request(self.port, "GET", "/v2/health/ready", timeout=2)
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.3)
        self.__exit__(None, None, None)
        raise RuntimeError(f"the service was not ready in {self.startup_seconds} s")

    def tail(self) -> str:
        self.log.flush()
        return (Path(self._tmp.name) / "service.log").read_text()[-3000:]

    def __exit__(self, *_: Any) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        self._tmp.cleanup()


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
    connection: http.client.HTTPConnection | None = None,
) -> tuple[int, bytes]:
    """One request to the loopback service (on ``connection`` if given)."""
    own = connection is None
    conn = connection or http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


def run_level(
    port: int,
    clients: int,
    body: bytes,
    headers: dict[str, str],
    max_requests: int,
    max_seconds: float,
) -> Level:
    """N threads sending the same request until the count or the time is up."""
    level = Level(clients)
    lock = threading.Lock()
    issued = 0
    start = time.perf_counter()
    deadline = start + max_seconds
    path = f"/v2/models/{MODEL}/infer"

    def worker() -> None:
        nonlocal issued
        conn = http.client.HTTPConnection(HOST, port, timeout=max_seconds + 30)
        try:
            while time.perf_counter() < deadline:
                with lock:
                    if issued >= max_requests:
                        return
                    issued += 1
                t0 = time.perf_counter()
                try:
                    status, _ = request(
                        port, "POST", path, body, headers, connection=conn
                    )
                    outcome = None if status == 200 else f"HTTP {status}"
                except (OSError, http.client.HTTPException) as error:
                    outcome = type(error).__name__
                    conn.close()
                    conn = http.client.HTTPConnection(HOST, port, timeout=60)
                elapsed = time.perf_counter() - t0
                with lock:
                    if outcome is None:
                        level.latencies.append(elapsed)
                    else:
                        level.errors[outcome] = level.errors.get(outcome, 0) + 1
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    level.elapsed = time.perf_counter() - start
    return level


def main(argv: list[str] | None = None) -> int:
    """Runs the load levels and prints the table; 1 if any request failed."""
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--clients", default="1,4,16", help="levels, e.g. 1,4,16")
    parser.add_argument("--requests", type=int, default=500, help="max per level")
    parser.add_argument("--seconds", type=float, default=10.0, help="max per level")
    parser.add_argument("--batch", type=int, default=1, help="images per request")
    parser.add_argument("--engine", choices=("auto", "keras"), default="auto")
    parser.add_argument("--batching", action="store_true", help="BNN_BATCHING=1")
    args = parser.parse_args([] if argv is None else argv)
    levels = [int(n) for n in args.clients.split(",") if n.strip()]
    if not levels or min(levels) < 1 or max(levels) > 256:
        parser.error(f"--clients: received {args.clients!r}; expected 1..256 each")
    if args.requests < 1 or not 0 < args.seconds <= 600:
        parser.error("--requests must be >= 1 and --seconds in (0, 600]")

    key = secrets.token_urlsafe(24)
    env = {
        "BNN_API_KEYS": key,
        "BNN_ENGINE": args.engine,
        "BNN_BATCHING": "1" if args.batching else "0",
        "BNN_MAX_PENDING_INFERENCES": str(max(32, 2 * max(levels))),
    }
    auth = {"Authorization": f"Bearer {key}"}
    json_headers = auth | {"Content-Type": "application/json"}
    images = np.random.default_rng(0).random((args.batch, 28, 28, 1), "float32")
    started = time.perf_counter()
    with Service(env) as service:
        print(
            f"service on http://{HOST}:{service.port} ready in "
            f"{time.perf_counter() - started:.1f} s"
        )
        status, raw = request(
            service.port,
            "POST",
            "/v2/models",
            json.dumps({"name": MODEL, "definition": MNIST_BNN}).encode(),
            json_headers,
        )
        if status != 201:
            print(f"register failed: HTTP {status}: {raw[:500]!r}")
            return 1
        status, raw = request(service.port, "GET", f"/v2/models/{MODEL}", None, auth)
        input_name = json.loads(raw)["inputs"][0]["name"]
        payload = {
            "inputs": [
                {
                    "name": input_name,
                    "shape": list(images.shape),
                    "datatype": "FP32",
                    "data": images.reshape(-1).tolist(),
                }
            ]
        }
        body = json.dumps(payload).encode()
        status, raw = request(
            service.port, "POST", f"/v2/models/{MODEL}/infer", body, json_headers
        )
        if status != 200:
            print(f"first inference failed: HTTP {status}: {raw[:500]!r}")
            return 1
        engine = json.loads(raw).get("parameters", {}).get("engine", "?")
        run_level(service.port, 2, body, json_headers, 50, 5.0)  # warm-up
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
        print(
            f"model: Larq MNIST BNN, batch {args.batch}, {len(body):,}-byte JSON "
            f"request, engine {engine}, dynamic batching "
            f"{'on' if args.batching else 'off'}, API key auth on; {cores} cores "
            f"shared by the service and the load generator; each level stops at "
            f"{args.requests} requests or {args.seconds:g} s\n"
        )
        print(HEADER)
        failed = False
        for clients in levels:
            level = run_level(
                service.port, clients, body, json_headers, args.requests, args.seconds
            )
            print(level.row(), flush=True)
            if level.errors:
                failed = True
                print(f"  errors: {level.errors}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

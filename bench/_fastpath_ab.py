"""The route fast path (``bnncore_service/fastpath.py``) on against off: a
helper, not a benchmark of record.

Starts two service processes as ``bench serving`` does (``python -m
bnncore_service``, API keys, batching off), one with ``BNN_ROUTE_FAST_PATH=0``,
registers the MNIST BNN in each, then runs ``wrk`` against them in turn,
interleaved (the order alternating each round), for JSON and binary bodies at
1 and 16 connections. Prints the service's CPU time per request (user +
system of the process, from ``/proc``) and requests/s: the median and range
over the rounds per case, and the median of the paired differences.

With ``--in-process``, instead: one app (``create_app``) called directly
through ASGI in this process, its fast path switched in and out between
blocks of requests (a 404 for an unknown model on each hot route), CPU time
of the thread per request.

Run: ``python -m bench._fastpath_ab [--rounds 6] [--seconds 3] [--in-process]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import serving

CASES = [("json", 1), ("json", 16), ("binary", 1), ("binary", 16)]
UNKNOWN = [
    "/v2/models/nothing/infer",
    "/v2/models/nothing/versions/1/infer",
    "/v1/models/nothing:predict",
]


async def _request(app: Any, path: str, body: bytes) -> int:
    """One ``POST`` through the app's ASGI interface; the status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "state": {},
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)  # never: the answer comes first
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


def in_process(rounds: int, requests: int = 500) -> None:
    """The in-process A/B (module docstring)."""
    from fastapi.testclient import TestClient

    from bnncore_service.config import Settings
    from bnncore_service.main import create_app

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp) / "data"))
        with TestClient(app):  # the lifespan
            logging.disable(logging.CRITICAL)  # the 404s' log lines
            fast = app.router.middleware_stack
            stacks = {"on": fast, "off": fast.app}

            async def run() -> None:
                for path in UNKNOWN:
                    times: dict[str, list[float]] = {"on": [], "off": []}
                    for round_ in range(2 * rounds):
                        order = ["on", "off"] if round_ % 2 == 0 else ["off", "on"]
                        for label in order:
                            app.router.middleware_stack = stacks[label]
                            start = time.thread_time_ns()
                            for _ in range(requests):
                                status = await _request(app, path, b"{}")
                            spent = time.thread_time_ns() - start
                            times[label].append(spent / requests / 1e3)
                    app.router.middleware_stack = fast
                    pairs = zip(times["on"], times["off"], strict=True)
                    diffs = sorted(off - on for on, off in pairs)
                    print(
                        f"POST {path} ({status}): "
                        + ", ".join(
                            f"{label} {statistics.median(v):.0f} "
                            f"[{min(v):.0f}-{max(v):.0f}] us"
                            for label, v in times.items()
                        )
                        + f"; off - on paired median {statistics.median(diffs):.0f} us"
                    )

            asyncio.run(run())
            logging.disable(logging.NOTSET)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--in-process", action="store_true")
    args = parser.parse_args(argv)
    if args.in_process:
        in_process(args.rounds)
        return
    key = secrets.token_urlsafe(24)
    auth = {"Authorization": f"Bearer {key}"}
    env = {"BNN_API_KEYS": key, "BNN_BATCHING": "false", "BNN_LOG_LEVEL": "warning"}
    model = serving.mnist_model()
    images = np.random.default_rng(0).random((1, 28, 28, 1), "float32")
    cpu: dict[tuple[str, str, int], list[float]] = {}
    rps: dict[tuple[str, str, int], list[float]] = {}
    with (
        serving.Server(env | {"BNN_ROUTE_FAST_PATH": "1"}) as on,
        serving.Server(env | {"BNN_ROUTE_FAST_PATH": "0"}) as off,
        tempfile.TemporaryDirectory() as tmp,
    ):
        servers = {"on": on, "off": off}
        requests = {}
        for label, server in servers.items():
            name = serving.register(server.url, auth, model)
            requests[label] = serving.bodies(name, images, auth)
            for kind, _ in CASES:  # warm-up
                body, headers = requests[label][kind]
                serving.wrk_run(server.url, body, headers, 2, 1, Path(tmp))
        for round_ in range(args.rounds):
            order = ["on", "off"] if round_ % 2 == 0 else ["off", "on"]
            for kind, connections in CASES:
                for label in order:
                    server = servers[label]
                    body, headers = requests[label][kind]
                    before = server.cpu_seconds()
                    found = serving.wrk_run(
                        server.url, body, headers, connections, args.seconds, Path(tmp)
                    )
                    used = server.cpu_seconds() - before
                    count = max(found["requests"], 1)
                    if found["status"] or found["timeout"]:
                        print(f"  {label} {kind} c{connections}: errors {found}")
                    key_ = (label, kind, connections)
                    cpu.setdefault(key_, []).append(used * 1e3 / count)
                    rps.setdefault(key_, []).append(
                        count / (found["duration_us"] / 1e6)
                    )
            print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    print(
        "\nbody    conns  fast path  CPU ms/request: median [min-max]   "
        "requests/s: median [min-max]"
    )
    for kind, connections in CASES:
        for label in ("on", "off"):
            c, r = cpu[(label, kind, connections)], rps[(label, kind, connections)]
            print(
                f"{kind:7} {connections:5}  {label:9}  "
                f"{statistics.median(c):.3f} [{min(c):.3f}-{max(c):.3f}]"
                f"{'':17}{statistics.median(r):7.0f} [{min(r):.0f}-{max(r):.0f}]"
            )
        pairs = zip(
            cpu[("off", kind, connections)], cpu[("on", kind, connections)], strict=True
        )
        diffs = sorted((b - a) * 1e3 for b, a in pairs)
        print(
            f"{'':15}off - on, paired by round: median {statistics.median(diffs):.0f} "
            f"us, range {diffs[0]:.0f} to {diffs[-1]:.0f} us"
        )


if __name__ == "__main__":
    main()

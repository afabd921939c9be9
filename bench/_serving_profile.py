"""Where the time of one inference request goes (docs/inference.md, "Where
the time goes"): a helper, not a benchmark of record.

Runs the app as ``python -m bnncore_service`` does (uvicorn, httptools and
uvloop when installed, or ``--http h11 --loop asyncio``, the same ASGI
wrapper and middleware) in one process, with ``time.perf_counter_ns``
wrappers put around the steps from the outside (the service's code is not
changed), registers the MNIST BNN, and has ``wrk`` send requests on **one**
connection (JSON, then binary). Prints, per step, the median time per
request and how many times it ran per request. Inclusive steps (a middleware
includes everything inside it) are marked; the wrappers themselves add about
a microsecond each.

Run: ``python -m bench._serving_profile [--seconds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from bench import serving

Records = dict[str, list[int]]
RECORDS: Records = defaultdict(list)
HOPS: Records = defaultdict(list)
CPU: Records = defaultdict(list)
"""CPU time of the calling thread in the synchronous steps (less sensitive
than wall time to other processes on a loaded machine)."""


def _wrap_sync(owner: Any, attr: str, label: str) -> None:
    original = getattr(owner, attr)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start, cpu = time.perf_counter_ns(), time.thread_time_ns()
        try:
            return original(*args, **kwargs)
        finally:
            RECORDS[label].append(time.perf_counter_ns() - start)
            CPU[label].append(time.thread_time_ns() - cpu)

    setattr(owner, attr, timed)


def _wrap_async(owner: Any, attr: str, label: str) -> None:
    original = getattr(owner, attr)

    @functools.wraps(original)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter_ns()
        try:
            return await original(*args, **kwargs)
        finally:
            RECORDS[label].append(time.perf_counter_ns() - start)

    setattr(owner, attr, timed)


def _wrap_hop(owner: Any, attr: str, label: str, first: int = 0) -> None:
    """Times a ``run_in_threadpool``-like call minus the function it runs:
    the hop to the worker thread and back (the function is argument
    ``first`` when the owner's attribute is a bound method)."""
    original = getattr(owner, attr)

    async def hop(*args: Any, **kwargs: Any) -> Any:
        ran: list[int] = []
        fn = args[first]

        def inner(*inner_args: Any, **inner_kwargs: Any) -> Any:
            start = time.perf_counter_ns()
            try:
                return fn(*inner_args, **inner_kwargs)
            finally:
                ran.append(time.perf_counter_ns() - start)

        start = time.perf_counter_ns()
        result = await original(*args[:first], inner, *args[first + 1 :], **kwargs)
        HOPS[label].append(time.perf_counter_ns() - start - sum(ran))
        return result

    setattr(owner, attr, hop)


def instrument() -> None:
    """Puts the wrappers in place (before the app is built)."""
    import fastapi.dependencies.utils as dependencies
    import fastapi.routing as routing
    import uvicorn.protocols.http.h11_impl as h11_impl
    from starlette.requests import Request

    import bnncore_service.inference.handlers as handlers  # both roles run them
    import bnncore_service.inference.serving as serving_module
    from bnncore_service import auth, limits, logs, metrics, server, uploads
    from bnncore_service.inference.scheduler import Scheduler

    _wrap_sync(
        server.LimitedH11Protocol, "data_received", "h11: parse the bytes received"
    )
    _wrap_async(
        h11_impl.RequestResponseCycle, "send", "h11: write the answer (2 calls)"
    )
    if server.HAVE_HTTPTOOLS:
        import uvicorn.protocols.http.httptools_impl as httptools_impl

        _wrap_sync(
            server.LimitedHttpToolsProtocol,
            "data_received",
            "httptools: parse the bytes received",
        )
        _wrap_async(
            httptools_impl.RequestResponseCycle,
            "send",
            "httptools: write the answer (2 calls)",
        )
    _wrap_async(logs.RequestLog, "__call__", "middleware RequestLog, inclusive")
    _wrap_async(metrics.MetricsMiddleware, "__call__", "middleware Metrics, inclusive")
    _wrap_async(uploads.DeferredBody, "__call__", "middleware DeferredBody, inclusive")
    _wrap_async(auth.ApiKeyAuth, "__call__", "middleware ApiKeyAuth, inclusive")
    _wrap_sync(auth.ApiKeyAuth, "authorize", "auth: the key check")
    _wrap_async(limits.BodySizeLimit, "__call__", "middleware BodySizeLimit, inclusive")
    _wrap_async(handlers, "infer", "route handler infer, inclusive")
    _wrap_async(Request, "body", "body read (await request.body())")
    _wrap_sync(handlers, "split_body", "binary framing (split_body)")
    _wrap_sync(handlers, "parse_body", "JSON parse + validation (pydantic)")
    _wrap_sync(handlers, "parse_oip", "JSON parse (orjson fast path)")
    _wrap_sync(handlers, "decode_oip", "checks + tensor build (decode_oip)")
    _wrap_sync(handlers, "encode_oip_binary", "encode outputs")
    _wrap_sync(handlers, "_json", "JSON answer (orjson) + Response")
    _wrap_sync(handlers, "encode_body", "binary answer framing")
    _wrap_async(serving_module.InferenceService, "record", "version lookup (record)")
    _wrap_async(serving_module.InferenceService, "cost", "request cost (cached)")
    _wrap_async(serving_module.InferenceService, "served", "served(): weights + cache")
    _wrap_async(serving_module.InferenceService, "infer", "infer(), inclusive")
    _wrap_sync(serving_module.Served, "predict", "engine (Served.predict)")
    _wrap_hop(handlers, "run_in_threadpool", "thread hop: route (decode, encode)")
    _wrap_hop(serving_module, "run_in_threadpool", "thread hop: registry lookups")
    _wrap_hop(
        dependencies, "run_in_threadpool", "thread hop: FastAPI sync dependencies"
    )
    _wrap_async(routing, "solve_dependencies", "FastAPI dependencies, inclusive")
    _wrap_hop(Scheduler, "run", "thread hop: inference pool", first=1)


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads (Linux), by Python thread name
    (threads Python did not start, e.g. the engine's and TensorFlow's, as
    ``native <tid>``)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    found: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        name = names.get(int(task.name), f"native {task.name}")
        found[name] = (int(fields[11]) + int(fields[12])) / tick
    return found


class TimedApp:
    """The ASGI app, timed as a whole (inclusive)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        start = time.perf_counter_ns()
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                RECORDS["ASGI app, inclusive"].append(time.perf_counter_ns() - start)


def summary(requests: int) -> list[tuple[str, float, float | None, float]]:
    """(step, median µs, median CPU µs or None, calls per request), in the
    order first recorded."""
    rows = []
    for records in (RECORDS, HOPS):
        for label, times in records.items():
            if times:
                cpu = CPU.get(label)
                rows.append(
                    (
                        label,
                        statistics.median(times) / 1e3,
                        statistics.median(cpu) / 1e3 if cpu else None,
                        len(times) / max(requests, 1),
                    )
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._serving_profile")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--cprofile", type=int, default=0, help="also cProfile the event loop: top N"
    )
    parser.add_argument("--http", default="auto", help="auto, httptools or h11")
    parser.add_argument("--loop", default="auto", help="auto, uvloop or asyncio")
    args = parser.parse_args(argv)
    key = secrets.token_urlsafe(16)
    data = tempfile.TemporaryDirectory(prefix="bnn-profile-")
    os.environ.update(
        BNN_API_KEYS=key,
        BNN_DATA_DIR=str(Path(data.name) / "data"),
        BNN_LOG_LEVEL="warning",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    instrument()
    import uvicorn

    from bnncore_service.logs import configure_logging
    from bnncore_service.server import ConnectionCap, _app_for_role, uvicorn_options

    app = _app_for_role()
    settings = app.state.settings
    options = uvicorn_options(settings, args.http, args.loop)
    run: Any = asyncio.run
    if options.pop("loop") == "uvloop":
        import uvloop

        run = uvloop.run
    configure_logging(settings.log_format, settings.log_level)
    port = serving._free_port()
    config = uvicorn.Config(
        TimedApp(ConnectionCap(app, options["http"])),
        host=serving.HOST,
        port=port,
        log_level="warning",
        log_config=None,
        **options,
    )
    server = uvicorn.Server(config)
    url = f"http://{serving.HOST}:{port}"
    auth = {"Authorization": f"Bearer {key}"}
    results: dict[str, Any] = {}

    def drive() -> None:
        try:
            while not server.started:
                time.sleep(0.1)
            name = serving.register(url, auth, serving.mnist_model())
            images = np.random.default_rng(0).random((1, 28, 28, 1), "float32")
            with tempfile.TemporaryDirectory() as tmp:
                for kind in ("json", "binary"):
                    body, headers = serving.bodies(name, images, auth)[kind]
                    serving.wrk_run(url, body, headers, 1, 1, Path(tmp))  # warm-up
                    RECORDS.clear()
                    HOPS.clear()
                    CPU.clear()
                    load = serving.load_average()
                    cpu, threads = time.process_time(), thread_cpu()
                    found = serving.wrk_run(
                        url, body, headers, 1, args.seconds, Path(tmp)
                    )
                    count = max(found["requests"], 1)
                    cpu = (time.process_time() - cpu) / count
                    after = thread_cpu()
                    by_thread = {
                        name: (after[name] - threads.get(name, 0.0)) / count
                        for name in after
                    }
                    results[kind] = (found, load, cpu, summary(count), by_thread)
        finally:
            server.should_exit = True

    thread = threading.Thread(target=drive)
    thread.start()
    if args.cprofile:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.runcall(run, server.serve())
        thread.join()
        stats = pstats.Stats(profile).sort_stats("tottime")
        stats.print_stats(args.cprofile)
    else:
        run(server.serve())
        thread.join()
    data.cleanup()
    print(f"machine: {serving.machine()}")
    for kind, (found, load, cpu, rows, by_thread) in results.items():
        print(
            f"\n{kind}: {found['requests']} requests on 1 connection, wrk p50 "
            f"{found['p50_us'] / 1e3:.2f} ms, p99 {found['p99_us'] / 1e3:.2f} ms; "
            f"server CPU time {cpu * 1e3:.2f} ms per request (all threads); "
            f"load average before {load}"
        )
        print(
            "| step | median µs (wall) | median µs (CPU) | calls per request |\n"
            "|---|---:|---:|---:|"
        )
        for label, median, cpu, calls in rows:
            shown = "" if cpu is None else f"{cpu:.1f}"
            print(f"| {label} | {median:.1f} | {shown} | {calls:.2f} |")
        print("\n| thread (by name) | CPU µs per request |\n|---|---:|")
        for name, seconds in sorted(by_thread.items(), key=lambda x: -x[1]):
            if seconds > 0:
                print(f"| {name} | {seconds * 1e6:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

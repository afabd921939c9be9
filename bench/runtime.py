"""The TensorFlow-free runtime against ``bnncore.engine``: import time, memory
and cold start, on the MNIST BNN and QuickNet (224×224), in one run.

Each measurement runs in a fresh Python process, so nothing is cached or
already imported:

* **import**: ``import bnncore_runtime`` vs ``import bnncore`` (which the
  engine needs, and which imports Keras and TensorFlow), timed inside the
  process, wall and CPU time (the CPU time depends less on what else the
  machine runs); the best of several processes (NumPy alone for reference),
  with compiled bytecode cached as for an installed package (in a temporary
  ``PYTHONPYCACHEPREFIX``, filled by a first process). ``import
  bnncore_runtime`` imports nothing else (its names are imported on first
  use), so the import of everything ``load`` needs, NumPy included
  (``from bnncore_runtime import load``), is timed too: what a process pays
  before it can load a model;
* **RSS**: the process's resident memory (``/proc/self/statm``) after the
  model is loaded and after its first answer, and the peak (``VmHWM``);
* **cold start**: from the parent starting the process to the child holding
  its first answer (one sample): interpreter start, imports, loading the
  export (runtime: ``bnncore_runtime.load``; engine:
  ``bnncore.export.load`` then ``bnncore.engine.compile``) and one predict.

Both answer from the same export, with the same bits (checked). The targets
of issue 20 are judged at the end: the import at most 100 ms, the MNIST BNN
process at most 60 MB, QuickNet's at most its weights plus 80 MB.

``--replicas`` measures the service instead: ``python -m bnncore_service`` started
on a store holding the MNIST BNN (registered, bnncore weights uploaded), as
an inference replica (``BNN_ROLE=inference``) and as a full one: from
starting the process to ``/v2/health/ready`` answering 200 (wall, and the
server's own CPU time then: user + system from ``/proc/<pid>/stat``, which
other processes on the machine inflate far less than the wall time), and to
its first OIP answer on the model (both replicas give the same bits,
checked), and the server's RSS then. The target: an inference replica ready
in 0.5 s. ``--python PY --app DIR`` runs the replicas with another
interpreter and the service's modules from ``DIR`` (e.g. the image-like
environment ``python -m bench.image_size --work W`` leaves in ``W/venv`` and
``W/app``: only what the image installs).

Usage::

    python -m bench.runtime            # 5 processes per import, 3 per start
    python -m bench.runtime --quick    # fewer processes
    python -m bench.runtime --replicas [--quick] [--write-docs]
        [--python W/venv/bin/python --app W/app]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "runtime.md"
MARKERS = ("<!-- bench:runtime:start -->", "<!-- bench:runtime:end -->")
REPLICA_MARKERS = ("<!-- bench:replicas:start -->", "<!-- bench:replicas:end -->")
READY_TARGET_S = 0.5
MB = 2**20
IMPORT_TARGET_S = 0.100
MNIST_TARGET_BYTES = 60 * MB
QUICKNET_SLACK_BYTES = 80 * MB

_PRELUDE = """
import json, os, sys, time
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
def peak():  # VmHWM: the peak since exec (ru_maxrss counts the parent's too)
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024
"""

_IMPORT = (
    _PRELUDE
    + """
start, cpu = time.perf_counter(), time.process_time()
import {module}
print(json.dumps({{"seconds": time.perf_counter() - start,
                  "cpu": time.process_time() - cpu}}))
"""
)

_RUNTIME = (
    _PRELUDE
    + """
import numpy as np
import bnncore_runtime
model = bnncore_runtime.load(sys.argv[1])
loaded = rss()
y = model.predict(np.load(sys.argv[2]))
answered = time.time()
np.save(sys.argv[3], y)
print(json.dumps({"answered": answered, "rss_loaded": loaded,
                  "rss_answered": rss(), "peak": peak(),
                  "weights": model.memory_bytes}))
"""
)

_ENGINE = (
    _PRELUDE
    + """
import numpy as np
import bnncore
model = bnncore.export.load(sys.argv[1])
packed = bnncore.engine.compile(model)
del model
loaded = rss()
y = packed.predict(np.load(sys.argv[2]))
answered = time.time()
np.save(sys.argv[3], y)
print(json.dumps({"answered": answered, "rss_loaded": loaded,
                  "rss_answered": rss(), "peak": peak(),
                  "weights": packed.weight_bytes}))
"""
)


# Compiled bytecode is cached (outside the repository) as an installed package
# has it, even where the environment sets PYTHONDONTWRITEBYTECODE.
_PYCACHE = tempfile.mkdtemp(prefix="bench-runtime-pycache-")
atexit.register(shutil.rmtree, _PYCACHE, ignore_errors=True)  # no leftovers


def _child(code: str, *args: str) -> tuple[dict[str, Any], float]:
    """Runs ``code`` in a fresh interpreter; its JSON line and the wall time
    at which the parent started it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPYCACHEPREFIX": _PYCACHE}  # fmt: skip
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.time()
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{result.stderr[-3000:]}")
    line = result.stdout.strip().splitlines()[-1]
    return json.loads(line), started


IMPORTS = {
    "numpy": "numpy",
    "bnncore_runtime": "bnncore_runtime",
    "bnncore_runtime.load": "bnncore_runtime.model",  # what load needs
    "bnncore": "bnncore",
}
"""What is timed: the label and the module imported."""


def import_seconds(module: str, processes: int) -> tuple[float, float]:
    """Best ``import module`` wall and CPU times over fresh processes (after
    one that fills the bytecode cache)."""
    module = IMPORTS.get(module, module)
    _child(_IMPORT.format(module=module))
    runs = [_child(_IMPORT.format(module=module))[0] for _ in range(processes)]
    return min(r["seconds"] for r in runs), min(r["cpu"] for r in runs)


def cold_starts(
    code: str, directory: Path, x: Path, out: Path, processes: int
) -> dict[str, Any]:
    """Median cold start and the memory of the last process."""
    seconds = []
    for _ in range(processes):
        found, started = _child(code, str(directory), str(x), str(out))
        seconds.append(found["answered"] - started)
    return {**found, "cold_start": statistics.median(seconds)}


def _exports(directory: Path, models: list[str]) -> dict[str, tuple[Path, tuple]]:
    """Exports of the benchmark models (random weights, randomized batch norms)."""
    import bnncore
    from bench.engine import _randomize_bn, mnist_bnn

    builders = {
        "MNIST BNN": mnist_bnn,
        "QuickNet 224": lambda: bnncore.zoo.QuickNet(input_shape=(224, 224, 3)),
    }
    found = {}
    for name in models:
        model = builders[name]()
        _randomize_bn(model)
        target = directory / name.replace(" ", "_")
        bnncore.export.save(model, target)
        found[name] = (target, tuple(model.inputs[0].shape[1:]))
    return found


def _ms(seconds: float) -> str:
    """Milliseconds, with a decimal below 10 ms (a lazy import takes less than 1)."""
    return f"{seconds * 1e3:.1f} ms" if seconds < 0.01 else f"{seconds * 1e3:.0f} ms"


def _times(slow: float, fast: float) -> str:
    """How many times ``fast`` fits in ``slow`` (beyond 1000: just that)."""
    ratio = slow / fast if fast > 0 else float("inf")
    return "> 1000×" if ratio > 1000 else f"{ratio:.1f}×"


def _mb(value: float) -> str:
    return f"{value / MB:.1f} MB"


def render(imports: dict[str, tuple[float, float]], rows: list[dict[str, Any]]) -> str:
    lines = [
        "| | runtime | engine (bnncore) | engine / runtime |",
        "|---|---|---|---|",
    ]
    for what, index in (("wall", 0), ("CPU", 1)):
        rt, en = imports["bnncore_runtime"][index], imports["bnncore"][index]
        lines.append(
            f"| `import`, {what} time (NumPy alone: "
            f"{_ms(imports['numpy'][index])}) | {_ms(rt)} | "
            f"{_ms(en)} | {_times(en, rt)} |"
        )
    for what, index in (("wall", 0), ("CPU", 1)):
        if "bnncore_runtime.load" not in imports:
            break
        rt, en = imports["bnncore_runtime.load"][index], imports["bnncore"][index]
        lines.append(
            f"| `import` of all that `load` needs (NumPy included), {what} time "
            f"| {_ms(rt)} | {_ms(en)} | {_times(en, rt)} |"
        )
    for row in rows:
        rt, en = row["runtime"], row["engine"]
        name = row["model"]
        lines += [
            f"| {name}: RSS after load | {_mb(rt['rss_loaded'])} | "
            f"{_mb(en['rss_loaded'])} | {en['rss_loaded'] / rt['rss_loaded']:.1f}× |",
            f"| {name}: RSS after the first answer (peak) | "
            f"{_mb(rt['rss_answered'])} ({_mb(rt['peak'])}) | "
            f"{_mb(en['rss_answered'])} ({_mb(en['peak'])}) | "
            f"{en['rss_answered'] / rt['rss_answered']:.1f}× |",
            f"| {name}: cold start to the first answer | "
            f"{rt['cold_start'] * 1e3:.0f} ms | {en['cold_start'] * 1e3:.0f} ms | "
            f"{en['cold_start'] / rt['cold_start']:.1f}× |",
        ]
    return "\n".join(lines)


def verdicts(
    imports: dict[str, tuple[float, float]], rows: list[dict[str, Any]]
) -> list[tuple[str, bool]]:
    wall = imports["bnncore_runtime"][0]
    found = [
        (
            f"import bnncore_runtime {_ms(wall)} wall "
            f"(target <= {IMPORT_TARGET_S * 1e3:.0f} ms)",
            wall <= IMPORT_TARGET_S,
        )
    ]
    if "bnncore_runtime.load" in imports:
        needed, numpy = imports["bnncore_runtime.load"], imports["numpy"]
        found.append(
            (
                f"import of all that load needs {needed[0] * 1e3:.0f} ms wall, "
                f"{needed[1] * 1e3:.0f} ms CPU, of which NumPy alone "
                f"{numpy[0] * 1e3:.0f} ms wall, {numpy[1] * 1e3:.0f} ms CPU "
                f"(target <= {IMPORT_TARGET_S * 1e3:.0f} ms)",
                needed[0] <= IMPORT_TARGET_S,
            )
        )
    for row in rows:
        rt = row["runtime"]
        worst = max(rt["rss_answered"], rt["peak"])
        if row["model"] == "MNIST BNN":
            limit = MNIST_TARGET_BYTES
        else:
            limit = rt["weights"] + QUICKNET_SLACK_BYTES
        found.append(
            (
                f"{row['model']}: runtime process {_mb(worst)} at most "
                f"(target <= {_mb(limit)})",
                worst <= limit,
            )
        )
        found.append((f"{row['model']}: runtime answer == engine answer", row["same"]))
    return found


def write_docs(text: str, markers: tuple[str, str] = MARKERS) -> None:
    """Replaces the block between the markers in docs/runtime.md."""
    doc = DOCS.read_text()
    start, end = doc.index(markers[0]), doc.index(markers[1])
    DOCS.write_text(doc[: start + len(markers[0])] + "\n" + text + "\n" + doc[end:])


def _replica_store(directory: Path) -> tuple[dict[str, Any], int]:
    """A store holding the MNIST BNN (random weights uploaded, as a bnncore
    file), written by a full app; an OIP request for it and its batch size."""
    import warnings

    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

    import bnncore
    from bench.engine import _randomize_bn, mnist_bnn
    from bnncore_service.config import Settings
    from bnncore_service.main import create_app

    model = mnist_bnn()
    _randomize_bn(model)
    with TestClient(create_app(Settings(data_dir=directory))) as client:
        body = {"name": "mnist", "definition": bnncore.export.to_definition(model)}
        assert client.post("/v2/models", json=body).status_code == 201
        put = client.put(
            "/v2/models/mnist/versions/1/weights",
            content=bnncore.export.to_bytes(model),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert put.status_code == 201, put.text
        name = client.get("/v2/models/mnist").json()["inputs"][0]["name"]
    x = np.random.default_rng(0).normal(size=(1, 28, 28, 1)).astype(np.float32)
    request = {"inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32",
                           "data": x.reshape(-1).tolist()}],
               "parameters": {"binary_data_output": True}}  # fmt: skip
    return request, 1


def replica_start(
    role: str,
    directory: Path,
    request: dict[str, Any],
    python: str = sys.executable,
    app: Path = ROOT,
) -> dict[str, Any]:
    """One ``python -m bnncore_service`` process of ``role`` on ``directory``: seconds
    from starting it to ready and to its first answer, the answer's bytes,
    its RSS then."""
    import socket

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BNN_")}
    env.update({"PYTHONPATH": str(app), "TF_CPP_MIN_LOG_LEVEL": "3",
                "BNN_DATA_DIR": str(directory),
                "BNN_ROLE": role, "BNN_LOG_LEVEL": "warning",
                # As deploy/ runs them: full replicas migrate the registry's
                # schema, inference replicas only check it.
                "BNN_MIGRATE": "off" if role == "inference" else "auto"})  # fmt: skip
    if app == ROOT:
        env["PYTHONPYCACHEPREFIX"] = _PYCACHE
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        # An image-like environment (bench.image_size) holds its own bytecode,
        # compiled at install as in the image, whose user cannot write there:
        # it is used as it is, and a module without it would be compiled at
        # every start, as in the image.
        env.pop("PYTHONPYCACHEPREFIX", None)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    process = subprocess.Popen(
        [python, "-m", "bnncore_service", "--port", str(port)],
        cwd=app, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the {role} replica exited")
            try:
                if httpx.get(f"{base}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.005)
        ready = time.perf_counter() - started
        ready_cpu = _cpu_seconds(process.pid)
        answer = httpx.post(f"{base}/v2/models/mnist/infer", json=request, timeout=120)
        answered = time.perf_counter() - started
        if answer.status_code != 200:
            raise RuntimeError(f"the {role} replica answered {answer.text}")
        pages = int(Path(f"/proc/{process.pid}/statm").read_text().split()[1])
        rss = pages * os.sysconf("SC_PAGE_SIZE")
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {"ready": ready, "ready_cpu": ready_cpu, "answered": answered,
            "rss": rss, "bytes": answer.content}  # fmt: skip


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its live children
    (``BNN_WORKERS`` > 1 forks workers), from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            with contextlib.suppress(OSError):  # it exited meanwhile
                seconds += _cpu_seconds(int(child))
    return seconds


def replicas(
    processes: int, python: str = sys.executable, app: Path = ROOT
) -> tuple[str, bool]:
    """The inference and full replicas' start-up (medians), as Markdown, and
    whether the inference replica met its ready target (the inference
    replica runs with ``python`` and the service's modules of ``app``)."""
    found: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        request, _ = _replica_store(Path(tmp))
        for role in ("inference", "full"):
            where = (python, app) if role == "inference" else (sys.executable, ROOT)
            replica_start(role, Path(tmp), request, *where)  # fills the cache
            found[role] = [
                replica_start(role, Path(tmp), request, *where)
                for _ in range(processes)
            ]
    med = {
        role: {
            k: statistics.median(r[k] for r in runs)
            for k in ("ready", "ready_cpu", "answered")
        }
        for role, runs in found.items()
    }
    best_cpu = {role: min(r["ready_cpu"] for r in runs) for role, runs in found.items()}
    rss = {role: runs[-1]["rss"] for role, runs in found.items()}
    same = found["inference"][-1]["bytes"] == found["full"][-1]["bytes"]
    ready = med["inference"]["ready"]
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [
        f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load "
        f"average after the run: {load}. Median of {processes} processes each "
        "(`python -m bnncore_service`, SQLite store, MNIST BNN); the inference "
        f"replica's interpreter: `{python}`"
        f"{'' if app == ROOT else f', its modules from `{app}`'}.",
        "",
        "| | inference replica | full replica | full / inference |",
        "|---|---|---|---|",
    ]
    for what, key in (("start to ready (wall)", "ready"),
                      ("start to ready (the server's CPU time)", "ready_cpu"),
                      ("start to first answer (wall)", "answered")):  # fmt: skip
        i, f = med["inference"][key], med["full"][key]
        lines.append(f"| {what} | {i * 1e3:.0f} ms | {f * 1e3:.0f} ms | {f / i:.1f}× |")
    i, f = best_cpu["inference"], best_cpu["full"]
    lines.append(
        f"| start to ready (the server's CPU time, best) | {i * 1e3:.0f} ms | "
        f"{f * 1e3:.0f} ms | {f / i:.1f}× |"
    )
    i, f = rss["inference"], rss["full"]
    lines += [
        f"| RSS after the first answer | {_mb(i)} | {_mb(f)} | {f / i:.1f}× |",
        "",
        f"- {'OK' if ready <= READY_TARGET_S else 'MISS'}: inference replica ready "
        f"in {ready * 1e3:.0f} ms (target <= {READY_TARGET_S * 1e3:.0f} ms)",
        f"- {'OK' if med['inference']['ready_cpu'] <= READY_TARGET_S else 'MISS'}: "
        f"inference replica's CPU time to ready "
        f"{med['inference']['ready_cpu'] * 1e3:.0f} ms (best "
        f"{best_cpu['inference'] * 1e3:.0f} ms; a start that runs on one thread "
        "takes at least its CPU time, however idle the machine)",
        f"- {'OK' if same else 'MISS'}: inference replica answer == full replica "
        "answer (bytes of the binary OIP response)",
    ]
    return "\n".join(lines), ready <= READY_TARGET_S and same


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark; exit code 1 if a target is missed."""
    parser = argparse.ArgumentParser(prog="python -m bench.runtime")
    parser.add_argument("--quick", action="store_true", help="fewer processes")
    parser.add_argument(
        "--write-docs", action="store_true", help="update docs/runtime.md"
    )
    parser.add_argument(
        "--models", nargs="+", choices=("mnist", "quicknet"),
        default=["mnist", "quicknet"], help="which models",
    )  # fmt: skip
    parser.add_argument(
        "--replicas", action="store_true",
        help="the service's start-up: inference vs full replica",
    )  # fmt: skip
    parser.add_argument(
        "--python", default=sys.executable,
        help="--replicas: the inference replica's interpreter",
    )  # fmt: skip
    parser.add_argument(
        "--app", type=Path, default=ROOT,
        help="--replicas: where the inference replica's service modules are",
    )  # fmt: skip
    args = parser.parse_args(argv if argv is not None else [])
    if args.replicas:
        text, ok = replicas(2 if args.quick else 5, args.python, args.app)
        print(text)
        if args.write_docs:
            write_docs(text, REPLICA_MARKERS)
            print(f"written to {DOCS}")
        return 0 if ok else 1
    imports_n, starts_n = (2, 1) if args.quick else (5, 3)
    names = {"mnist": "MNIST BNN", "quicknet": "QuickNet 224"}
    imports = {
        module: import_seconds(module, imports_n)
        for module in ("numpy", "bnncore_runtime", "bnncore_runtime.load", "bnncore")
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        exports = _exports(work, [names[m] for m in args.models])
        for name, (directory, shape) in exports.items():
            x = np.random.default_rng(0).normal(size=(1, *shape)).astype(np.float32)
            np.save(work / "x.npy", x)
            runtime = cold_starts(
                _RUNTIME, directory, work / "x.npy", work / "rt.npy", starts_n
            )
            engine = cold_starts(
                _ENGINE, directory, work / "x.npy", work / "en.npy", starts_n
            )
            same = bool(
                np.array_equal(np.load(work / "rt.npy"), np.load(work / "en.npy"))
            )
            rows.append({"model": name, "runtime": runtime, "engine": engine,
                         "same": same})  # fmt: skip
    from bnncore_runtime import isa

    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [
        f"Machine: {os.cpu_count()} CPUs, core level `{isa()}`, Python "
        f"{sys.version.split()[0]}, load average after the run: {load}. Import: "
        f"best of {imports_n} processes; cold start: median of {starts_n}.",
        "",
        render(imports, rows),
        "",
    ]
    ok = True
    for text, passed in verdicts(imports, rows):
        lines.append(f"- {'OK' if passed else 'MISS'}: {text}")
        ok &= passed
    table = "\n".join(lines)
    print(table)
    if args.write_docs:
        write_docs(table)
        print(f"written to {DOCS}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

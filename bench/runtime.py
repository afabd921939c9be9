"""The TensorFlow-free runtime against ``bnncore.engine``: import time, memory
and cold start, on the MNIST BNN and QuickNet (224×224), in one run.

Each measurement runs in a fresh Python process, so nothing is cached or
already imported:

* **import**: ``import bnncore_runtime`` vs ``import bnncore`` (which the
  engine needs, and which imports Keras and TensorFlow), timed inside the
  process, wall and CPU time (the CPU time depends less on what else the
  machine runs); the best of several processes (NumPy alone for reference),
  with compiled bytecode cached as for an installed package (in a temporary
  ``PYTHONPYCACHEPREFIX``, filled by a first process);
* **RSS**: the process's resident memory (``/proc/self/statm``) after the
  model is loaded and after its first answer, and the peak (``VmHWM``);
* **cold start**: from the parent starting the process to the child holding
  its first answer (one sample): interpreter start, imports, loading the
  export (runtime: ``bnncore_runtime.load``; engine:
  ``bnncore.export.load`` then ``bnncore.engine.compile``) and one predict.

Both answer from the same export, with the same bits (checked). The targets
of issue 20 are judged at the end: the import at most 100 ms, the MNIST BNN
process at most 60 MB, QuickNet's at most its weights plus 80 MB.

Usage::

    python -m bench.runtime            # 5 processes per import, 3 per start
    python -m bench.runtime --quick    # fewer processes
"""

from __future__ import annotations

import argparse
import json
import os
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


def import_seconds(module: str, processes: int) -> tuple[float, float]:
    """Best ``import module`` wall and CPU times over fresh processes (after
    one that fills the bytecode cache)."""
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
            f"{imports['numpy'][index] * 1e3:.0f} ms) | {rt * 1e3:.0f} ms | "
            f"{en * 1e3:.0f} ms | {en / rt:.1f}× |"
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
            f"import bnncore_runtime {wall * 1e3:.0f} ms wall "
            f"(target <= {IMPORT_TARGET_S * 1e3:.0f} ms)",
            wall <= IMPORT_TARGET_S,
        )
    ]
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


def write_docs(text: str) -> None:
    """Replaces the block between the markers in docs/runtime.md."""
    doc = DOCS.read_text()
    start, end = doc.index(MARKERS[0]), doc.index(MARKERS[1])
    DOCS.write_text(doc[: start + len(MARKERS[0])] + "\n" + text + "\n" + doc[end:])


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
    args = parser.parse_args(argv if argv is not None else [])
    imports_n, starts_n = (2, 1) if args.quick else (5, 3)
    names = {"mnist": "MNIST BNN", "quicknet": "QuickNet 224"}
    imports = {
        module: import_seconds(module, imports_n)
        for module in ("numpy", "bnncore_runtime", "bnncore")
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

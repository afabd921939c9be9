"""``bench/serving.py``'s QuickNet row and verdict, and the server CPU it
reads for worker processes (the whole process tree)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import serving


def _report(quicknet: serving.QuickNetRun) -> serving.Report:
    machine = serving.Machine(2, "test CPU", (1.0, 2.0, 3.0))
    run = serving.Run("binary", False, 1, 1, 2.0, 1000, 0, 0.8, 2.0, 1.5, 0.7)
    return serving.Report(machine, 0.1, [run], True, 0, [], quicknet)


@pytest.mark.parametrize(
    ("p50_ms", "engine_ms", "met"),
    [(12.3, 12.0, True), (12.9, 12.0, False)],
    ids=["0.3-ms-met", "0.9-ms-missed"],
)
def test_quicknet_row_and_its_overhead_verdict(
    p50_ms: float, engine_ms: float, met: bool
) -> None:
    quick = serving.QuickNetRun(
        requests=150,
        seconds=3.0,
        errors=0,
        p50_ms=p50_ms,
        p99_ms=20.0,
        engine_ms=engine_ms,
        server_cpu_ms=13.25,
        load_before=0.5,
    )
    text = serving.render(_report(quick))
    assert (
        f"| QuickNet 224, binary | off | 1 | 50 | 50 | {p50_ms:.2f} | 20.00 | 0 "
        "| 13.25 | 0.50 |"
    ) in text
    overhead = p50_ms - engine_ms
    verdicts = dict(serving.verdicts(_report(quick)))
    key = (
        f"QuickNet batch 1, binary, 1 connection: p50 {p50_ms:.2f} ms, in-process "
        f"engine {engine_ms:.2f} ms: server overhead {overhead:.2f} ms (target <= "
        "0.5 ms)"
    )
    assert verdicts[key] is met
    assert ("- met: " if met else "- MISSED: ") + key in text


def test_quicknet_errors_count_as_errors_under_load() -> None:
    quick = serving.QuickNetRun(10, 1.0, 2, 10.0, 12.0, 9.8, 11.0, 0.1)
    assert not dict(serving.verdicts(_report(quick)))["errors under load: 2 (target 0)"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_server_cpu_counts_the_worker_processes() -> None:
    """A child burning about 0.5 s of CPU is counted in its parent's tree
    (uvicorn's workers are children of the runner)."""
    burn = (
        "import time\n"
        "end = time.process_time() + 0.5\n"
        "while time.process_time() < end: pass\n"
        "time.sleep(30)"
    )

    def own() -> float:
        times = os.times()
        return times.user + times.system

    before, before_own = serving.process_tree_cpu_seconds(os.getpid()), own()
    child = subprocess.Popen([sys.executable, "-c", burn])
    try:
        deadline = time.monotonic() + 30
        alone = 0.0
        while time.monotonic() < deadline and alone < 0.45:
            time.sleep(0.2)
            alone = serving.process_tree_cpu_seconds(child.pid)
        assert alone >= 0.45, alone  # the child's own CPU, by itself
        tree = serving.process_tree_cpu_seconds(os.getpid()) - before
        # The tree holds this process and the child (clock ticks: 10 ms).
        assert tree >= alone + (own() - before_own) - 0.05, (tree, alone)
    finally:
        child.kill()
        child.wait()

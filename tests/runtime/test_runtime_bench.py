"""bench/runtime.py's judging and table, on hand-made measurements."""

from __future__ import annotations

from bench import runtime as B

MB = 2**20


def _row(model: str, rss: float, peak: float, weights: int, same: bool = True):
    run = {"rss_loaded": rss, "rss_answered": rss, "peak": peak,
           "weights": weights, "cold_start": 0.5}  # fmt: skip
    engine = {**run, "rss_loaded": 10 * rss, "rss_answered": 10 * rss,
              "cold_start": 5.0}  # fmt: skip
    return {"model": model, "runtime": run, "engine": engine, "same": same}


def test_targets_are_judged_on_the_worst_memory_and_the_wall_import():
    imports = {"numpy": (0.05, 0.04), "bnncore_runtime": (0.09, 0.08),
               "bnncore": (2.0, 3.0)}  # fmt: skip
    rows = [
        _row("MNIST BNN", 30 * MB, 61 * MB, 15_000),
        _row("QuickNet 224", 40 * MB, 84 * MB, 4 * MB, same=False),
    ]
    found = B.verdicts(imports, rows)
    # import 90 ms <= 100 ms; MNIST peak 61 MB > 60 MB; the answers agree;
    # QuickNet 84 MB <= 4 MB of weights + 80 MB; its answers differ.
    assert [ok for _, ok in found] == [True, False, True, True, False]
    assert "target <= 84.0 MB" in found[3][0]
    table = B.render(imports, rows)
    assert "| `import`, wall time (NumPy alone: 50 ms) | 90 ms | 2000 ms | 22.2× |" in (
        table
    )
    assert (
        "| MNIST BNN: cold start to the first answer | 500 ms | 5000 ms | 10.0× |"
        in (table)
    )

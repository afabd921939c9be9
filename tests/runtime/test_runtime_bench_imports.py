"""bench/runtime.py on a lazy ``import bnncore_runtime``: the import of all that
``load`` needs is reported and judged too, and sub-millisecond imports and
huge ratios print readably (hand-made measurements)."""

from __future__ import annotations

from bench import runtime as B

MB = 2**20


def _row(model: str) -> dict[str, object]:
    run = {"rss_loaded": 30 * MB, "rss_answered": 30 * MB, "peak": 30 * MB,
           "weights": 15_000, "cold_start": 0.5}  # fmt: skip
    engine = {**run, "cold_start": 5.0}
    return {"model": model, "runtime": run, "engine": engine, "same": True}


def test_the_import_of_what_load_needs_is_reported_and_judged():
    imports = {"numpy": (0.080, 0.060), "bnncore_runtime": (0.0004, 0.0003),
               "bnncore_runtime.load": (0.120, 0.090),
               "bnncore": (2.0, 1.8)}  # fmt: skip
    found = B.verdicts(imports, [_row("MNIST BNN")])
    assert found[0] == ("import bnncore_runtime 0.4 ms wall (target <= 100 ms)", True)
    text, ok = found[1]
    # 120 ms > 100 ms: missed, and NumPy's own share is named.
    assert not ok
    assert text == (
        "import of all that load needs 120 ms wall, 90 ms CPU, of which NumPy "
        "alone 80 ms wall, 60 ms CPU (target <= 100 ms)"
    )
    table = B.render(imports, [_row("MNIST BNN")])
    assert (
        "| `import`, wall time (NumPy alone: 80 ms) | 0.4 ms | 2000 ms | > 1000× |"
        in (table)
    )
    assert (
        "| `import` of all that `load` needs (NumPy included), CPU time | 90 ms | "
        "1800 ms | 20.0× |" in table
    )


def test_without_that_measurement_the_verdicts_are_as_before():
    imports = {"numpy": (0.05, 0.04), "bnncore_runtime": (0.09, 0.08),
               "bnncore": (2.0, 3.0)}  # fmt: skip
    found = B.verdicts(imports, [_row("MNIST BNN")])
    assert [text.split(" ")[0] for text, _ in found] == ["import", "MNIST", "MNIST"]
    assert "needs" not in B.render(imports, [_row("MNIST BNN")])

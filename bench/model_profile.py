"""How long profiling a QuickNet-sized model takes, next to building it.

Builds ``bnncore.zoo.QuickNet`` (13.2 M parameters, 224×224×3 input), then
times :func:`bnncore.models.profile` (best and median of several runs), the JSON
document and each renderer. Claim checked: profiling takes well under a second
(budget: 1 s), a small fraction of the time it takes to build the model.

Run: ``python -m bench model_profile``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

BUDGET_SECONDS = 1.0
REPEATS = 5


def _timed(fn: Callable[[], Any], repeats: int = REPEATS) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def main() -> int:
    """Runs the benchmark; returns 1 if profiling misses the budget."""
    from bnncore import analysis, models
    from bnncore.zoo import QuickNet

    start = time.perf_counter()
    model = QuickNet()
    build = time.perf_counter() - start

    times, report = _timed(lambda: models.profile(model))
    best, median = min(times), statistics.median(times)
    t = report.totals
    print(
        f"model: {model.name}, {t.params:,} params ({t.inference_params:,} with "
        f"BatchNorm folded), {t.memory_bytes:,} bytes, {t.macs:,} MACs, "
        f"{sum(1 for _ in report.walk())} rows"
    )
    print(f"  build the model          {build:8.3f} s")
    print(f"  profile (best of {REPEATS})      {best:8.3f} s   (median {median:.3f} s)")
    json_times, _ = _timed(report.to_json)
    print(f"  to_json (best)           {min(json_times):8.4f} s")
    for fmt in ("text", "csv", "markdown", "html"):
        fmt_times, _ = _timed(lambda f=fmt: analysis.render(report, f))
        print(f"  render {fmt:<9} (best)   {min(fmt_times):8.4f} s")
    print(
        f"  profile / build          {best / build:8.3f}   "
        f"(profiling is {build / best:.0f}x faster than building)"
    )
    ok = median < BUDGET_SECONDS
    verdict = "OK" if ok else "OVER BUDGET"
    print(f"  budget {BUDGET_SECONDS:.1f} s for the median profile: {verdict}")
    return 0 if ok else 1

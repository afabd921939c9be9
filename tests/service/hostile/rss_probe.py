"""Run in a fresh process by ``test_hostile_memory_process.py``: for each
definition given (JSON on stdin), how much one ``predict_on_batch`` of
``rows`` rows grows the resident set, beside the estimate of that run.

Linux only: ``/proc/self/clear_refs`` (``5``) resets the peak resident set
(``VmHWM``) to the current one before the run.
"""

from __future__ import annotations

import gc
import json
import sys

import numpy as np
from pydantic import TypeAdapter

from bnncore_service.builder import build, plan
from bnncore_service.config import Settings
from bnncore_service.estimate import estimate_with_peak, request_cost
from bnncore_service.schemas.definitions import Definition, Sequential


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(field)


def main() -> None:
    settings = Settings(data_dir="unused")
    for case in json.load(sys.stdin):
        spec = TypeAdapter(Definition).validate_python(case["definition"])
        offset = 1 if isinstance(spec, Sequential) else 0
        result, peak = estimate_with_peak(spec.graph(), settings, offset)
        cost = request_cost(peak, result)
        model = build(plan(spec, settings), settings)
        rows = case["rows"]
        shape = (rows, *model.inputs[0].shape[1:])
        x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        model.predict_on_batch(x[:1])  # traced and warm: threads, kernels
        gc.collect()
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        before = _status("VmRSS")
        y = model.predict_on_batch(x)
        growth = _status("VmHWM") - before
        # The estimate counts the caller's input array, which exists already.
        estimate = cost.fixed_bytes + rows * cost.row_bytes - x.nbytes
        print(json.dumps({"name": case["name"], "growth": growth,
                          "estimate": estimate, "out": int(np.size(y))}))  # fmt: skip
        del model, y
        gc.collect()


if __name__ == "__main__":
    main()

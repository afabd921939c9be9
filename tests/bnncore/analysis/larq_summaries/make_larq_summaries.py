"""Writes the ``*.txt`` fixtures: what real Larq 0.14 prints for each model.

Run in the peer environment (tf-keras 2.16 + larq 0.14 + larq-zoo 2.4), from the
repository root:

    TF_USE_LEGACY_KERAS=1 .venv-peers/bin/python \\
        tests/bnncore/analysis/larq_summaries/make_larq_summaries.py

Each ``<case>.txt`` holds the lines ``larq.models.summary(model, print_fn=...,
include_macs=...)`` passed to ``print_fn``, joined with newlines. The models
are defined once, in ``../larq_summary_models.py``. ``readable_numbers.json``
holds ``[number, text]`` pairs of Larq's number formatting (the summary's
parameter and MAC counts).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import larq
import tensorflow as tf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from larq_summary_models import CASES, MODELS  # noqa: E402


def main() -> None:
    for stem, (model_name, include_macs) in CASES.items():
        tf.keras.backend.clear_session()
        model = MODELS[model_name](larq, tf.keras)
        printed: list[str] = []
        larq.models.summary(model, print_fn=printed.append, include_macs=include_macs)
        (HERE / f"{stem}.txt").write_text("\n".join(printed) + "\n")
        print(f"{stem}.txt: {len(printed)} print_fn calls")
    # Larq Zoo's QuickNet (larq-zoo 2.4, weights=None): its totals table, and
    # the Total row of its layer table (its layer names differ from bnncore's).
    import larq_zoo

    tf.keras.backend.clear_session()
    printed = []
    larq.models.summary(larq_zoo.sota.QuickNet(weights=None), print_fn=printed.append)
    total_row = next(line for line in printed[0].splitlines() if "| Total" in line)
    (HERE / "quicknet_larq_zoo.txt").write_text(f"{total_row}\n{printed[1]}\n")
    print("quicknet_larq_zoo.txt")

    numbers = [0, 1, 7, 10, 99.5, 468, 999, 999.4, 999.5, 1000, 1234, 9999, 99_949]
    numbers += [99_950, 93_556, 999_000, 999_499, 999_500, 1_000_000, 2_599_552]
    numbers += [123_456_789, 5e9, 7.77e12, 999.4e12, 999.5e12, 1e15, 1.234e16]
    pairs = [[n, larq.models._number_as_readable_str(n)] for n in numbers]
    (HERE / "readable_numbers.json").write_text(json.dumps(pairs, indent=1) + "\n")


if __name__ == "__main__":
    main()

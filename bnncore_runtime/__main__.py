"""``python -m bnncore_runtime DIR [X.npy OUT.npy]``: describe an export, and
run it on a batch.

Prints the model's inputs, outputs, the instruction-set level and the plan;
with ``X.npy`` and ``OUT.npy``, predicts ``X`` and saves the result. Exit code
2 (and the reason on stderr) for an export the runtime refuses.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import bnncore_runtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bnncore_runtime",
        description="Describe an exported bnncore model and run it without TensorFlow.",
    )
    parser.add_argument("export", help="directory of definition.json and weights")
    parser.add_argument("inputs", nargs="?", help="a .npy batch to predict")
    parser.add_argument("output", nargs="?", help="where to save the prediction")
    parser.add_argument("--threads", type=int, default=None, help="worker threads")
    args = parser.parse_args(argv)
    if (args.inputs is None) != (args.output is None):
        parser.error("give both X.npy and OUT.npy, or neither")
    try:
        model = bnncore_runtime.load(args.export, threads=args.threads)
    except (ValueError, OSError) as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 2
    print(repr(model))
    for spec in model.inputs:
        print(f"input  {spec.name}: {list(spec.shape)} {spec.dtype}")
    for spec in model.outputs:
        print(f"output {spec.name}: {list(spec.shape)} {spec.dtype}")
    print(model.describe())
    if args.inputs is not None:
        x = np.load(args.inputs, allow_pickle=False)
        np.save(args.output, model.predict(x), allow_pickle=False)
        print(f"saved {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

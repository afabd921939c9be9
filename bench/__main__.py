"""Runs the benchmarks found in ``bench/``.

Usage::

    python -m bench                 # every benchmark
    python -m bench model_profile   # those whose name contains an argument
    python -m bench --list          # the names only
    python -m bench serving --quick # options after the names go to the benchmarks
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import sys
import time

import bench


def available() -> list[str]:
    """Names of the benchmark modules in ``bench/`` (helpers ``_*`` excluded)."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules(bench.__path__)
        if not info.name.startswith("_")
    )


def main(argv: list[str] | None = None) -> int:
    """Runs the selected benchmarks; returns the worst exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="run benchmarks containing these")
    parser.add_argument("--list", action="store_true", help="list and exit")
    # Options the runner does not know (--quick, --lce on, ...) belong to the
    # selected benchmarks; each gets them, never the runner's own arguments.
    args, options = parser.parse_known_args(argv)

    names = available()
    if args.list:
        print("\n".join(names))
        return 0
    if args.names:
        selected = [n for n in names if any(a in n for a in args.names)]
        if not selected:
            print(
                f"No benchmark matches {args.names}; available: {', '.join(names)}",
                file=sys.stderr,
            )
            return 2
    else:
        selected = names

    worst = 0
    for name in selected:
        module = importlib.import_module(f"bench.{name}")
        run = getattr(module, "main", None)
        if not callable(run):
            print(f"== {name}: no main(), skipped")
            continue
        print(f"== {name}")
        start = time.perf_counter()
        takes_argv = bool(inspect.signature(run).parameters)
        if options and not takes_argv:
            print(f"== {name}: takes no options, {options} ignored")
        code = (run(options) if takes_argv else run()) or 0
        print(f"== {name}: exit {code} ({time.perf_counter() - start:.1f} s)\n")
        worst = max(worst, code)
    return worst


if __name__ == "__main__":
    sys.exit(main())

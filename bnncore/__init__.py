"""bnncore: binarized neural networks on Keras 3.

Migrating from Larq: ``import bnncore as lq`` gives the same public names
(``lq.quantizers.SteSign``, ``lq.layers.QuantConv2D``, ``lq.constraints.WeightClip``,
``lq.math.sign``, ...).

``import bnncore`` imports every module below (and so TensorFlow, and registers
the layers and quantizers with Keras). The one exception is the ``bnncore``
command itself (the console script, or ``python -m bnncore``): there each
module is imported on first use, so that :mod:`bnncore.cli` answers ``--help``
without TensorFlow and imports TensorFlow with its native start-up lines
filtered before it imports the library.
"""

import itertools as _itertools
import os as _os
import sys as _sys
import typing as _typing

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

__all__ = [
    "activations",
    "analysis",
    "callbacks",
    "constraints",
    "context",
    "engine",
    "export",
    "layers",
    "math",
    "metrics",
    "models",
    "optimizers",
    "quantized_variable",
    "quantizers",
    "utils",
    "zoo",
]


def _run_as_the_command() -> bool:
    """Whether this process is the ``bnncore`` command: the console script
    (``sys.argv[0]`` is its path) or ``python -m bnncore`` (its package is
    imported while ``sys.argv[0]`` is ``"-m"``)."""
    argv = _sys.argv
    if not argv:
        return False
    if argv[0] == "-m":
        pairs = _itertools.pairwise(_sys.orig_argv)
        return any(a == "-m" and b == "bnncore" for a, b in pairs)
    return _os.path.basename(argv[0]) == "bnncore"


if _run_as_the_command() and not _typing.TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        """``bnncore.NAME`` imports the module on first use."""
        if name not in __all__:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        return importlib.import_module(f"{__name__}.{name}")

else:
    from bnncore import (
        activations,
        analysis,
        callbacks,
        constraints,
        context,
        engine,
        export,
        layers,
        math,
        metrics,
        models,
        optimizers,
        quantized_variable,
        quantizers,
        utils,
        zoo,
    )

"""bnncore: binarized neural networks on Keras 3.

Migrating from Larq: ``import bnncore as lq`` gives the same public names
(``lq.quantizers.SteSign``, ``lq.layers.QuantConv2D``, ``lq.constraints.WeightClip``,
``lq.math.sign``, ...).
"""

import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

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

"""The steps of a compiled plan (see :mod:`bnncore_runtime.steps`), and the one
step only a Keras model has: the whole model run by Keras."""

from __future__ import annotations

from typing import Any

import numpy as np

from bnncore.engine.graph import ValueId
from bnncore_runtime.steps import (
    BinaryKernel,
    BinaryStep,
    ChainStep,
    ConvSpec,
    Env,
    FloatConvStep,
    FloatStep,
    PackedTensor,
    PackStep,
    Step,
)

__all__ = [
    "BinaryKernel",
    "BinaryStep",
    "ChainStep",
    "ConvSpec",
    "Env",
    "FloatConvStep",
    "FloatStep",
    "PackStep",
    "PackedTensor",
    "Step",
    "WholeModelStep",
]


class WholeModelStep(Step):
    """The model run by Keras as a whole (structure not readable as a graph).

    Reads the value ``INPUT`` (an array or list of arrays, passed as given) and
    writes the model's output structure to ``OUTPUT``.
    """

    kind = "keras"
    INPUT: ValueId = ("whole-model-input",)
    OUTPUT: ValueId = ("whole-model-output",)

    def __init__(self, model: Any) -> None:
        self.model = model

    def run(self, env: Env, threads: int) -> None:
        env.floats[self.OUTPUT] = self.model(env.floats[self.INPUT], training=False)

    @property
    def weight_bytes(self) -> int:
        return sum(
            int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize
            for w in self.model.weights
        )

    def describe(self) -> str:
        return f"keras [whole model {self.model.name}]"

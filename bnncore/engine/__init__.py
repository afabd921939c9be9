"""Packed inference engine: binary layers on bit-packed data in a compiled core.

Example:
    >>> import bnncore
    >>> packed = bnncore.engine.compile(model)   # any built Keras model
    >>> y = packed.predict(x)                     # equals model(x) up to float32
    >>> print(packed.describe())                  # which layers run on packed bits

See ``docs/engine.md`` for what is accelerated and how exactness is kept. The
core, the plan's steps, the planner and whole-plan programs live in the
TensorFlow-free package :mod:`bnncore_runtime` (see ``docs/runtime.md``); this
package reads Keras models into them.
"""

from bnncore.engine.agreement import Agreement, StepAgreement, verify
from bnncore.engine.kernels import set_kernel
from bnncore.engine.runtime import PackedModel, compile, kernel_info
from bnncore_runtime import _kernels as _kernels  # the core, shared with the runtime

__all__ = [
    "Agreement",
    "PackedModel",
    "StepAgreement",
    "compile",
    "kernel_info",
    "set_kernel",
    "verify",
]

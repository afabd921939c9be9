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

The engine's modules are imported on first use of one of its names, so
``import bnncore`` works where the core could not be built; then the first
use raises :class:`bnncore_runtime.kernels.CoreUnavailableError`, which says
how to build it.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bnncore.engine.agreement import Agreement, StepAgreement, verify
    from bnncore.engine.kernels import set_kernel
    from bnncore.engine.runtime import PackedModel, compile, kernel_info
    from bnncore_runtime.kernels import _kernels as _kernels  # the shared core

_HOME = {
    "Agreement": "bnncore.engine.agreement",
    "StepAgreement": "bnncore.engine.agreement",
    "verify": "bnncore.engine.agreement",
    "set_kernel": "bnncore.engine.kernels",
    "PackedModel": "bnncore.engine.runtime",
    "compile": "bnncore.engine.runtime",
    "kernel_info": "bnncore.engine.runtime",
    "_kernels": "bnncore_runtime.kernels",  # the core, shared with the runtime
}


def __getattr__(name: str) -> Any:
    """The engine's names, imported from their modules on first use."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from bnncore_runtime import kernels

    kernels.require_core()  # the clear error where the core was not built
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


__all__ = [
    "Agreement",
    "PackedModel",
    "StepAgreement",
    "compile",
    "kernel_info",
    "set_kernel",
    "verify",
]

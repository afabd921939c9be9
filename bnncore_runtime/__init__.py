"""A TensorFlow-free runtime for exported 1-bit models: NumPy and the compiled
core only.

Example:
    >>> import bnncore_runtime
    >>> model = bnncore_runtime.load("exported/")   # bnncore.export.save(...)
    >>> probs = model.predict(images)                # NumPy in, NumPy out
    >>> model.inputs, model.outputs, model.isa, model.memory_bytes

Every layer of the model must be one the compiled core runs (see
``docs/runtime.md``); :func:`load` refuses any other, naming it. The plan is
the one ``bnncore.engine.compile`` makes for the same model (one planner, one
core), so predictions are the engine's, bit for bit. Nothing here imports
Keras or TensorFlow.
"""

from typing import TYPE_CHECKING, Any

from bnncore_runtime.container import WeightsFileError
from bnncore_runtime.definition import DefinitionError
from bnncore_runtime.kernels import core_available, isa, set_isa, supported_isas
from bnncore_runtime.layers import SUPPORTED_LAYERS, UnsupportedLayerError

if core_available() or TYPE_CHECKING:
    from bnncore_runtime.model import Model, TensorSpec, from_bytes, load
else:  # the export format's modules still work (bnncore.export uses them)

    def __getattr__(name: str) -> Any:
        """The names that need the compiled core (the model's, and the core
        itself for ``from bnncore_runtime import _kernels``) raise its error."""
        if name in ("Model", "TensorSpec", "from_bytes", "load", "_kernels"):
            from bnncore_runtime.kernels import require_core

            require_core()  # raises CoreUnavailableError
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SUPPORTED_LAYERS",
    "DefinitionError",
    "Model",
    "TensorSpec",
    "UnsupportedLayerError",
    "WeightsFileError",
    "from_bytes",
    "isa",
    "load",
    "set_isa",
    "supported_isas",
]

__version__ = "0.1.0"

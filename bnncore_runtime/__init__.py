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

``import bnncore_runtime`` imports nothing else (not even NumPy): each public
name is imported from its module the first time it is used (PEP 562), so a
process pays for the reader, the planner and the core when it loads a model,
and a process that only needs, say, :class:`WeightsFileError` never does.
"""

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy: True)
if TYPE_CHECKING:
    from typing import Any

    from bnncore_runtime.container import WeightsFileError
    from bnncore_runtime.definition import DefinitionError
    from bnncore_runtime.kernels import isa, set_isa, supported_isas
    from bnncore_runtime.layers import SUPPORTED_LAYERS, UnsupportedLayerError
    from bnncore_runtime.model import Model, TensorSpec, from_bytes, load

_EXPORTS = {
    "WeightsFileError": "container",
    "DefinitionError": "definition",
    "isa": "kernels",
    "set_isa": "kernels",
    "supported_isas": "kernels",
    "SUPPORTED_LAYERS": "layers",
    "UnsupportedLayerError": "layers",
    "Model": "model",
    "TensorSpec": "model",
    "from_bytes": "model",
    "load": "model",
}
"""Each public name and the submodule that defines it."""

_NEEDS_CORE = frozenset({"Model", "TensorSpec", "from_bytes", "load"})
"""The names that need the compiled core: without it they raise its error
(``CoreUnavailableError``); the export format's modules still work
(``bnncore.export`` uses them)."""


def __getattr__(name: str) -> "Any":
    """Imports a public name's module on first use (and keeps the name); a
    submodule's name imports it (``bnncore_runtime.kernels``), as when the
    package imported them all."""
    if name in _NEEDS_CORE:
        from bnncore_runtime.kernels import require_core

        require_core()  # raises CoreUnavailableError
    module = _EXPORTS.get(name)
    if module is None:
        if not name.startswith("_"):  # a submodule, as ``bnncore_runtime.kernels``
            try:
                return importlib.import_module(f"{__name__}.{name}")
            except ModuleNotFoundError as error:
                if error.name != f"{__name__}.{name}":
                    raise  # the submodule exists; something it imports does not
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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

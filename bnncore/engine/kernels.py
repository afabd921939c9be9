"""The compiled core's Python side: :mod:`bnncore_runtime.kernels`, shared by
the engine and the TensorFlow-free runtime (one core per process)."""

from bnncore_runtime import _kernels
from bnncore_runtime.kernels import *  # noqa: F403
from bnncore_runtime.kernels import __all__ as _all

__all__ = ["_kernels", *_all]

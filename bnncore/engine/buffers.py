"""Reuse of intermediate arrays between calls: :mod:`bnncore_runtime.buffers`."""

from bnncore_runtime.buffers import (
    ALIGNMENT,
    SMALL_BYTES,
    BufferPool,
    aligned_empty,
    empty,
)

__all__ = ["ALIGNMENT", "SMALL_BYTES", "BufferPool", "aligned_empty", "empty"]

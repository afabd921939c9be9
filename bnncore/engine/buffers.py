"""Reuse of intermediate arrays between ``predict`` calls.

Large fresh arrays come from the operating system as untouched pages, and
writing them costs a page fault per 4 KiB (at batch 8, QuickNet spent a fifth
of its time there). A :class:`BufferPool` keeps the intermediate arrays of one
call for the next call with the same shapes. The kernels allocate through
:func:`empty`, which takes from the pool of the ``predict`` call running in the
current thread (a context variable), or falls back to ``np.empty``.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = ["ALIGNMENT", "BufferPool", "aligned_empty", "empty"]

_CURRENT: contextvars.ContextVar[_Lease | None] = contextvars.ContextVar(
    "bnncore_engine_buffers", default=None
)


ALIGNMENT = 64  # bytes: a cache line, and what non-temporal AVX stores need


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``np.empty`` whose data starts on a 64-byte boundary.

    NumPy aligns large arrays to 16 bytes only; the compiled core writes large
    outputs with aligned non-temporal stores when it can.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialized 64-byte-aligned array, reused from the running call's
    pool when possible."""
    lease = _CURRENT.get()
    if lease is None:
        return aligned_empty(shape, dtype)
    return lease.take(tuple(int(d) for d in shape), np.dtype(dtype))


class _Lease:
    """The arrays one call took; given back at its end except those returned."""

    def __init__(self, pool: BufferPool) -> None:
        self.pool = pool
        self.taken: list[np.ndarray] = []

    def take(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        array = self.pool._pop((shape, dtype.str))
        if array is None:
            array = aligned_empty(shape, dtype)
        self.taken.append(array)
        return array


class BufferPool:
    """Arrays kept between calls, by (shape, dtype); thread-safe.

    Only the shapes of the most recent call's input are kept: a call with new
    input shapes empties the pool, so memory does not grow with the number of
    batch sizes seen.

    Args:
        max_bytes: Upper bound on the bytes kept.
    """

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._free: dict[tuple[Any, ...], list[np.ndarray]] = {}
        self._bytes = 0
        self._key: Any = None

    def _pop(self, key: tuple[Any, ...]) -> np.ndarray | None:
        with self._lock:
            stack = self._free.get(key)
            if not stack:
                return None
            array = stack.pop()
            self._bytes -= array.nbytes
            return array

    @contextmanager
    def lease(self, input_key: Any) -> Iterator[_Lease]:
        """Makes :func:`empty` use this pool in the current thread for the block.

        Args:
            input_key: Identifies the call's input shapes.

        Yields:
            The lease; call :meth:`give_back` with the arrays the call returns.
        """
        with self._lock:
            if input_key != self._key:
                self._free.clear()
                self._bytes = 0
                self._key = input_key
        lease = _Lease(self)
        token = _CURRENT.set(lease)
        try:
            yield lease
        finally:
            _CURRENT.reset(token)

    def give_back(self, lease: _Lease, kept: list[np.ndarray]) -> None:
        """Returns the lease's arrays to the pool, except those sharing memory
        with ``kept`` (the results handed to the caller)."""
        with self._lock:
            for array in lease.taken:
                if any(np.may_share_memory(array, k) for k in kept):
                    continue
                if self._bytes + array.nbytes > self.max_bytes:
                    continue
                self._free.setdefault((array.shape, array.dtype.str), []).append(array)
                self._bytes += array.nbytes
        lease.taken.clear()

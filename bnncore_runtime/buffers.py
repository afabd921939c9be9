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
import math
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
SMALL_BYTES = 1 << 16  # smaller arrays keep NumPy's own (16-byte) alignment


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``np.empty`` whose data starts on a 64-byte boundary (arrays of 64 KiB
    or more; smaller ones as NumPy allocates them).

    NumPy aligns large arrays to 16 bytes only; the compiled core writes large
    outputs with aligned non-temporal stores when it can.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(int(d) for d in shape) * dtype.itemsize
    if nbytes < SMALL_BYTES:  # reading the address costs more than it saves
        return np.empty(shape, dtype=dtype)
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialized 64-byte-aligned array, reused from the running call's
    pool when possible."""
    lease = _CURRENT.get()
    if lease is None:
        return aligned_empty(shape, dtype)
    return lease.take(tuple(map(int, shape)), np.dtype(dtype))


class _Lease:
    """The arrays one call took; given back at its end except those returned.

    A lease takes the pool's whole free list when it starts, so taking an
    array needs no lock; a call running at the same time allocates its own.
    """

    def __init__(self, pool: BufferPool, free: dict[tuple[Any, ...], list[np.ndarray]]):
        self.pool = pool
        self.free = free
        self.taken: list[np.ndarray] = []

    def take(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        stack = self.free.get((shape, dtype.str))
        array = stack.pop() if stack else aligned_empty(shape, dtype)
        self.taken.append(array)
        return array


def _root(array: np.ndarray) -> int:
    """Identity of the allocation an array views."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return id(array)


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
        self._key: Any = None

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
                self._free = {}
                self._key = input_key
            free, self._free = self._free, {}
        lease = _Lease(self, free)
        token = _CURRENT.set(lease)
        try:
            yield lease
        finally:
            _CURRENT.reset(token)

    def give_back(self, lease: _Lease, kept: list[np.ndarray]) -> None:
        """Returns the lease's arrays to the pool, except those sharing an
        allocation with ``kept`` (the results handed to the caller)."""
        kept_roots = {_root(k) for k in kept if isinstance(k, np.ndarray)}
        with self._lock:
            pool = self._free
            total = sum(a.nbytes for stack in pool.values() for a in stack)
            arrays = [a for stack in lease.free.values() for a in stack]
            arrays += [a for a in lease.taken if _root(a) not in kept_roots]
            for array in arrays:
                if total + array.nbytes > self.max_bytes:
                    continue
                pool.setdefault((array.shape, array.dtype.str), []).append(array)
                total += array.nbytes
        lease.taken.clear()
        lease.free = {}

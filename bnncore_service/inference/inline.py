"""Which request steps run on the event loop instead of a worker thread.

Decoding a small body and encoding a small answer cost less than the thread
hop around them: each hop (``run_in_threadpool``) takes 0.3-0.4 ms of wall
time on the 2-core machine and wakes a second thread to hand the GIL over and
back. Measured there (docs/inference.md, "Where the time goes"), one thread,
orjson fast path:

============================  ==========================
JSON body (MNIST rows)        parse + checks + tensors
============================  ==========================
15 KiB (1 row)                0.2-0.3 ms
30 KiB (2 rows)               0.3 ms
59 KiB (4 rows)               0.6 ms
118 KiB (8 rows)              1.1 ms
236 KiB (16 rows)             several ms
============================  ==========================

A TensorFlow Serving body (``instances`` as nested lists, validated by
pydantic) is slower per byte: 0.35 ms at 16 KiB (1 row), 2 ms at 65 KiB, so
its bound is :data:`INLINE_TFS_BODY_BYTES`.

Encoding an answer as JSON takes about 40 µs per 1000 values (0.16 ms for
4096, 0.7 ms for 16384).

So a body up to :data:`INLINE_BODY_BYTES` is decoded on the loop and an
answer of up to :data:`INLINE_OUTPUT_VALUES` values is encoded there: the
loop is blocked at most about 0.6 ms, about two hops' cost. Larger work keeps
the worker thread, so the loop takes its turns while it runs (Python hands
the GIL over every 5 ms). A binary body's tensors are a copy, cheap at any
size; the bound is still by bytes received, one rule for both encodings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "INLINE_BODY_BYTES",
    "INLINE_OUTPUT_VALUES",
    "INLINE_TFS_BODY_BYTES",
    "inline_answer",
    "inline_body",
]

INLINE_BODY_BYTES = 64 * 1024
"""Largest body (bytes received, JSON and binary parts) decoded on the loop."""

INLINE_TFS_BODY_BYTES = 24 * 1024
"""Largest TensorFlow Serving predict body decoded on the loop."""

INLINE_OUTPUT_VALUES = 8192
"""Most output values (every output, every row) encoded on the loop."""


def inline_body(raw: bytes, limit: int = INLINE_BODY_BYTES) -> bool:
    """Whether a request body is small enough to decode on the event loop
    (``limit``: :data:`INLINE_BODY_BYTES`, or :data:`INLINE_TFS_BODY_BYTES`
    for a TensorFlow Serving body)."""
    return len(raw) <= limit


def inline_answer(outputs: Sequence[np.ndarray]) -> bool:
    """Whether an answer is small enough to encode on the event loop."""
    return sum(int(np.size(output)) for output in outputs) <= INLINE_OUTPUT_VALUES

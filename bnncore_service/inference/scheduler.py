"""Bounded execution of inferences off the event loop, and dynamic batching.

:class:`Scheduler` runs model executions on a small thread pool
(``BNN_INFERENCE_WORKERS`` at once). At most ``BNN_MAX_PENDING_INFERENCES`` may
be running or queued; one more is refused at once with 503 (never an unbounded
queue). A request waits at most ``BNN_INFERENCE_TIMEOUT_S`` for its result
(504 after): a job still queued is cancelled, a running one cannot be
interrupted and keeps its slot until it ends, so a stuck model saturates into
503s instead of piling up work.

:class:`Batcher` (``BNN_BATCHING=true``) merges concurrent small
requests for the same model and engine into one execution of up to
``BNN_BATCH_MAX_SIZE`` rows and gives each request its own rows back. A
request that finds no execution of its group running runs at once (no wait:
alone, batching costs nothing); requests that arrive while one runs are
merged and run as soon as it ends, or after at most
``BNN_BATCH_MAX_WAIT_MS``, or when they fill a batch. A caller may cap a
group's rows lower (``max_rows``: the rows whose memory fits
``BNN_MAX_REQUEST_BYTES``), so a merged batch never costs more than one
request may.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from bnncore_service.inference.tensors import InferenceError

__all__ = ["Batcher", "Scheduler", "Timed"]

T = TypeVar("T")


class Timed(list[np.ndarray]):
    """The outputs of one model execution and how long it ran (``run_s``,
    seconds); :class:`Batcher` gives each merged request its rows as a
    :class:`Timed` of the same run time."""

    run_s: float = 0.0


class Scheduler:
    """The inference thread pool with admission control and a timeout."""

    def __init__(self, workers: int, max_pending: int, timeout_s: float) -> None:
        self.workers = workers
        self.max_pending = max_pending
        self.timeout_s = timeout_s
        self.executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="bnn-infer"
        )
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        """Jobs running or queued."""
        return self._pending

    def _release(self, _: Any = None) -> None:
        with self._lock:
            self._pending -= 1

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queues ``fn(*args)`` on the pool (thread-safe, never blocks).

        Raises:
            InferenceError: 503 when ``max_pending`` jobs are running or queued.
        """
        with self._lock:
            if self._pending >= self.max_pending:
                raise InferenceError(
                    503,
                    f"{self._pending} inferences are already running or queued "
                    f"(limit BNN_MAX_PENDING_INFERENCES={self.max_pending}); retry "
                    "later",
                    reason="queue_full",
                )
            self._pending += 1
        try:
            future = self.executor.submit(fn, *args)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)
        return future

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs ``fn(*args)`` on the pool and waits for it, at most the timeout.

        Raises:
            InferenceError: 503 (queue full) or 504 (timeout).
        """
        future = self.submit(fn, *args)
        try:
            return await asyncio.wait_for(
                asyncio.wrap_future(future), timeout=self.timeout_s
            )
        except TimeoutError:
            future.cancel()  # only succeeds while still queued
            raise InferenceError(
                504,
                f"inference did not finish within {self.timeout_s:g} s "
                "(BNN_INFERENCE_TIMEOUT_S); the service is overloaded or the "
                "batch is too large",
                reason="timeout",
            ) from None

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Waiting:
    arrays: list[np.ndarray]
    rows: int
    future: asyncio.Future[Any]


@dataclass
class _Queue:
    items: list[_Waiting] = field(default_factory=list)
    rows: int = 0
    timer: asyncio.TimerHandle | None = None
    execute: Execute | None = None


Execute = Callable[[list[np.ndarray], int], Awaitable[list[np.ndarray]]]


class Batcher:
    """Merges concurrent small requests for one model into larger batches.

    Requests are grouped by a key (model and engine). A request that finds
    no execution of its group running runs at once. Otherwise it waits with
    the others that arrive meanwhile; they run together when the running
    execution ends, when they hold ``max_size`` rows, or ``max_wait_s``
    after the first of them, whichever comes first. A request with
    ``max_size`` rows or more is not batched.
    """

    def __init__(self, max_size: int, max_wait_s: float) -> None:
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._queues: dict[Any, _Queue] = {}
        self._running: dict[Any, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def accepts(self, rows: int) -> bool:
        """Whether a request of ``rows`` rows is batched."""
        return rows < self.max_size

    async def submit(
        self,
        key: Any,
        arrays: list[np.ndarray],
        rows: int,
        execute: Execute,
        max_rows: int | None = None,
    ) -> list[np.ndarray]:
        """Adds a request to its group and waits for its own output rows.

        Args:
            key: The group (requests with equal keys may be merged).
            arrays: The request's inputs (batch first).
            rows: Its batch size.
            execute: ``await execute(arrays, rows)`` runs a merged batch.
            max_rows: Most rows of a merged batch for this group, when lower
                than ``max_size`` (a request of more rows runs alone).
        """
        capacity = self.max_size if max_rows is None else min(self.max_size, max_rows)
        if rows >= capacity:
            return await execute(arrays, rows)
        loop = asyncio.get_running_loop()
        queue = self._queues.setdefault(key, _Queue())
        if queue.rows + rows > capacity:
            self._flush(key, execute)  # no room: run what waits, start anew
            queue = self._queues.setdefault(key, _Queue())
        waiting = _Waiting(arrays, rows, loop.create_future())
        queue.items.append(waiting)
        queue.rows += rows
        queue.execute = execute
        if queue.rows >= capacity or not self._running.get(key):
            self._flush(key, execute)  # full, or nothing to wait for
        elif queue.timer is None:
            queue.timer = loop.call_later(self.max_wait_s, self._flush, key, execute)
        return await waiting.future

    def _flush(self, key: Any, execute: Execute) -> None:
        queue = self._queues.pop(key, None)
        if queue is None or not queue.items:
            return
        if queue.timer is not None:
            queue.timer.cancel()
        self._running[key] = self._running.get(key, 0) + 1
        task = asyncio.ensure_future(self._run(queue.items, queue.rows, execute))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._ended(key))

    def _ended(self, key: Any) -> None:
        """An execution of ``key`` ended: what waited for it runs now."""
        left = self._running.get(key, 1) - 1
        if left > 0:
            self._running[key] = left
        else:
            self._running.pop(key, None)
        queue = self._queues.get(key)
        if queue is not None and queue.execute is not None:
            self._flush(key, queue.execute)

    @staticmethod
    async def _run(items: list[_Waiting], rows: int, execute: Execute) -> None:
        try:
            if len(items) == 1:
                merged = items[0].arrays
            else:
                merged = [
                    np.concatenate(parts, axis=0)
                    for parts in zip(*(item.arrays for item in items), strict=True)
                ]
            outputs = await execute(merged, rows)
        except BaseException as error:
            for item in items:
                if not item.future.done():
                    item.future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        start = 0
        for item in items:
            end = start + item.rows
            if not item.future.done():
                rows_of_item = [out[start:end] for out in outputs]
                if isinstance(outputs, Timed):
                    timed = Timed(rows_of_item)
                    timed.run_s = outputs.run_s
                    rows_of_item = timed
                item.future.set_result(rows_of_item)
            start = end

"""The dynamic batching policy (``bnncore_service/inference/scheduler.py``):
a request that finds its model idle runs at once, requests
that arrive while it runs are merged and run as soon as it ends (well before
``max_wait_s``), and each caller gets exactly its own rows back."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from bnncore_service.config import Settings
from bnncore_service.inference.scheduler import Batcher


def test_the_default_wait_is_at_most_a_millisecond() -> None:
    """Off by default (measured: it does not pay on 2 cores, docs/inference.md),
    and bounded by 1 ms when turned on."""
    settings = Settings()
    assert settings.batching is False
    assert 0 < settings.batch_max_wait_ms <= 1.0


def test_a_lone_request_runs_at_once_not_after_the_wait() -> None:
    batcher = Batcher(max_size=8, max_wait_s=30.0)
    seen: list[int] = []

    async def execute(arrays: list[np.ndarray], rows: int) -> list[np.ndarray]:
        seen.append(rows)
        return [arrays[0] + 1]

    async def run() -> tuple[list[np.ndarray], float]:
        start = time.perf_counter()
        out = await batcher.submit("m", [np.zeros((1, 3), np.float32)], 1, execute)
        return out, time.perf_counter() - start

    (out,), elapsed = asyncio.run(run())
    assert seen == [1] and out.tolist() == [[1.0, 1.0, 1.0]]
    assert elapsed < 5.0  # the 30 s wait is not taken


def test_requests_arriving_while_one_runs_are_merged_when_it_ends() -> None:
    """The first request runs alone; the five that arrive while it runs form
    one batch that runs as soon as it ends (not after the 30 s bound), and
    every caller gets its own rows: row i of the input is i, the output is
    10 * input + 1 (a NumPy oracle per caller)."""
    batcher = Batcher(max_size=16, max_wait_s=30.0)
    seen: list[list[float]] = []

    async def run() -> tuple[list[list[np.ndarray]], float]:
        release = asyncio.Event()

        async def execute(arrays: list[np.ndarray], rows: int) -> list[np.ndarray]:
            seen.append(arrays[0][:, 0].tolist())
            if len(seen) == 1:
                await release.wait()  # the first execution is still running
            return [arrays[0] * 10 + 1]

        inputs = [np.full((1 + i % 2, 2), i, np.float32) for i in range(6)]
        start = time.perf_counter()
        first = asyncio.ensure_future(batcher.submit("m", [inputs[0]], 1, execute))
        await asyncio.sleep(0.01)
        rest = [
            asyncio.ensure_future(batcher.submit("m", [x], len(x), execute))
            for x in inputs[1:]
        ]
        await asyncio.sleep(0.01)
        assert len(seen) == 1  # the others wait for the running execution
        release.set()
        results = await asyncio.gather(first, *rest)
        for x, (out,) in zip(inputs, results, strict=True):
            np.testing.assert_array_equal(out, x * 10 + 1)
        return results, time.perf_counter() - start

    _, elapsed = asyncio.run(run())
    assert seen == [[0.0], [1.0, 1.0, 2.0, 3.0, 3.0, 4.0, 5.0, 5.0]]
    assert elapsed < 5.0


def test_a_full_batch_runs_without_waiting_for_the_running_one() -> None:
    batcher = Batcher(max_size=4, max_wait_s=30.0)
    seen: list[int] = []

    async def run() -> None:
        release = asyncio.Event()

        async def execute(arrays: list[np.ndarray], rows: int) -> list[np.ndarray]:
            seen.append(rows)
            if len(seen) == 1:
                await release.wait()
            return [arrays[0]]

        first = asyncio.ensure_future(
            batcher.submit("m", [np.zeros((1, 1))], 1, execute)
        )
        await asyncio.sleep(0.01)
        full = [
            asyncio.ensure_future(batcher.submit("m", [np.ones((1, 1))], 1, execute))
            for _ in range(4)
        ]
        await asyncio.gather(*full)  # ran while the first still runs
        assert seen == [1, 4]
        release.set()
        await first

    asyncio.run(run())

"""The build executor's bound (503 beyond it) and the LRU cache of built models."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from bnncore_service.config import Settings
from bnncore_service.runtime import Built, BusyError, ModelCache, Runtime


def test_builds_beyond_the_pending_limit_are_refused(tmp_path: Path) -> None:
    runtime = Runtime(
        Settings(data_dir=tmp_path, build_workers=1, max_pending_builds=2)
    )
    release = threading.Event()

    async def scenario() -> list[object]:
        first = asyncio.ensure_future(runtime.run(release.wait, 5))
        second = asyncio.ensure_future(runtime.run(release.wait, 5))
        await asyncio.sleep(0.05)
        with pytest.raises(BusyError, match="BNN_MAX_PENDING_BUILDS=2"):
            await runtime.run(release.wait, 5)
        release.set()
        results = list(await asyncio.gather(first, second))
        results.append(await runtime.run(lambda: "room again"))
        return results

    assert asyncio.run(scenario()) == [True, True, "room again"]
    runtime.close()


def test_cache_evicts_the_least_recently_used() -> None:
    cache = ModelCache(2)
    items = {key: Built(model=key, profile=None) for key in "abc"}
    cache.put("a", items["a"])
    cache.put("b", items["b"])
    assert cache.get("a") is items["a"]  # a is now the most recent
    cache.put("c", items["c"])
    assert cache.get("b") is None
    assert cache.keys() == ["a", "c"]
    assert (cache.hits, cache.misses) == (1, 1)

"""Per-process runtime: the bounded build executor and the model cache.

TensorFlow work (building a model, profiling it) runs on a small thread pool,
never on the event loop; at most ``BNN_MAX_PENDING_BUILDS`` jobs may be queued
or running, beyond which requests get 503 instead of waiting without bound.

A Keras model is a web of reference cycles (layers, their nodes, the model's
graph), so dropping the last reference to an evicted model frees nothing: its
weights stay allocated until the cyclic garbage collector runs, and a full
collection over the ~350,000 objects TensorFlow and Keras create at import
takes ~0.3 s while holding the GIL. So the cache
(:class:`~bnncore_service.model_cache.ModelCache`, one per process, shared by
reports and inference) collects after each eviction
(on the build thread that evicted, never on the event loop), and
:func:`freeze_startup_objects` moves the objects that exist at start-up into
the collector's permanent generation, once per process, which makes those
collections take milliseconds. ``keras.backend.clear_session()`` is not used:
it resets Keras' name counters, TensorFlow's default graph and its eager
kernel cache, which the models still cached and serving use; what it frees is
freed by the ``gc.collect()`` it ends with, which the cache runs itself.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from bnncore_service.builder import Plan, build
from bnncore_service.config import Settings
from bnncore_service.errors import BusyError
from bnncore_service.logs import log_event
from bnncore_service.model_cache import Built, ModelCache, model_key
from bnncore_service.store import StoredWeights

__all__ = ["Built", "BusyError", "ModelCache", "Runtime", "freeze_startup_objects"]

T = TypeVar("T")
log = logging.getLogger("bnncore_service.runtime")

_frozen = threading.Event()


def freeze_startup_objects() -> None:
    """Collects, then freezes every object alive now (``gc.freeze``), once per
    process.

    Objects frozen are never scanned again by the cyclic garbage collector, so
    later collections only walk what was created since (models, requests). The
    start-up objects (modules, TensorFlow's registries) live as long as the
    process anyway. Called from the app's lifespan; later apps in the same
    process (tests) do not freeze again.
    """
    if _frozen.is_set():
        return
    _frozen.set()
    import keras  # noqa: F401  (its objects are the ones worth freezing)

    gc.collect()
    gc.freeze()


class Runtime:
    """The executor and the cache of one app instance."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache = ModelCache(settings.model_cache_size)
        self.executor = ThreadPoolExecutor(
            max_workers=settings.build_workers, thread_name_prefix="bnn-build"
        )
        self._pending = 0
        self._uploads = 0
        self._lock = threading.Lock()
        self.builds = 0

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs blocking ``fn(*args)`` on the build executor.

        Raises:
            BusyError: ``BNN_MAX_PENDING_BUILDS`` jobs are already queued or running.
        """
        with self._lock:
            if self._pending >= self.settings.max_pending_builds:
                raise BusyError(
                    f"{self._pending} builds are already queued or running (limit "
                    f"BNN_MAX_PENDING_BUILDS={self.settings.max_pending_builds}); "
                    "retry later"
                )
            self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, fn, *args)
        finally:
            with self._lock:
                self._pending -= 1

    @contextmanager
    def upload_slot(self) -> Iterator[None]:
        """Holds one of the ``BNN_MAX_CONCURRENT_UPLOADS`` upload slots.

        Raises:
            BusyError: every slot is taken (→ 503 with ``Retry-After``).
        """
        with self._lock:
            if self._uploads >= self.settings.max_concurrent_uploads:
                raise BusyError(
                    f"{self._uploads} weights uploads are already in progress "
                    "(limit BNN_MAX_CONCURRENT_UPLOADS="
                    f"{self.settings.max_concurrent_uploads}); retry later"
                )
            self._uploads += 1
        try:
            yield
        finally:
            with self._lock:
                self._uploads -= 1

    def built(self, plan: Plan, weights: StoredWeights | None = None) -> Built:
        """The built model of a plan, from the cache or built now (blocking).

        Args:
            plan: The version's plan.
            weights: Its uploaded weights (``Store.weights(name, version)``);
                ``None`` serves the initial weights. The cache key includes
                their sha256, so a new upload is never served stale, and a
                model with uploaded weights is a separate build (the
                initial-weights model shared by identical definitions is never
                modified).
        """
        key = model_key(plan.content_hash, None if weights is None else weights.sha256)
        item = self.cache.get(key)
        if item is not None:
            return item
        from bnncore.models import profile

        start = time.perf_counter()
        model = build(plan, self.settings)
        built_s = time.perf_counter()
        with self._lock:
            self.builds += 1
        if weights is not None:
            from bnncore_service.weights import load_into

            load_into(model, weights.read(), self.settings)
        weighted_s = time.perf_counter()
        item = Built(
            model=model,
            profile=profile(model),
            weights_sha256=None if weights is None else weights.sha256,
        )
        log_event(
            log,
            logging.INFO,
            "model_built",
            "built model {key} ({params} parameters) in {build_ms} ms",
            key=plan.content_hash[:12],
            weights="initial" if weights is None else weights.sha256[:12],
            params=int(model.count_params()),
            build_ms=round((built_s - start) * 1000, 1),
            weights_ms=round((weighted_s - built_s) * 1000, 1),
            profile_ms=round((time.perf_counter() - weighted_s) * 1000, 1),
        )
        self.cache.put(key, item)
        return item

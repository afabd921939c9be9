"""Serving registered versions: loading (definition, uploaded weights, packed
engine) through the registry (``bnncore_service.registry``), keeping them in
the process's one model cache and running requests.

A version is served by a :class:`Served`: its Keras model (built by
``Runtime.built`` with the version's uploaded weights, if any) and, when the
model qualifies, its ``bnncore.engine.compile`` d packed twin, compiled once
per (definition, weights) pair. A model qualifies for the packed engine when it
compiles to a plan with at least one layer on packed bits; the others, and
requests with ``parameters.engine = "keras"``, run through TensorFlow
(``model.predict_on_batch``).

Before a request is decoded its version's :class:`~bnncore_service.peak.RequestCost`
is looked up (:meth:`InferenceService.cost`): the per-row peak and the
batch-independent bytes of running the model, from the analytic estimate of
its definition (nothing is built for it), or for a zoo model from the layers of
the built model. The codec refuses a batch whose cost is over
``BNN_MAX_REQUEST_BYTES`` (413) before converting its data, and a merged
dynamic batch is capped to the rows that fit.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from starlette.concurrency import run_in_threadpool

from bnncore_service.inference.scheduler import Batcher, Scheduler, Timed
from bnncore_service.inference.statistics import InferenceStatistics
from bnncore_service.inference.tensors import Decoded, InferenceError
from bnncore_service.logs import log_event
from bnncore_service.model_cache import model_key
from bnncore_service.peak import JSON_BYTES_PER_VALUE, RequestCost, keras_model_cost
from bnncore_service.records import StoredWeights, StoreError, VersionRecord
from bnncore_service.registry import Registry

if TYPE_CHECKING:
    from bnncore_service.config import Settings
    from bnncore_service.metrics import Metrics

# The definition schemas, the estimate and the builder import Keras: they are
# imported where a full replica uses them, so that an inference replica
# (bnncore_service/inference_app.py) can import this module without TensorFlow.

__all__ = ["InferenceService", "Served"]

log = logging.getLogger("service")


_COSTS_KEPT = 4096
"""Request costs cached (a few integers each, keyed by content hash)."""


def _collect_soon() -> None:
    """Frees evicted models: Keras models are reference cycles, which only the
    garbage collector frees (``bnncore_service.model_cache``). It runs on a
    worker thread, so the request that evicted does not wait; with the
    start-up objects frozen (``gc.freeze``) a collection takes milliseconds.
    """
    asyncio.get_running_loop().run_in_executor(None, gc.collect)


@dataclass
class Served:
    """A loaded version, ready to infer.

    Attributes:
        key: ``(content_hash, weights_sha256 or None)``.
        model: The Keras model.
        packed: Its packed-engine twin, or ``None`` when it does not qualify.
        packed_note: Why the model does not qualify (empty when it does).
    """

    key: tuple[str, str | None]
    model: Any
    packed: Any
    packed_note: str

    @classmethod
    def load(
        cls, key: tuple[str, str | None], model: Any, compile_packed: bool
    ) -> Served:
        """Wraps a built model, compiling its packed twin (blocking)."""
        if not compile_packed:
            return cls(key, model, None, "the packed engine is off (BNN_ENGINE=keras)")
        from bnncore import engine

        try:
            packed = engine.compile(model)
        except Exception as error:  # any model must still serve through Keras
            log_event(
                log,
                logging.WARNING,
                "packed_engine_failed",
                "the packed engine could not compile model {key}; it runs "
                "through Keras: {error}",
                key=key[0][:12],
                error=str(error),
            )
            return cls(key, model, None, f"the packed engine refused it: {error}")
        if not packed.binary_layers:
            return cls(key, model, None, "it has no binary layer to run on packed bits")
        return cls(key, model, packed, "")

    def engine_for(self, requested: str) -> str:
        """``"packed"`` or ``"keras"`` for a requested engine (auto/packed/keras).

        Raises:
            InferenceError: 400 for ``packed`` on a model that does not qualify.
        """
        if requested == "keras":
            return "keras"
        if self.packed is not None:
            return "packed"
        if requested == "packed":
            raise InferenceError(
                400,
                f"parameters.engine: received 'packed', but this model cannot run "
                f"on the packed engine: {self.packed_note}; use 'auto' or 'keras'",
            )
        return "keras"

    def predict(self, arrays: list[np.ndarray], engine: str) -> list[np.ndarray]:
        """Runs a batch (blocking): one array per model output, in order."""
        x: Any = arrays if len(arrays) > 1 else arrays[0]
        if engine == "packed":
            result = self.packed.predict(x)
        else:
            result = self.model.predict_on_batch(x)
        if isinstance(result, dict):
            result = [result[name] for name in self.model.output_names]
        elif not isinstance(result, list | tuple):
            result = [result]
        return [np.asarray(out) for out in result]


def _log_loaded(record: VersionRecord, served: Served, seconds: float) -> None:
    """``model_loaded`` and ``engine_chosen`` (INFO) for a version just loaded."""
    fields: dict[str, Any] = {
        "model": record.name,
        "version": record.version,
        "key": served.key[0][:12],
        "weights": (served.key[1] or "initial")[:12],
    }
    log_event(
        log,
        logging.INFO,
        "model_loaded",
        "loaded {model} version {version} in {load_ms} ms",
        **fields,
        load_ms=round(seconds * 1000, 1),
    )
    if served.packed is not None:
        engine = "packed"
        count = len(served.packed.binary_layers)
        reason = (
            f"it qualifies: {count} binary layer{'s' if count != 1 else ''} "
            f"on packed bits ({served.packed.isa})"
        )
    else:
        engine, reason = "keras", served.packed_note
    log_event(
        log,
        logging.INFO,
        "engine_chosen",
        "{model} version {version} runs on the {engine} engine: {reason}",
        **fields,
        engine=engine,
        reason=reason,
    )


class InferenceService:
    """Loads versions and runs inference requests for one app instance.

    Versions are looked up and loaded through its :class:`Registry`, and kept
    in the process's one model cache (``Registry.cache``): a served version is
    the cache entry of its (definition, weights), next to its built model.

    Args:
        settings: The app's settings.
        registry: The app's registry (its store, model cache and, on a full
            replica, build executor).
        metrics: The app's metrics.
    """

    def __init__(
        self, settings: Settings, registry: Registry, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.cache = registry.cache
        self.metrics = metrics
        self.scheduler = Scheduler(
            settings.inference_workers,
            settings.max_pending_inferences,
            settings.inference_timeout_s,
        )
        self.batcher = (
            Batcher(settings.batch_max_size, settings.batch_max_wait_ms / 1000.0)
            if settings.batching
            else None
        )
        self._costs: OrderedDict[str, RequestCost] = OrderedDict()
        self._loading: dict[tuple[str, str | None], asyncio.Future[Served]] = {}
        self.statistics = InferenceStatistics()
        metrics.track_models(self.cache.loaded_count)

    def close(self) -> None:
        self.scheduler.close()
        self.cache.drop_served()

    @property
    def _served(self) -> dict[tuple[str, str | None], Served]:
        """The loaded versions by key, least recently used first."""
        return {served.key: served for served in self.cache.loaded().values()}

    @property
    def loaded(self) -> int:
        """Versions in memory, ready to infer."""
        return self.cache.loaded_count()

    async def record(self, name: str, version: int | None) -> VersionRecord:
        """The registered version (the latest when ``version`` is None).

        Raises:
            NotFoundError: no such model or version (404).
        """
        found, record = self.registry.cached_record(name, version)
        if not found:  # the database must be read: off the loop
            record = await run_in_threadpool(self.registry.read_record, name, version)
        if record is None:
            what = (
                f"model {name!r}" if version is None else f"{name!r} version {version}"
            )
            raise self._not_found(f"{what} is not registered")
        return record

    def _not_found(self, message: str) -> Exception:
        """The 404 error of :meth:`record` (the full app's ``NotFoundError``)."""
        from bnncore_service.errors import NotFoundError

        return NotFoundError(message)

    async def key(self, record: VersionRecord) -> tuple[str, str | None]:
        """The served-model cache key of a version (definition hash, sha256 of
        its uploaded weights or ``None``)."""
        weights = await self._weights(record)
        return (record.content_hash, None if weights is None else weights.sha256)

    async def _weights(self, record: VersionRecord) -> StoredWeights | None:
        """The version's uploaded weights (``None``: its initial ones), from
        the registry view's memory on the loop, or read off the loop."""
        found, weights = self.registry.cached_weights(record.name, record.version)
        if not found:
            weights = await run_in_threadpool(
                self.registry.read_weights, record.name, record.version
            )
        return weights

    def state(self, key: tuple[str, str | None]) -> str:
        """``"READY"`` (loaded), ``"LOADING"`` or ``"UNAVAILABLE"`` (not in
        memory; the next request loads it)."""
        if self.cache.has_served(model_key(*key)):
            return "READY"
        return "LOADING" if key in self._loading else "UNAVAILABLE"

    def evict(self, key: tuple[str, str | None]) -> bool:
        """Drops a loaded version from the cache (a request being served keeps
        its reference); whether it was loaded."""
        dropped = self.cache.unload(model_key(*key))
        if dropped:
            _collect_soon()
        return dropped

    async def served(self, record: VersionRecord) -> Served:
        """The loaded version: from the cache, or built, weighted and compiled
        now (once, however many requests ask at the same time)."""
        weights = await self._weights(record)
        key = (record.content_hash, None if weights is None else weights.sha256)
        hit = self.cache.served(model_key(*key))
        if hit is not None:
            return cast(Served, hit)
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Served] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        start = time.perf_counter()
        try:
            served = await self._load(record, weights, key)
        except BaseException as error:
            if isinstance(error, StoreError):
                # A file gone: replaced or deleted through another replica,
                # a change not yet seen here; the retry looks up afresh.
                self.registry.invalidate()
            future.set_exception(error)
            future.exception()  # retrieved: waiters (if any) still get it
            raise
        finally:
            self._loading.pop(key, None)
        future.set_result(served)
        _log_loaded(record, served, time.perf_counter() - start)
        if self.cache.put_served(model_key(*key), served):
            _collect_soon()  # what the entry evicted
        return served

    async def cost(self, record: VersionRecord) -> RequestCost:
        """What a request to ``record`` costs per row and in fixed bytes.

        From the stored definition's estimate (cached by content hash, never
        building anything); a zoo model, which has no analytic estimate, is
        loaded and its built layers are counted (:func:`keras_model_cost`).

        Raises:
            LimitError: the definition is over the current limits (413).
        """
        hit = self._costs.get(record.content_hash)
        if hit is not None:
            self._costs.move_to_end(record.content_hash)
            return hit

        cost = await self._cost_of(record)
        self._costs[record.content_hash] = cost
        while len(self._costs) > _COSTS_KEPT:
            self._costs.popitem(last=False)
        return cost

    async def _cost_of(self, record: VersionRecord) -> RequestCost:
        """The request cost of a version (not cached): see :meth:`cost`."""
        from bnncore_service.estimate import estimate_with_peak, request_cost
        from bnncore_service.schemas.definitions import Sequential, Zoo

        def from_definition() -> RequestCost | None:
            definition = self.registry.definition_of(record.content_hash)
            if isinstance(definition, Zoo):
                return None
            offset = 1 if isinstance(definition, Sequential) else 0
            result, peak = estimate_with_peak(
                definition.graph(), self.settings, offset=offset
            )
            return request_cost(peak, result)

        cost = await run_in_threadpool(from_definition)
        if cost is None:
            served = await self.served(record)
            cost = keras_model_cost(served.model)
        return cost

    async def _load(
        self, record: VersionRecord, weights: Any, key: tuple[str, str | None]
    ) -> Served:
        built = await self.registry.built(record, weights)
        return await self.registry.run_keras(
            Served.load, key, built.model, self.settings.engine != "keras"
        )

    async def infer(
        self,
        record: VersionRecord,
        served: Served,
        decoded: Decoded,
        cost: RequestCost | None = None,
    ) -> tuple[list[np.ndarray], str]:
        """Runs a decoded request: the outputs (all of them, batch first) and the
        engine that ran.

        Args:
            cost: The version's request cost: a merged dynamic batch holds at
                most the rows whose cost fits ``BNN_MAX_REQUEST_BYTES`` (every
                output's JSON counted for each row).

        Raises:
            InferenceError: 400 (engine), 503 (queue full), 504 (timeout).
        """
        engine = served.engine_for(decoded.engine or self.settings.engine)
        name, version = record.name, record.version

        def execute_now(arrays: list[np.ndarray], rows: int) -> list[np.ndarray]:
            start = time.perf_counter()
            outputs = Timed(served.predict(arrays, engine))
            outputs.run_s = time.perf_counter() - start
            self.metrics.observe_inference(name, engine, rows, outputs.run_s)
            self.statistics.execution(name, version, rows, round(outputs.run_s * 1e9))
            return outputs

        async def execute(arrays: list[np.ndarray], rows: int) -> list[np.ndarray]:
            return await self.scheduler.run(execute_now, arrays, rows)

        submitted = time.perf_counter()
        if self.batcher is not None and self.batcher.accepts(decoded.rows):
            max_rows = None
            if cost is not None:
                every = range(len(cost.output_elements))
                limit = self.settings.max_request_bytes
                max_rows = cost.max_rows(limit, every, JSON_BYTES_PER_VALUE)
            outputs = await self.batcher.submit(
                (served.key, engine),
                decoded.arrays,
                decoded.rows,
                execute,
                max_rows=max_rows,
            )
        else:
            outputs = await execute(decoded.arrays, decoded.rows)
        waited = time.perf_counter() - submitted
        run_s = outputs.run_s if isinstance(outputs, Timed) else waited
        self.statistics.add(name, version, "compute_infer", round(run_s * 1e9))
        self.statistics.add(name, version, "queue", round((waited - run_s) * 1e9))
        return outputs, engine

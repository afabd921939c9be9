"""The one model cache of a process: an LRU of ``BNN_MODEL_CACHE_SIZE`` entries,
one per (definition content hash, uploaded weights' sha256).

An entry holds what the service keeps of one model: its built Keras model and
profile (:class:`Built`, for reports, weights checks and inference) and, once
the model has been loaded for inference, its served form (a
``bnncore_service.inference.Served``: the same Keras model plus its packed
engine; on an inference replica, the ``bnncore_runtime`` model alone). The
two parts share one slot and one eviction, so at most ``BNN_MODEL_CACHE_SIZE``
models are in memory, whichever route made them.

Evictions are logged as ``model_evicted``: ``cache="build"`` for an entry's
built model and ``cache="serving"`` for its served form (both when an entry
with both leaves), ``reason="cache_full"``; ``POST .../unload`` drops only the
served form (``cache="serving"``, ``reason="unload"``), as it always did: the
built model stays until the LRU evicts it.

A Keras model is a web of reference cycles, so only the cyclic garbage
collector frees an evicted one: :meth:`ModelCache.put` collects before it
returns (call it from a worker thread); :meth:`ModelCache.put_served` and
:meth:`ModelCache.unload` leave the collection to their caller (the event loop
hands it to a worker thread).

This module imports neither TensorFlow nor Keras: the inference replica uses
it too.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from bnncore_service.logs import log_event

__all__ = ["Built", "ModelCache", "model_key"]

_build_log = logging.getLogger("bnncore_service.runtime")
_serving_log = logging.getLogger("service")


@dataclass(frozen=True)
class Built:
    """A built model and its profile.

    Attributes:
        weights_sha256: The uploaded weights loaded into ``model`` (``None``:
            initial weights). Anything cached from ``model`` (compiled engines)
            must key on it as well as on the content hash.
    """

    model: Any
    profile: Any
    weights_sha256: str | None = None


def model_key(content_hash: str, weights_sha256: str | None) -> str:
    """The cache key of a definition with its uploaded weights (``None``:
    the initial ones): ``content_hash`` or ``content_hash+weights:sha256``."""
    if weights_sha256 is None:
        return content_hash
    return f"{content_hash}+weights:{weights_sha256}"


@dataclass
class _Entry:
    built: Built | None = None
    served: Any = None


class ModelCache:
    """A thread-safe least-recently-used cache of models by :func:`model_key`.

    Args:
        size: Entries kept (``BNN_MODEL_CACHE_SIZE``).

    Attributes:
        hits, misses: Lookups of built models (:meth:`get`).
        evictions: Entries evicted because the cache was full.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        self.evictions = 0

    def get(self, key: str) -> Built | None:
        """The built model of ``key`` (made most recently used), or ``None``."""
        with self._lock:
            entry = self._items.get(key)
            if entry is None or entry.built is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return entry.built

    def put(self, key: str, item: Built) -> None:
        """Keeps a built model (its served form, if any, stays), evicting the
        least recently used entries beyond the size, and frees them before it
        returns (a garbage collection: blocking, call it from a worker
        thread)."""
        if self._store(key, built=item):
            gc.collect()

    def served(self, key: str) -> Any:
        """The served form of ``key`` (made most recently used), or ``None``;
        never blocks on I/O (the event loop calls it)."""
        with self._lock:
            entry = self._items.get(key)
            if entry is None or entry.served is None:
                return None
            self._items.move_to_end(key)
            return entry.served

    def has_served(self, key: str) -> bool:
        """Whether ``key`` is loaded for inference (the LRU order unchanged)."""
        with self._lock:
            entry = self._items.get(key)
            return entry is not None and entry.served is not None

    def put_served(self, key: str, served: Any) -> bool:
        """Keeps the served form of ``key`` with its built model (a new entry
        if that was evicted meanwhile), evicting beyond the size.

        Returns:
            Whether anything was evicted: then run ``gc.collect()`` off the
            event loop to free it.
        """
        return self._store(key, served=served)

    def unload(self, key: str) -> bool:
        """Drops the served form of ``key`` (its built model stays); whether
        there was one. The caller collects (off the event loop)."""
        with self._lock:
            entry = self._items.get(key)
            if entry is None or entry.served is None:
                return False
            entry.served = None
            if entry.built is None:
                del self._items[key]
        _log_evicted_served(key, "unload", "unloaded on request")
        return True

    def loaded(self) -> dict[str, Any]:
        """Every served form, least recently used first."""
        with self._lock:
            return {k: e.served for k, e in self._items.items() if e.served is not None}

    def loaded_count(self) -> int:
        """How many entries have a served form (``bnn_models_loaded``)."""
        with self._lock:
            return sum(1 for e in self._items.values() if e.served is not None)

    def drop_served(self) -> None:
        """Forgets every served form (at shutdown)."""
        with self._lock:
            for key in [k for k, e in self._items.items() if e.built is None]:
                del self._items[key]
            for entry in self._items.values():
                entry.served = None

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._items)

    def _store(self, key: str, built: Built | None = None, served: Any = None) -> bool:
        """Sets a part of ``key``'s entry and evicts beyond the size; whether
        anything was evicted (then the caller collects)."""
        gone: list[tuple[str, bool, bool]] = []
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                entry = self._items[key] = _Entry()
            if built is not None:
                entry.built = built
            if served is not None:
                entry.served = served
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                # Only the key and two flags are kept: no local name may hold
                # an evicted model while the collector runs.
                out = next(iter(self._items))
                old = self._items.pop(out)
                gone.append((out, old.built is not None, old.served is not None))
                del old
            self.evictions += len(gone)
            del entry
        for out, had_built, had_served in gone:
            if had_built:
                _log_evicted_built(out, self.size)
            if had_served:
                _log_evicted_served(
                    out, "cache_full", f"BNN_MODEL_CACHE_SIZE={self.size}"
                )
        return bool(gone)


def _fields(key: str) -> dict[str, Any]:
    content_hash, _, weights = key.partition("+weights:")
    return {"key": content_hash[:12], "weights": weights[:12] or "initial"}


def _log_evicted_built(key: str, size: int) -> None:
    log_event(
        _build_log,
        logging.INFO,
        "model_evicted",
        "evicted model {key} from the build cache (BNN_MODEL_CACHE_SIZE={size})",
        cache="build",
        **_fields(key),
        size=size,
        reason="cache_full",
    )


def _log_evicted_served(key: str, reason: str, detail: str) -> None:
    log_event(
        _serving_log,
        logging.INFO,
        "model_evicted",
        "evicted model {key} from the serving cache ({detail})",
        cache="serving",
        **_fields(key),
        reason=reason,
        detail=detail,
    )

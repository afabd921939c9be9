"""What inference looks up in the registry, reused until the registry changes.

Every inference request needs its version's record and uploaded weights
(their sha256 is part of the model cache key). Reading both from the database
on every request costs two round trips; :class:`RegistryView` keeps what it
read and drops it all when the registry's generation changes
(:meth:`Store.generation <bnncore_service.store.Store.generation>`, incremented in the
transaction of every registration, weights upload and delete, by any
replica).

Consistency bound: the generation is read at most every
``BNN_REGISTRY_POLL_S`` seconds (default 1), so a change committed by another
replica is served here at most that long after its commit (plus one
database round trip). A change made through this process's own
:class:`~bnncore_service.store.Store` is seen by the next lookup. What is served is
always a consistent pair: the model cache keys on the definition's content
hash and the weights' sha256, never on a name or version.

:meth:`RegistryView.cached_get` and :meth:`RegistryView.cached_weights` answer
only from memory (no database, no I/O), so the event loop can call them
without a thread hop and hop to :meth:`~RegistryView.get` only on a miss.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from bnncore_service.records import RegistryReads, StoredWeights, VersionRecord

__all__ = ["RegistryView"]

_KEPT = 4096
"""Lookups kept (least recently used dropped beyond)."""


class RegistryView:
    """Cached :meth:`Store.get` and :meth:`Store.weights` (thread-safe).

    Args:
        store: The open store.
        poll_s: Longest time between two reads of the generation (0: read it
            for every lookup).
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        store: RegistryReads,
        poll_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.poll_s = poll_s
        self._clock = clock
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, str, int | None], Any] = OrderedDict()
        self._epoch = 0  # incremented whenever the items are dropped
        self._generation: int | None = None
        self._writes = store.writes
        self._checked: float | None = None
        self.polls = 0  # generation reads

    def _current_epoch(self) -> int:
        """The epoch after dropping everything if the registry changed."""
        with self._lock:
            if self.store.writes != self._writes:
                self._writes = self.store.writes
                self._drop()
            now = self._clock()
            due = self._checked is None or now - self._checked >= self.poll_s
            if not due:
                return self._epoch
            self._checked = now
        generation = self.store.generation()
        with self._lock:
            self.polls += 1
            if generation != self._generation:
                self._generation = generation
                self._drop()
            return self._epoch

    def invalidate(self) -> None:
        """Forgets every lookup and reads the generation again on the next
        (call it when what a lookup pointed at has gone: a file deleted by
        another replica's change not yet seen here)."""
        with self._lock:
            self._drop()
            self._checked = None

    def _drop(self) -> None:
        self._items.clear()
        self._epoch += 1

    def _lookup(self, key: tuple[str, str, int | None], read: Callable[[], Any]) -> Any:
        epoch = self._current_epoch()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = read()
        with self._lock:
            if self._epoch == epoch:  # not read across a change: keep it
                self._items[key] = value
                while len(self._items) > _KEPT:
                    self._items.popitem(last=False)
        return value

    def _cached(self, key: tuple[str, str, int | None]) -> tuple[bool, Any]:
        """``(True, value)`` when :meth:`_lookup` would answer ``key`` without
        reading the database (the generation read less than ``poll_s`` ago and
        the lookup kept), else ``(False, None)``; never blocks on I/O."""
        with self._lock:
            if self.store.writes != self._writes:
                return False, None  # _lookup drops everything first
            if self._checked is None or self._clock() - self._checked >= self.poll_s:
                return False, None  # the generation is due to be read
            if key not in self._items:
                return False, None
            self._items.move_to_end(key)
            return True, self._items[key]

    def cached_get(
        self, name: str, version: int | None = None
    ) -> tuple[bool, VersionRecord | None]:
        """:meth:`get` answered from memory only: ``(True, record or None)``
        when it needs no database read, ``(False, None)`` when it does (then
        call :meth:`get`)."""
        return self._cached(("record", name, version))

    def cached_weights(
        self, name: str, version: int
    ) -> tuple[bool, StoredWeights | None]:
        """:meth:`weights` answered from memory only, as :meth:`cached_get`."""
        return self._cached(("weights", name, version))

    def get(self, name: str, version: int | None = None) -> VersionRecord | None:
        """:meth:`Store.get`, reused while the registry is unchanged."""
        return self._lookup(
            ("record", name, version), lambda: self.store.get(name, version)
        )

    def weights(self, name: str, version: int) -> StoredWeights | None:
        """:meth:`Store.weights`, reused while the registry is unchanged."""
        return self._lookup(
            ("weights", name, version), lambda: self.store.weights(name, version)
        )

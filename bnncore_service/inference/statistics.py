"""Per model version inference statistics, in the shape of Triton's statistics
extension (``GET /v2/models[/{name}[/versions/{v}]]/stats``).

Durations are cumulative nanoseconds. For each request that reached a
registered version:

* ``success`` / ``fail``: its count and duration, from its version being
  found to its answer being ready;
* ``compute_input``: reading and checking its body (JSON, binary data);
* ``queue``: waiting for its model execution to start (the inference pool,
  the dynamic batching wait);
* ``compute_infer``: the model execution that ran it (a merged batch's whole
  execution counts for each request in it, as Triton counts it);
* ``compute_output``: encoding its answer.

``inference_count`` counts rows (batch elements) of successful requests,
``execution_count`` model executions (a merged dynamic batch is one), and
``batch_stats`` the executions per batch size with their compute durations.
Nothing is kept across restarts; a deleted version's statistics are dropped
with the process.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["InferenceStatistics", "VersionStatistics"]

_DURATIONS = (
    "success",
    "fail",
    "queue",
    "compute_input",
    "compute_infer",
    "compute_output",
    "cache_hit",
    "cache_miss",
)


def _duration(count: int = 0, ns: int = 0) -> dict[str, int]:
    return {"count": count, "ns": ns}


@dataclass
class VersionStatistics:
    """The counters of one model version."""

    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_DURATIONS, 0))
    ns: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_DURATIONS, 0))
    batches: dict[int, list[int]] = field(default_factory=dict)
    """batch size → [executions, compute_infer ns]."""

    def as_triton(self, name: str, version: int) -> dict[str, Any]:
        """Triton's ``model_stats`` entry."""
        return {
            "name": name,
            "version": str(version),
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                key: _duration(self.counts[key], self.ns[key]) for key in _DURATIONS
            },
            "response_stats": {},
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": _duration(count, 0),
                    "compute_infer": _duration(count, ns),
                    "compute_output": _duration(count, 0),
                }
                for size, (count, ns) in sorted(self.batches.items())
            ],
            "memory_usage": [],
        }


class InferenceStatistics:
    """The statistics of every model version of one app instance
    (thread-safe: executions are recorded from the inference pool)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[tuple[str, int], VersionStatistics] = {}

    def _entry(self, name: str, version: int) -> VersionStatistics:
        entry = self._versions.get((name, version))
        if entry is None:
            entry = self._versions[(name, version)] = VersionStatistics()
        return entry

    def add(self, name: str, version: int, kind: str, ns: int) -> None:
        """Adds one duration of ``kind`` (``queue``, ``compute_input``, ...)."""
        with self._lock:
            entry = self._entry(name, version)
            entry.counts[kind] += 1
            entry.ns[kind] += max(ns, 0)

    def finish(self, name: str, version: int, ok: bool, rows: int, ns: int) -> None:
        """Records the end of a request: ``success`` with its rows, or
        ``fail``."""
        with self._lock:
            entry = self._entry(name, version)
            kind = "success" if ok else "fail"
            entry.counts[kind] += 1
            entry.ns[kind] += max(ns, 0)
            if ok:
                entry.inference_count += rows
                entry.last_inference_ms = time.time_ns() // 1_000_000

    def execution(self, name: str, version: int, rows: int, ns: int) -> None:
        """Records one model execution of ``rows`` rows."""
        with self._lock:
            entry = self._entry(name, version)
            entry.execution_count += 1
            batch = entry.batches.setdefault(rows, [0, 0])
            batch[0] += 1
            batch[1] += max(ns, 0)

    def get(self, name: str, version: int) -> VersionStatistics:
        """A copy of one version's counters (zeros when it never ran)."""
        with self._lock:
            entry = self._versions.get((name, version))
            if entry is None:
                return VersionStatistics()
            return VersionStatistics(
                entry.last_inference_ms,
                entry.inference_count,
                entry.execution_count,
                dict(entry.counts),
                dict(entry.ns),
                {size: list(values) for size, values in entry.batches.items()},
            )

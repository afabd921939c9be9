"""Sizes of registered versions for the model list, without building anything.

``GET /v2/models`` shows each version's parameters and memory (stored at
registration) with its parameters by bit width and its compression, which the
store does not keep: they come from the analytic estimate of the stored
definition (:func:`bnncore_service.estimate.estimate_report`), computed once per
content hash and kept in a bounded cache (a definition's sizes never change).
Zoo definitions have no analytic estimate: their two figures are ``None``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from pydantic import ValidationError

from bnncore_service.config import Settings
from bnncore_service.store import Store, StoreError

__all__ = ["DefinitionSizes", "SizeCache"]


@dataclass(frozen=True)
class DefinitionSizes:
    """What the estimate of a definition adds to its stored record.

    Attributes:
        params_by_bits: Parameters by bit width (``{"1": 288, "32": 64}``),
            ``None`` when the definition has no analytic estimate.
        compression: Float32-equivalent bytes over the model's bytes, ``None``
            likewise (or without memory).
    """

    params_by_bits: dict[str, int] | None
    compression: float | None


_UNKNOWN = DefinitionSizes(params_by_bits=None, compression=None)


class SizeCache:
    """A thread-safe least-recently-used map: content hash → sizes.

    Args:
        size: Most definitions kept (each entry is a few small numbers).
    """

    def __init__(self, size: int = 4096) -> None:
        if size < 1:
            raise ValueError(f"Expected a positive cache size. Received: size={size}")
        self._size = size
        self._items: OrderedDict[str, DefinitionSizes] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def sizes(
        self, store: Store, settings: Settings, content_hash: str
    ) -> DefinitionSizes:
        """The sizes of the stored definition ``content_hash`` (blocking: call
        from a worker thread on a miss).

        A definition the store cannot read now (deleted meanwhile, store
        unavailable) has unknown sizes, not cached: the next call tries again.
        """
        with self._lock:
            found = self._items.get(content_hash)
            if found is not None:
                self._items.move_to_end(content_hash)
                return found
        try:
            computed = _estimate_sizes(store, settings, content_hash)
        except StoreError:
            return _UNKNOWN
        with self._lock:
            self._items[content_hash] = computed
            self._items.move_to_end(content_hash)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return computed


def _estimate_sizes(
    store: Store, settings: Settings, content_hash: str
) -> DefinitionSizes:
    """The sizes of a stored definition, planned as every version is
    (:func:`bnncore_service.registry.plan_of`).

    Raises:
        StoreError: the definition cannot be read now.
    """
    from bnncore_service.estimate import DefinitionError, LimitError, estimate_report
    from bnncore_service.registry import plan_of

    try:
        model_plan = plan_of(store, settings, content_hash)
    except (ValidationError, DefinitionError, LimitError):
        # Stored under other limits or an older schema: the record's own
        # figures still stand; these two stay unknown.
        return _UNKNOWN
    if model_plan.estimate is None:  # a zoo definition
        return _UNKNOWN
    totals = estimate_report(model_plan.estimate, model_plan.definition.graph()).totals
    return DefinitionSizes(
        params_by_bits=dict(totals.params_by_bits),
        compression=totals.compression,
    )

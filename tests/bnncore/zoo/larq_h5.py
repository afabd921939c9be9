"""Writes tf-keras / Larq Zoo ``.h5`` weights files with h5py, for the tests.

The layout mirrors what tf-keras 2.16's ``model.save_weights("x.h5")`` writes
(learned from real files, recorded in ``fixtures/larq_layouts.json`` by
``fixtures/make_larq_fixtures.py``): root attributes ``backend``,
``keras_version`` and ``layer_names`` (variable-length ASCII strings, every
layer in model order, weightless ones too); one group per layer with the
attribute ``weight_names`` (the same kind of strings, in the layer's order, or
an empty float64 array when it has none); each array at
``<layer>/<weight name>``. ``model.save("x.h5")``
writes the same under a group ``model_weights``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# [layer name, layer class, [[weight name, shape, dtype], ...]]
Layout = list[list[Any]]


def larq_layouts() -> dict[str, Layout]:
    """Larq Zoo's file layouts, key ``"QuickNet"`` or ``"QuickNet:notop"``."""
    with open(FIXTURES / "larq_layouts.json") as f:
        return json.load(f)


def weight_entries(layout: Layout) -> list[tuple[str, str, tuple[int, ...]]]:
    """``(layer, weight name, shape)`` of every array, in file order."""
    return [
        (layer, name, tuple(shape))
        for layer, _cls, weights in layout
        for name, shape, _dtype in weights
    ]


def _names(values: Sequence[str]) -> np.ndarray:
    if not values:
        return np.array([], dtype="float64")  # what tf-keras writes for none
    return np.array(values, dtype=h5py.string_dtype("ascii"))


def write_larq_h5(
    path: Path,
    layout: Layout,
    value: Callable[[int, tuple[int, ...]], np.ndarray | None],
    *,
    full_model: bool = False,
) -> None:
    """Writes a file of ``layout``; array ``i`` (file order) is
    ``value(i, shape)``, or a lazily stored dataset filled with ``i + 1`` when
    ``value`` returns ``None`` (big models without big files)."""
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if full_model else f
        if full_model:
            f.attrs["model_config"] = b'{"class_name": "NotRead"}'
        root.attrs["backend"] = "tensorflow"
        root.attrs["keras_version"] = "2.16.0"
        root.attrs["layer_names"] = _names([layer for layer, _, _ in layout])
        position = 0
        for layer, _cls, weights in layout:
            group = root.create_group(layer)
            group.attrs["weight_names"] = _names([name for name, _, _ in weights])
            for name, shape, dtype in weights:
                shape = tuple(shape)
                data = value(position, shape)
                if data is None:
                    group.create_dataset(
                        name,
                        shape=shape,
                        dtype=dtype,
                        fillvalue=position + 1,
                        chunks=True if shape else None,
                    )
                else:
                    group.create_dataset(name, data=np.asarray(data, dtype=dtype))
                position += 1

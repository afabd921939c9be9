"""Every zoo model at 224×224×3 with 1000 classes, built once per test process.

Building a zoo model costs a second or more of CPU (most of it initialising
millions of weights), so each is built once, measured, and freed before the
next one; the tests of several modules (the published figures, the docs table,
the layer and weight names) read the cached :class:`Measured` record.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import keras
import zoo_helpers

from bnncore import export, models, quantizers, zoo
from bnncore.zoo import table


def describe(obj: Any) -> str:
    """A quantizer or constraint as ``Class(clip)`` (``"None"`` for none)."""
    if obj is None:
        return "None"
    name = type(obj).__name__
    if isinstance(obj, quantizers.DoReFa):
        return f"DoReFa({obj.k_bit})"
    clip = getattr(obj, "clip_value", None)
    return name if clip is None else f"{name}({float(clip)})"


@dataclass(frozen=True)
class Names:
    """What a model's names are: its layers, variable paths and file names."""

    layers: list[str]
    paths: list[str]
    file_names: list[str]  # bnncore.export.weight_names, in model.weights order


def names(model: keras.Model) -> Names:
    return Names(
        layers=[layer.name for layer in model.layers],
        paths=[w.path for w in model.weights],
        file_names=list(export.weight_names(model)),
    )


@dataclass(frozen=True)
class Measured:
    keras_params: int
    counts: zoo_helpers.Counts
    totals: Any
    binary: list[tuple[str, str, str, float]]  # input, kernel, constraint, pad
    batch_norms: set[tuple[float, float]]
    kernel_layers: list[str]
    macs_by_layer: dict[str, int]
    table_row: str
    names: Names
    output_shape: tuple
    input_shape: tuple


@functools.cache
def measured(name: str) -> Measured:
    model = zoo.get(name)()
    profile = models.profile(model)
    binary = [
        (
            describe(layer.input_quantizer),
            describe(next(q for q in layer.kernel_quantizers.values() if q)),
            describe(layer.kernel_constraint),
            getattr(layer, "pad_values", 0.0),
        )
        for layer in zoo_helpers.binary_layers(model)
    ]
    result = Measured(
        keras_params=model.count_params(),
        counts=zoo_helpers.count(model),
        totals=profile.totals,
        binary=binary,
        batch_norms={
            (round(layer.momentum, 6), round(layer.epsilon, 9))
            for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)
        },
        kernel_layers=[
            layer.name
            for layer in model.layers
            if hasattr(layer, "kernel") or hasattr(layer, "depthwise_kernel")
        ],
        macs_by_layer={layer.name: layer.macs for layer in profile.layers},
        table_row=table.row(zoo.entry(name), profile),
        names=names(model),
        output_shape=tuple(model.output_shape),
        input_shape=tuple(model.input_shape),
    )
    del model
    keras.backend.clear_session()
    return result

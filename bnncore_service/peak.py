"""Peak memory of running a definition, known before anything is built.

Two figures bound what one request costs:

* **per-row bytes**: the most memory live at once while one row goes through
  the model, counted in definition order (a topological order) with plain
  integers. At layer ``i`` the live set is (a) the model inputs, twice (the
  caller's array and TensorFlow's copy), (b) every earlier tensor a later layer
  or the model's outputs still need, and (c) layer ``i``'s working set: its
  inputs, *every* tensor its operations create (quantized inputs, padding
  copies, the depthwise intermediate of a separable convolution, the column
  buffer of a transposed convolution, the steps of an upsampling, the terms of
  a merge, each temporary of an activation...) and its output. The working set
  is a sum, as if nothing were freed inside a layer: a safe upper bound rather
  than the exact high-water mark, because TensorFlow's executor may run a
  layer's independent operations in any order and only the sum holds for all
  of them. The figure is then the maximum over layers, and over the end of the
  run (inputs and outputs, the latter twice: TensorFlow's tensor and NumPy's).
* **fixed bytes**: temporaries whose size does not depend on the batch:
  quantized copies of kernels (``kernel_quantizer`` and friends), summed over
  layers since nothing says when TensorFlow frees them, plus
  :data:`SCRATCH_BYTES` for the kernels' own working buffers, which no graph
  shows.

A request of ``rows`` rows then costs at most ``fixed + rows × per_row`` to
run, plus its encoded response (:meth:`RequestCost.request_bytes`). Every
tensor is counted at 4 bytes per element (the models are float32; boolean
masks take 1 byte, float64 temporaries of ``magnitude_aware_sign`` count as two
elements in its factor).

The counts per operation come from TensorFlow's graphs of each layer type,
kept with the layer's other rules in :mod:`bnncore_runtime.layer_rules`
(``intermediates``, ``fixed``; the quantizer and activation factors);
``tests/service/hostile/test_hostile_memory.py`` checks them against the
graph TensorFlow traces for random definitions.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bnncore_runtime.layer_rules import (
        ACTIVATION_FACTORS,
        DEFAULT_FACTOR,
        QUANTIZER_FACTORS,
    )

# ``bnncore_service.schemas.layers`` (which imports Keras) is imported by the functions
# that read layer specs, so that RequestCost and the constants import without
# TensorFlow (the inference replica's codec uses them). The layer rules
# (``bnncore_runtime.layer_rules``, ~10 ms) are imported by the functions that
# count with them, so that the inference replica, which only needs RequestCost
# and the constants, starts without them; their factor tables are still names
# of this module (:func:`__getattr__`).

__all__ = [
    "ACTIVATION_FACTORS",
    "BYTES_PER_ELEMENT",
    "DEFAULT_FACTOR",
    "JSON_BYTES_PER_VALUE",
    "QUANTIZER_FACTORS",
    "SCRATCH_BYTES",
    "LayerPeak",
    "Peak",
    "RequestCost",
    "keras_model_cost",
    "layer_peak",
    "model_peak",
]

Shape = tuple[int, ...]

BYTES_PER_ELEMENT = 4
"""Every tensor is counted as float32."""

JSON_BYTES_PER_VALUE = 28
"""Bound on the JSON text of one output value with its separator. Outputs are
written as the shortest decimal of the float32's exact (float64) value: at
most 24 characters (``-0.000048632944526616484``; measured over 5 million
random float32 bit patterns), plus a comma and, in the nested TF Serving
layout, brackets."""

SCRATCH_BYTES = 16 * 2**20
"""Working buffers of TensorFlow's kernels, outside any tensor of the graph
(matrix-multiply packing, oneDNN scratchpads, per-thread buffers): a
4096×8192 dense layer's run grows the resident set by 6 MB whatever the
batch."""

SMALL_TENSOR_BYTES = 1024
"""Allowance per layer for the small tensors its operations create whatever
the batch: shape vectors, scalars, reduction results."""


_RULE_NAMES = frozenset({"ACTIVATION_FACTORS", "DEFAULT_FACTOR", "QUANTIZER_FACTORS"})


def __getattr__(name: str) -> Any:
    """The layer rules' factor tables, imported on first use (PEP 562)."""
    if name in _RULE_NAMES:
        return getattr(importlib.import_module("bnncore_runtime.layer_rules"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _RULE_NAMES)


def quantizer_factor(spec: Any) -> int:
    """Elements created per input element by a quantizer spec (0 for none)."""
    from bnncore_runtime.layer_rules import DEFAULT_FACTOR, QUANTIZER_FACTORS

    if spec is None:
        return 0
    return QUANTIZER_FACTORS.get(getattr(spec, "type", ""), DEFAULT_FACTOR)


def activation_factor(spec: Any) -> int:
    """Elements created per element by an activation spec (0 for none)."""
    from bnncore_runtime.layer_rules import ACTIVATION_FACTORS, DEFAULT_FACTOR

    if spec is None:
        return 0
    if isinstance(spec, str):
        return ACTIVATION_FACTORS.get(spec, DEFAULT_FACTOR)
    return quantizer_factor(spec)


@dataclass(frozen=True)
class LayerPeak:
    """What one layer holds while it runs, at batch 1.

    Attributes:
        name / type: The layer.
        input_elements: Its inputs (summed).
        intermediate_elements: Every other tensor its operations create.
        output_elements: Its output.
        fixed_bytes: Batch-independent temporaries (quantized kernels).
    """

    name: str
    type: str
    input_elements: int
    intermediate_elements: int
    output_elements: int
    fixed_bytes: int

    @property
    def working_bytes(self) -> int:
        """Inputs + intermediates + output, in bytes, per row."""
        elements = (
            self.input_elements + self.intermediate_elements + self.output_elements
        )
        return elements * BYTES_PER_ELEMENT


@dataclass(frozen=True)
class Peak:
    """The peak memory of a model (see the module docstring).

    Attributes:
        layers: One entry per layer, in definition order.
        row_bytes: Most bytes live at once per row (batch 1).
        fixed_bytes: Batch-independent temporaries.
        peak_layer: The layer where ``row_bytes`` is reached (``""``: the end
            of the run, holding inputs and outputs).
    """

    layers: tuple[LayerPeak, ...]
    row_bytes: int
    fixed_bytes: int
    peak_layer: str


@dataclass(frozen=True)
class RequestCost:
    """The memory a request may take, from a model's :class:`Peak` and its
    output sizes.

    Attributes:
        row_bytes: Per-row peak of running the model.
        fixed_bytes: Batch-independent temporaries.
        output_elements: Elements per row of each model output.
    """

    row_bytes: int
    fixed_bytes: int
    output_elements: tuple[int, ...]

    def response_row_bytes(self, outputs: Sequence[int], value_bytes: int) -> int:
        """Bytes per row of the encoded outputs ``outputs`` (indexes)."""
        return sum(self.output_elements[i] for i in outputs) * value_bytes

    def request_bytes(self, rows: int, outputs: Sequence[int], value_bytes: int) -> int:
        """Bound of a request of ``rows`` rows: ``fixed + rows × (per-row peak
        + encoded response per row)``."""
        per_row = self.row_bytes + self.response_row_bytes(outputs, value_bytes)
        return self.fixed_bytes + rows * per_row

    def max_rows(self, limit: int, outputs: Sequence[int], value_bytes: int) -> int:
        """Most rows whose :meth:`request_bytes` fits ``limit`` (may be 0)."""
        per_row = self.row_bytes + self.response_row_bytes(outputs, value_bytes)
        return max(limit - self.fixed_bytes, 0) // max(per_row, 1)


def _factor(layer: Any) -> Callable[[str], int]:
    """Elements per element of the quantizer or activation in an argument."""

    def factor(argument: str) -> int:
        value = getattr(layer, argument, None)
        if argument == "activation":
            return activation_factor(value)
        return quantizer_factor(value)

    return factor


def layer_peak(
    layer: Any, shapes: list[Shape], out: Shape, weights: Sequence[Any]
) -> LayerPeak:
    """The working set of one layer at batch 1.

    Args:
        layer: The validated layer spec.
        shapes: Its input shapes (batch excluded).
        out: Its output shape.
        weights: Its weights (``name`` and ``shape``) as the estimate lists them.
    """
    from bnncore_runtime.layer_rules import (
        fixed_elements,
        intermediate_elements,
        rule_for,
    )

    rule, factor = rule_for(layer.type), _factor(layer)
    fixed = fixed_elements(rule, layer, shapes, out, factor, weights)
    return LayerPeak(
        name=layer.name,
        type=layer.type,
        input_elements=sum(math.prod(s) for s in shapes),
        intermediate_elements=intermediate_elements(rule, layer, shapes, out, factor),
        output_elements=math.prod(out),
        fixed_bytes=fixed * BYTES_PER_ELEMENT + SMALL_TENSOR_BYTES,
    )


def model_peak(
    layers: Sequence[Any],
    peaks: dict[str, LayerPeak],
    sizes: dict[str, int],
    inputs: Sequence[str],
    outputs: Sequence[str],
) -> Peak:
    """The model's per-row peak from its layers' working sets.

    Args:
        layers: The graph's layer specs in definition order (``Input`` ones
            included).
        peaks: :class:`LayerPeak` of every non-``Input`` layer by name.
        sizes: Elements per row of every layer's output (inputs included).
        inputs / outputs: Names of the model's inputs and outputs.
    """
    from bnncore_service.schemas import layers as L

    last_use: dict[str, int] = {}
    for index, layer in enumerate(layers):
        for source in layer.inputs or []:
            last_use[source] = index
    end = len(layers)
    for name in [*outputs, *inputs]:
        last_use[name] = end
    held_inputs = 2 * sum(sizes[name] for name in inputs)
    best, where = 0, ""
    made: list[tuple[str, int]] = []  # tensors produced so far, not inputs
    for index, layer in enumerate(layers):
        if isinstance(layer, L.Input):
            continue
        held = held_inputs + sum(
            sizes[name] for name, born in made if born < index < last_use[name]
        )
        live = held * BYTES_PER_ELEMENT + peaks[layer.name].working_bytes
        if live > best:
            best, where = live, layer.name
        made.append((layer.name, index))
    finish = (held_inputs + 2 * sum(sizes[name] for name in outputs)) * (
        BYTES_PER_ELEMENT
    )
    if finish > best:
        best, where = finish, ""
    ordered = tuple(peaks[layer.name] for layer in layers if layer.name in peaks)
    return Peak(
        layers=ordered,
        row_bytes=best,
        fixed_bytes=SCRATCH_BYTES + sum(p.fixed_bytes for p in ordered),
        peak_layer=where,
    )


def _elements(tensors: Any) -> int:
    items = tensors if isinstance(tensors, list | tuple) else [tensors]
    return sum(math.prod(int(n or 1) for n in t.shape[1:]) for t in items)


def keras_model_cost(model: Any) -> RequestCost:
    """A coarser :class:`RequestCost` for a built model with no definition to
    estimate (a zoo architecture), from its layers' input and output shapes.

    Per row: the inputs twice, every layer's output (as if all were held to
    the end), the outputs once more (NumPy's copy), plus the largest working
    set, each layer counted as its inputs, its output and
    :data:`DEFAULT_FACTOR` temporaries the size of the larger of the two.
    Fixed: each quantized kernel times its quantizer's factor, plus
    :data:`SMALL_TENSOR_BYTES` per layer and :data:`SCRATCH_BYTES`.
    """
    from bnncore_runtime.layer_rules import DEFAULT_FACTOR, QUANTIZER_FACTORS

    inputs = _elements(model.inputs)
    outputs = _elements(model.outputs)
    held = working = fixed = 0
    for layer in model.layers:
        if not layer.weights and type(layer).__name__ == "InputLayer":
            continue
        i, o = _elements(layer.input), _elements(layer.output)
        held += o
        working = max(working, i + o + DEFAULT_FACTOR * max(i, o))
        # bnncore's quantized layers name their quantizers and the weights
        # they quantize (argument → attribute).
        for field, attribute in getattr(layer, "_kernel_quantizers", {}).items():
            quantizer = getattr(layer, field, None)
            weight = getattr(layer, attribute, None)
            if quantizer is None or weight is None:
                continue
            factor = QUANTIZER_FACTORS.get(type(quantizer).__name__, DEFAULT_FACTOR)
            fixed += factor * math.prod(weight.shape) * BYTES_PER_ELEMENT
        fixed += SMALL_TENSOR_BYTES
    row = 2 * inputs + held + outputs + working
    return RequestCost(
        row_bytes=row * BYTES_PER_ELEMENT,
        fixed_bytes=SCRATCH_BYTES + fixed,
        output_elements=tuple(_elements(t) for t in model.outputs),
    )

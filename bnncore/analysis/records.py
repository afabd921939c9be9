"""The profile's data: frozen records for a model, its layers and their weights.

Every number in a profile is computed once, by :mod:`bnncore.analysis.counting`,
and stored here. Renderers and :meth:`ModelProfile.to_dict` only read and
format these fields; they never recompute a count.

Bit-width keyed counts (``params_by_bits``, ``macs_by_bits``, ...) are read-only
mappings from an ``int`` bit width to a count, sorted by bit width. In the JSON
document their keys are strings (``{"1": 36864, "32": 128}``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "SCHEMA_VERSION",
    "BitCounts",
    "LayerProfile",
    "ModelProfile",
    "Shape",
    "Totals",
    "WeightProfile",
    "bit_counts",
]

SCHEMA_VERSION = 1
"""Version of the JSON document; bumped only when a key changes meaning or goes."""

Shape = tuple[int | None, ...]
BitCounts = Mapping[int, int]


def bit_counts(counts: Mapping[int, int] | None = None) -> BitCounts:
    """A read-only, bit-width-sorted copy of ``counts`` without zero entries."""
    items = sorted((int(b), int(n)) for b, n in (counts or {}).items() if n)
    return MappingProxyType(dict(items))


def _bits_json(counts: BitCounts) -> dict[str, int]:
    return {str(bits): count for bits, count in counts.items()}


def _shape_json(shape: Shape | None) -> list[int | None] | None:
    return None if shape is None else list(shape)


def _shapes_json(shapes: tuple[Shape, ...]) -> Any:
    """One shape as a list; several as a list of lists; none as ``None``."""
    if not shapes:
        return None
    if len(shapes) == 1:
        return _shape_json(shapes[0])
    return [_shape_json(s) for s in shapes]


@dataclass(frozen=True)
class WeightProfile:
    """One weight variable of a layer.

    Attributes:
        name: The variable's name (``"kernel"``).
        path: The variable's unique path (``"model/quant_dense/kernel"``).
        shape: The variable's shape.
        dtype: The variable's dtype name (``"float32"``).
        bits: Bit width it counts at: its quantizer's precision when a quantizer
            is applied to it in the forward pass, else its dtype's width.
        trainable: Whether the model trains it.
        quantizer: Name of the quantizer applied to it, or ``None``.
        counted: ``False`` when an earlier layer already owns this variable
            (shared weights are counted once, at their first appearance).
    """

    name: str
    path: str
    shape: tuple[int, ...]
    dtype: str
    bits: int
    trainable: bool
    quantizer: str | None = None
    counted: bool = True

    @property
    def params(self) -> int:
        """Number of scalars in the variable."""
        return math.prod(self.shape)

    def to_dict(self) -> dict[str, Any]:
        """The weight's entry in the JSON document."""
        return {
            "name": self.name,
            "path": self.path,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "bits": self.bits,
            "trainable": self.trainable,
            "params": self.params,
            "quantizer": self.quantizer,
            "counted": self.counted,
        }


@dataclass(frozen=True)
class LayerProfile:
    """Counts for one layer (or operation, or nested model) of a model.

    Counts cover every call of the layer in the model (``calls``); the shapes
    are those of its first call. A nested model's ``layers`` describe one call
    of it. See ``docs/profile.md`` for the counting rules.
    """

    name: str
    type: str
    calls: int
    input_precision: int | None
    output_precision: int
    input_shapes: tuple[Shape, ...]
    output_shapes: tuple[Shape, ...]
    params: int
    trainable_params: int
    non_trainable_params: int
    params_by_bits: BitCounts
    inference_params: int
    inference_params_by_bits: BitCounts
    memory_bits: int
    memory_bits_8bit_floats: int
    macs: int
    macs_by_bits: BitCounts
    bops: int
    activation_elements: int
    activation_bytes: int
    peak_activation_bytes: int
    weights: tuple[WeightProfile, ...] = ()
    layers: tuple[LayerProfile, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def is_model(self) -> bool:
        """Whether this row is a nested model (its layers are in ``layers``)."""
        return bool(self.layers)

    def to_dict(self) -> dict[str, Any]:
        """The layer's entry in the JSON document (children under ``layers``)."""
        return {
            "name": self.name,
            "type": self.type,
            "calls": self.calls,
            "input_precision": self.input_precision,
            "output_precision": self.output_precision,
            "input_shape": _shapes_json(self.input_shapes),
            "output_shape": _shapes_json(self.output_shapes),
            "params": self.params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "params_by_bits": _bits_json(self.params_by_bits),
            "inference_params": self.inference_params,
            "inference_params_by_bits": _bits_json(self.inference_params_by_bits),
            "memory_bits": self.memory_bits,
            "memory_bits_8bit_floats": self.memory_bits_8bit_floats,
            "macs": self.macs,
            "macs_by_bits": _bits_json(self.macs_by_bits),
            "bops": self.bops,
            "activation_elements": self.activation_elements,
            "activation_bytes": self.activation_bytes,
            "peak_activation_bytes": self.peak_activation_bytes,
            "weights": [w.to_dict() for w in self.weights],
            "layers": [layer.to_dict() for layer in self.layers],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Totals:
    """Whole-model counts (sums over the top-level layers; ratios of those sums)."""

    params: int
    trainable_params: int
    non_trainable_params: int
    inference_params: int
    params_by_bits: BitCounts
    inference_params_by_bits: BitCounts
    binary_params: int
    float_params: int
    memory_bits: int
    memory_bytes: int
    memory_bytes_8bit_floats: int
    float32_equivalent_bytes: int
    compression: float | None
    memory_saving: float | None
    macs: int
    macs_by_bits: BitCounts
    binary_mac_ratio: float | None
    ternary_mac_ratio: float | None
    bops: int
    peak_activation_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """The ``totals`` object of the JSON document."""
        return {
            "params": self.params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "inference_params": self.inference_params,
            "params_by_bits": _bits_json(self.params_by_bits),
            "inference_params_by_bits": _bits_json(self.inference_params_by_bits),
            "binary_params": self.binary_params,
            "float_params": self.float_params,
            "memory_bits": self.memory_bits,
            "memory_bytes": self.memory_bytes,
            "memory_bytes_8bit_floats": self.memory_bytes_8bit_floats,
            "float32_equivalent_bytes": self.float32_equivalent_bytes,
            "compression": self.compression,
            "memory_saving": self.memory_saving,
            "macs": self.macs,
            "macs_by_bits": _bits_json(self.macs_by_bits),
            "binary_mac_ratio": self.binary_mac_ratio,
            "ternary_mac_ratio": self.ternary_mac_ratio,
            "bops": self.bops,
            "peak_activation_bytes": self.peak_activation_bytes,
        }


@dataclass(frozen=True)
class ModelProfile:
    """The profile of a Keras model: its layers (with their weights) and totals.

    Build one with :func:`bnncore.models.profile`. ``to_dict()`` gives the JSON
    document described in ``docs/profile.md``.
    """

    name: str
    type: str
    input_shapes: tuple[Shape, ...]
    output_shapes: tuple[Shape, ...]
    layers: tuple[LayerProfile, ...]
    totals: Totals
    notes: tuple[str, ...] = field(default=())

    def walk(self) -> Iterator[tuple[int, str, LayerProfile]]:
        """Every layer, nested ones included, depth first.

        Yields:
            ``(depth, path, layer)``: depth 0 for the model's own layers; the
            path joins the names of the enclosing models with ``/``.
        """

        def visit(
            rows: tuple[LayerProfile, ...], depth: int, prefix: str
        ) -> Iterator[tuple[int, str, LayerProfile]]:
            for row in rows:
                path = f"{prefix}{row.name}"
                yield depth, path, row
                yield from visit(row.layers, depth + 1, f"{path}/")

        yield from visit(self.layers, 0, "")

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: ``schema_version``, ``model``, ``layers``, ``totals``."""
        return {
            "schema_version": SCHEMA_VERSION,
            "model": {
                "name": self.name,
                "type": self.type,
                "input_shape": _shapes_json(self.input_shapes),
                "output_shape": _shapes_json(self.output_shapes),
                "input_shapes": [_shape_json(s) for s in self.input_shapes],
                "output_shapes": [_shape_json(s) for s in self.output_shapes],
                "notes": list(self.notes),
            },
            "layers": [layer.to_dict() for layer in self.layers],
            "totals": self.totals.to_dict(),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """``to_dict()`` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

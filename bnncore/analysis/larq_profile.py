"""Larq's programmatic profile: ``ModelProfile(model)`` and its ``LayerProfile`` s.

``larq.models`` builds its ``summary`` from these objects, and Larq code reads
them directly (``ModelProfile(model).layer_profiles[2].op_count("mac", 1)``).
The classes here have Larq's attributes and methods, computed from bnncore's
profile records (:mod:`bnncore.analysis.records`: each weight's bit width and
trainability, each layer's output shapes) with **Larq's** counting rules, which
differ from :func:`bnncore.models.profile` (``docs/profile.md`` compares them):

* BatchNormalization: ``beta`` is left out when the layer has a moving mean,
  ``gamma`` when it has a moving variance; the moving statistics count, so a
  ``BatchNormalization(scale=False)`` of C channels counts 2·C values.
* A weight without a quantizer counts 32 bits, whatever its dtype.
* MACs only for the layer types Larq lists (Dense, Conv1D, Conv2D, and the
  tf-keras subclasses of those: Conv1DTranspose, Conv2DTranspose; and
  DepthwiseConv2D, SeparableConv1D/2D): every non-bias weight × the output
  pixels of the layer's first call (the 2nd and 3rd dimensions of a 4D
  output, the 2nd of a 3D output, 1 for a 2D output), at
  max(input precision or 32, weight bits).
* ``op_count`` is ``None`` (printed ``?``) for layers other than those and
  Flatten, BatchNormalization, MaxPooling1D/2D and AveragePooling1D/2D.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras

from bnncore import quantizers
from bnncore.analysis import records
from bnncore.analysis.counting import check_built, profile_layer, profile_model
from bnncore.analysis.larq_text import bitsize_as_str, number_as_readable_str
from bnncore.utils import memory_as_readable_str

__all__ = [
    "LayerProfile",
    "ModelProfile",
    "OperationProfile",
    "WeightProfile",
]

FLOAT_BITS = 32

MAC_LAYERS: tuple[type, ...] = (
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)
"""Layers whose MACs Larq counts (Quant* layers are subclasses of these)."""

OP_COUNTED_LAYERS: tuple[type, ...] = (
    keras.layers.Flatten,
    keras.layers.BatchNormalization,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.MaxPooling1D,
    keras.layers.AveragePooling1D,
    *MAC_LAYERS,
)
"""Layers whose ``op_count`` is a number (0 without MACs) rather than ``None``."""

# BatchNormalization's (parameter, statistic) pairs: the parameter folds into
# the statistic when both exist.
_FOLDED_PAIRS = (("beta", "moving_mean"), ("gamma", "moving_variance"))

LarqShape = tuple[int, ...]


def _larq_shape(shape: records.Shape) -> LarqShape:
    """A shape with unknown (and zero) dimensions as -1, as Larq shows them."""
    return tuple(d if d else -1 for d in shape)


@dataclass(frozen=True)
class WeightProfile:
    """One weight as Larq counts it.

    Attributes:
        name: The variable's name (``"kernel"``).
        shape: Its shape.
        bitwidth: Its quantizer's precision, else 32.
        trainable: Whether the model trains it.
    """

    name: str
    shape: tuple[int, ...]
    bitwidth: int
    trainable: bool = True

    @classmethod
    def from_record(cls, weight: records.WeightProfile) -> WeightProfile:
        """Larq's view of a weight of bnncore's profile."""
        bits = weight.bits if weight.quantizer is not None else FLOAT_BITS
        return cls(weight.name, weight.shape, bits, weight.trainable)

    @property
    def count(self) -> int:
        """Number of scalars."""
        return math.prod(self.shape)

    @property
    def memory(self) -> int:
        """Bits: ``bitwidth`` × ``count``."""
        return self.bitwidth * self.count

    @property
    def fp_equivalent_memory(self) -> int:
        """Bits if every value were a float32."""
        return FLOAT_BITS * self.count

    @property
    def int8_fp_weights_memory(self) -> int:
        """Bits if weights wider than 8 bits were stored at 8."""
        return min(self.bitwidth, 8) * self.count

    def is_bias(self) -> bool:
        """Whether the weight is a bias (its name contains ``"bias"``)."""
        return "bias" in self.name


@dataclass(frozen=True)
class OperationProfile:
    """A count of operations of one precision (``op_type`` is ``"mac"``)."""

    n: int
    precision: int
    op_type: str


def _folded(weights: Iterable[records.WeightProfile]) -> list[records.WeightProfile]:
    kept = list(weights)
    for parameter, statistic in _FOLDED_PAIRS:
        names = [w.name for w in kept]
        if parameter in names and statistic in names:
            del kept[names.index(parameter)]
    return kept


def _format_entry(value: int | float | None, units: int = 1) -> int | float | str:
    """A table number: ``"?"`` when unknown, divided by ``units`` unless 0."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "?"
    if value == 0 or units == 1:
        return value
    return value / units


TableConfig = Mapping[str, Any]
TableRow = list[int | float | str]


class LayerProfile:
    """Larq's profile of one layer.

    Args:
        layer: A built Keras layer.
        record: The layer's row in :func:`bnncore.models.profile` (profiled on
            its own, with the shapes Keras recorded, when not given).

    Attributes:
        name: The layer's name.
        record: bnncore's profile row it is computed from.
        weight_profiles: Its weights (BatchNorm's folded ones left out).
        op_profiles: Its MACs by weight.
    """

    def __init__(self, layer: Any, record: records.LayerProfile | None = None) -> None:
        self._layer = layer
        self.name: str = layer.name
        self.record = record if record is not None else profile_layer(layer)
        weights = list(self.record.weights)
        if isinstance(layer, keras.layers.BatchNormalization):
            weights = _folded(weights)
        self.weight_profiles = [WeightProfile.from_record(w) for w in weights]
        self.op_profiles: list[OperationProfile] = []
        pixels = self.output_pixels if isinstance(layer, MAC_LAYERS) else None
        if pixels:
            input_bits = self.input_precision or FLOAT_BITS
            self.op_profiles = [
                OperationProfile(
                    n=weight.count * pixels,
                    precision=max(input_bits, weight.bitwidth),
                    op_type="mac",
                )
                for weight in self.weight_profiles
                if not weight.is_bias()
            ]

    # -- memory -----------------------------------------------------------

    @property
    def memory(self) -> int:
        """Bits of the weights at their bit widths."""
        return sum(p.memory for p in self.weight_profiles)

    @property
    def int8_fp_weights_memory(self) -> int:
        """Bits with weights wider than 8 bits stored at 8."""
        return sum(p.int8_fp_weights_memory for p in self.weight_profiles)

    @property
    def fp_equivalent_memory(self) -> int:
        """Bits with every weight a float32."""
        return sum(p.fp_equivalent_memory for p in self.weight_profiles)

    # -- counts -----------------------------------------------------------

    def weight_count(
        self, bitwidth: int | None = None, trainable: bool | None = None
    ) -> int:
        """Weights of that bit width and trainability (``None``: any)."""
        return sum(
            p.count
            for p in self.weight_profiles
            if (bitwidth is None or p.bitwidth == bitwidth)
            and (trainable is None or p.trainable == trainable)
        )

    def op_count(
        self, op_type: str | None = None, precision: int | None = None
    ) -> int | None:
        """MACs of that precision (``None``: all); ``None`` when not counted.

        Raises:
            ValueError: if ``op_type`` is not ``"mac"``.
        """
        _check_op_type(op_type)
        if not isinstance(self._layer, OP_COUNTED_LAYERS) or not self.output_pixels:
            return None
        return sum(
            op.n
            for op in self.op_profiles
            if (precision is None or op.precision == precision)
            and op.op_type == op_type
        )

    # -- shapes and precisions ---------------------------------------------

    @property
    def input_precision(self) -> int | None:
        """Precision of the layer's ``input_quantizer``; ``None`` without one."""
        return quantizers.get_precision(getattr(self._layer, "input_quantizer", None))

    @property
    def output_shape(self) -> LarqShape | list[LarqShape] | None:
        """Output shape of the first call (-1 for unknown dimensions).

        ``None`` when Keras recorded none (layers of subclassed models); a list
        for several outputs.
        """
        shapes = self.record.output_shapes
        if not shapes:
            return None
        if len(shapes) == 1:
            return _larq_shape(shapes[0])
        return [_larq_shape(s) for s in shapes]

    @property
    def output_shape_str(self) -> str:
        """``output_shape`` as text; ``"multiple"`` when unknown."""
        return str(self.output_shape or "multiple")

    @property
    def output_pixels(self) -> int | None:
        """Pixels of one feature map (1 for a 2D output); ``None`` if unknown.

        As Larq: the 2nd × 3rd dimensions of a 4D output, the 2nd of a 3D one.
        Outputs of other ranks, or several outputs, give ``None``.
        """
        shape = self.output_shape
        if not isinstance(shape, tuple):
            return None
        if len(shape) == 4:
            return shape[1] * shape[2]
        if len(shape) == 3:
            return shape[1]
        if len(shape) == 2:
            return 1
        return None

    @property
    def unique_param_bidtwidths(self) -> list[int]:
        """The bit widths of the weights, sorted (Larq's spelling)."""
        return sorted({p.bitwidth for p in self.weight_profiles})

    @property
    def unique_op_precisions(self) -> list[int]:
        """The precisions of the MACs, sorted."""
        return sorted({op.precision for op in self.op_profiles})

    def generate_table_row(self, table_config: TableConfig) -> TableRow:
        """The layer's row in Larq's layer table (numbers unformatted)."""
        row: TableRow = [self.name, self.input_precision or "-", self.output_shape_str]
        units = table_config["param_units"]
        row += [_format_entry(self.weight_count(b), units) for b in _bits(table_config)]
        row.append(_format_entry(self.memory, table_config["memory_units"]))
        row += [
            _format_entry(self.op_count("mac", p), table_config["mac_units"])
            for p in table_config["mac_precisions"]
        ]
        return row


def _bits(table_config: TableConfig) -> Sequence[int]:
    return table_config["param_bidtwidths"]


def _check_op_type(op_type: str | None) -> None:
    if op_type != "mac":
        raise ValueError(
            "Only multiply-accumulates are counted: op_type must be 'mac'. "
            f"Received: op_type={op_type!r}"
        )


def _layer_profile(layer: Any, record: records.LayerProfile | None) -> LayerProfile:
    if isinstance(layer, keras.Model):
        return ModelProfile(layer, record)
    return LayerProfile(layer, record)


class ModelProfile(LayerProfile):
    """Larq's profile of a model: a :class:`LayerProfile` per layer.

    A nested model is a :class:`ModelProfile` among the layer profiles; its
    row sums its layers, and its input precision is its first layer's.

    Example:
        >>> profile = bnncore.models.ModelProfile(model)
        >>> profile.weight_count(bitwidth=1), profile.op_count("mac", 1)
        >>> [p.name for p in profile.layer_profiles]

    Args:
        model: A built ``keras.Model``.
        record: The model's bnncore profile (or a nested model's row in it);
            computed when not given.

    Raises:
        TypeError: if ``model`` is not a ``keras.Model``.
        ValueError: if the model or one of its layers is not built.
    """

    def __init__(
        self,
        model: Any,
        record: records.ModelProfile | records.LayerProfile | None = None,
    ) -> None:
        if record is None:
            check_built(model)
            record = profile_model(model)
        self._layer = model
        self.name = model.name
        self.record = record  # type: ignore[assignment]
        rows = {row.name: row for row in record.layers}
        self.layer_profiles: list[LayerProfile] = [
            _layer_profile(layer, rows.get(layer.name)) for layer in model.layers
        ]

    @property
    def weight_profiles(self) -> list[WeightProfile]:  # type: ignore[override]
        """The weights of every layer, in order."""
        return [w for lp in self.layer_profiles for w in lp.weight_profiles]

    @property
    def op_profiles(self) -> list[OperationProfile]:  # type: ignore[override]
        """The MACs of every layer, in order."""
        return [op for lp in self.layer_profiles for op in lp.op_profiles]

    @property
    def memory(self) -> int:
        return sum(lp.memory for lp in self.layer_profiles)

    @property
    def int8_fp_weights_memory(self) -> int:
        return sum(lp.int8_fp_weights_memory for lp in self.layer_profiles)

    @property
    def fp_equivalent_memory(self) -> int:
        return sum(lp.fp_equivalent_memory for lp in self.layer_profiles)

    def weight_count(
        self, bitwidth: int | None = None, trainable: bool | None = None
    ) -> int:
        return sum(lp.weight_count(bitwidth, trainable) for lp in self.layer_profiles)

    def op_count(self, op_type: str | None = None, bitwidth: int | None = None) -> int:
        """MACs of that precision over all layers (layers without count as 0)."""
        _check_op_type(op_type)
        return sum(lp.op_count(op_type, bitwidth) or 0 for lp in self.layer_profiles)

    @property
    def unique_param_bidtwidths(self) -> list[int]:
        layers = self.layer_profiles
        return sorted({b for lp in layers for b in lp.unique_param_bidtwidths})

    @property
    def unique_op_precisions(self) -> list[int]:
        layers = self.layer_profiles
        return sorted({p for lp in layers for p in lp.unique_op_precisions})

    @property
    def input_precision(self) -> int | None:
        """The first layer's input precision (``None`` for an empty model)."""
        return self.layer_profiles[0].input_precision if self.layer_profiles else None

    @property
    def output_shape(self) -> LarqShape | list[LarqShape] | None:
        """The last layer's output shape."""
        return self.layer_profiles[-1].output_shape if self.layer_profiles else None

    # -- Larq's tables ------------------------------------------------------

    def _table_config(self, include_macs: bool) -> dict[str, Any]:
        return {
            "param_bidtwidths": self.unique_param_bidtwidths,
            "mac_precisions": self.unique_op_precisions if include_macs else [],
            "param_units": 1,
            "memory_units": 8 * 1024,
            "mac_units": 1,
        }

    def generate_table(self, include_macs: bool = True) -> list[TableRow]:
        """Larq's layer table: a header, a row per layer, a total row."""
        config = self._table_config(include_macs)
        header: TableRow = [
            "Layer",
            "Input prec.\n(bit)",
            "Outputs",
            *(f"# {b}-bit\nx {config['param_units']}" for b in _bits(config)),
            f"Memory\n({bitsize_as_str(config['memory_units'])})",
            *(f"{p}-bit MACs" for p in config["mac_precisions"]),
        ]
        total: TableRow = ["Total", "", ""]
        total += [
            _format_entry(self.weight_count(b), config["param_units"])
            for b in _bits(config)
        ]
        total.append(_format_entry(self.memory, config["memory_units"]))
        total += [
            _format_entry(self.op_count("mac", p), config["mac_units"])
            for p in config["mac_precisions"]
        ]
        rows = [lp.generate_table_row(config) for lp in self.layer_profiles]
        return [header, *rows, total]

    def generate_summary(self, include_macs: bool = True) -> list[TableRow]:
        """Larq's totals: parameter counts, sizes, compression, MACs."""
        summary: list[TableRow] = [
            ["Total params", number_as_readable_str(self.weight_count())],
            [
                "Trainable params",
                number_as_readable_str(self.weight_count(trainable=True)),
            ],
            [
                "Non-trainable params",
                number_as_readable_str(self.weight_count(trainable=False)),
            ],
            ["Model size", memory_as_readable_str(self.memory)],
            [
                "Model size (8-bit FP weights)",
                memory_as_readable_str(self.int8_fp_weights_memory),
            ],
            ["Float-32 Equivalent", memory_as_readable_str(self.fp_equivalent_memory)],
            # Larq's ratio is memory / float-32 memory (the inverse of a
            # compression factor); bnncore's profile has float-32 / memory.
            [
                "Compression Ratio of Memory",
                self.memory / max(1e-8, self.fp_equivalent_memory),
            ],
        ]
        if include_macs:
            macs = self.op_count("mac")
            summary.append(["Number of MACs", number_as_readable_str(macs)])
            for bits, label in ((1, "binarized"), (2, "ternarized")):
                ratio = self.op_count("mac", bits) / max(1, macs)
                if ratio > 0:
                    summary.append([f"Ratio of MACs that are {label}", f"{ratio:.4f}"])
        return summary

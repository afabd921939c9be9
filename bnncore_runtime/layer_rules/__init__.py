"""The layer rules: what each layer type is, in one table (no TensorFlow).

:data:`RULES` maps a layer type (the Keras class name, or a bnncore ``Quant*``
name) to its :class:`LayerRule`, which says, from the layer's constructor
arguments and its input shapes (batch excluded):

* ``output_shape``: the output shape, or :class:`RuleError` when the inputs
  do not fit (rank, sizes, merges) or an argument does not fit the inputs;
* ``weights``: the weights the layer creates (name, shape, dtype, trainable),
  and ``quantized``: which constructor argument quantizes which weight;
* ``macs``: the kernels that multiply inputs and how many times each of their
  weights is used in one call at batch 1 (``None``: the type makes no MACs);
* ``fold``: the inference form of a normalization that folds into one scale
  and one offset per channel (BatchNormalization);
* ``padded`` and :mod:`bnncore_runtime.geometry`: the window geometry;
* ``intermediates``: the elements of the tensors the layer's operations create
  besides its output (:func:`intermediate_elements`, :func:`fixed_elements`).

The profile (``bnncore.analysis.counting``) applies the table to built Keras
layers, the service's estimate (``bnncore_service.estimate``) to a definition
before anything is built, so both count alike by construction. Arguments are
read as attributes (``layer.units``, ``layer.kernel_size``): a built Keras
layer, a service layer spec and a ``types.SimpleNamespace`` all work.

Adding a layer type = one entry in the table + its tests. The entries are
``LayerRule(...)`` calls in :mod:`~bnncore_runtime.layer_rules.weighted` (layers
with weights) and :mod:`~bnncore_runtime.layer_rules.shaping` (the others),
built from the helpers of :mod:`~bnncore_runtime.layer_rules.base`; the tests
(``tests/bnncore/analysis/test_layer_rules.py``) check its answers against
hand-computed counts and against the built Keras layer. For instance, a layer
without weights that doubles the channels, creating one temporary the size of
its output::

    LayerRule(
        "ChannelDouble",
        lambda layer, shapes: (*shapes[0][:-1], 2 * shapes[0][-1]),
        intermediates=per_output(1),
    )

The service then accepts the type once its spec exists (its schemas list the
estimable types of this table whose ``definable`` is left true), and
estimates and profiles it alike.

The runtime (:mod:`bnncore_runtime.layers`) reads its output and weight
shapes from the table too, after its own checks of an export's configs.

Modules: :mod:`.base` (the types and shared helpers), :mod:`.weighted`,
:mod:`.shaping`, :mod:`.memory` (intermediate tensors: the factors of
quantizers and activations).

Example:
    >>> from types import SimpleNamespace
    >>> from bnncore_runtime.layer_rules import rule_for
    >>> rule = rule_for("Conv2D")
    >>> conv = SimpleNamespace(filters=8, kernel_size=3, strides=1,
    ...                        padding="same", groups=1, use_bias=True)
    >>> out = rule.output_shape(conv, [(32, 32, 3)])
    >>> out, [w.shape for w in rule.weights(conv, [(32, 32, 3)], out)]
    ((32, 32, 8), [(3, 3, 3, 8), (8,)])
    >>> rule.macs(conv, [(32, 32, 3)], out)
    (MacTerm(weight='kernel', positions=1024),)
"""

from __future__ import annotations

from typing import Any

from bnncore_runtime.layer_rules import shaping, weighted
from bnncore_runtime.layer_rules.base import (
    Fold,
    LayerArgs,
    LayerRule,
    MacsRule,
    MacTerm,
    OutputRule,
    RuleError,
    Shape,
    Weight,
    WeightsRule,
    dtype_bits,
    layer_type,
)
from bnncore_runtime.layer_rules.memory import (
    ACTIVATION_FACTORS,
    DEFAULT_FACTOR,
    QUANTIZER_FACTORS,
    fixed_elements,
    intermediate_elements,
)

__all__ = [
    "ACTIVATION_FACTORS",
    "DEFAULT_FACTOR",
    "QUANTIZER_FACTORS",
    "RULES",
    "Fold",
    "LayerArgs",
    "LayerRule",
    "MacTerm",
    "MacsRule",
    "OutputRule",
    "RuleError",
    "Shape",
    "Weight",
    "WeightsRule",
    "dtype_bits",
    "fixed_elements",
    "intermediate_elements",
    "layer_type",
    "rule_for",
    "rule_of",
]

RULES: dict[str, LayerRule] = {
    rule.name: rule for rule in (*weighted.rules(), *shaping.rules())
}
"""Layer type → its rules."""


def rule_for(name: str) -> LayerRule:
    """The rule of the layer type ``name``.

    Raises:
        KeyError: naming the type and the known ones.
    """
    try:
        return RULES[name]
    except KeyError:
        raise KeyError(
            f"No layer rule for type {name!r} (known: {', '.join(sorted(RULES))})"
        ) from None


def rule_of(layer: Any) -> LayerRule | None:
    """The rule of a layer object: of its class or its nearest base class in
    the table (a subclass of ``Dense`` counts as a ``Dense``), else ``None``."""
    for cls in type(layer).__mro__:
        rule = RULES.get(cls.__name__)
        if rule is not None:
            return rule
    return None

"""Intermediate tensors: what a layer's operations create besides its output.

The elements per element of each quantizer and activation (from TensorFlow's
graph of each), and the per-layer counts built on them:
:func:`intermediate_elements` (per row) and :func:`fixed_elements`
(independent of the batch). ``tests/service/hostile/test_hostile_memory.py``
checks them against the graphs TensorFlow traces.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from bnncore_runtime.layer_rules.base import (
    Factor,
    LayerArgs,
    LayerRule,
    Shape,
    no_weights,
    padded_elements,
)

DEFAULT_FACTOR = 12
"""Elements created per input element by an elementwise function missing from
the tables below (a test fails when an allowed one is missing)."""

QUANTIZER_FACTORS: dict[str, int] = {
    "SteSign": 4,
    "ApproxSign": 4,
    "SwishSign": 4,
    "SteHeaviside": 4,
    "MagnitudeAwareSign": 11,
    "SteTern": 8,
    "DoReFa": 6,
    "NoOp": 1,
}
"""Elements a quantizer's operations create per input element (its output
included), from TensorFlow's graph of each. Keyed by class name: exactly the
classes of ``bnncore.quantizers.registry()``, which this TF-free table cannot
import (``tests/bnncore/test_quantizer_name_lists.py`` holds the two equal)."""

ACTIVATION_FACTORS: dict[str, int] = {
    "linear": 0,
    "relu": 1,
    "relu6": 1,
    "sigmoid": 1,
    "hard_sigmoid": 4,
    "tanh": 1,
    "softmax": 2,
    "log_softmax": 2,
    "softplus": 1,
    "softsign": 1,
    "elu": 1,
    "selu": 1,
    "gelu": 6,
    "silu": 4,
    "swish": 4,
    "hard_silu": 5,
    "hard_swish": 5,
    "leaky_relu": 1,
    "exponential": 1,
    "mish": 4,
    "hard_tanh": 3,
    "leaky_tanh": 11,
    "ste_sign": 4,
    "approx_sign": 4,
    "swish_sign": 4,
    "ste_heaviside": 4,
    "magnitude_aware_sign": 11,
    "ste_tern": 8,
    "dorefa_quantizer": 6,
}
"""Elements an activation creates per element (its output included); a
quantizer function's entry equals its class's in :data:`QUANTIZER_FACTORS`."""


def intermediate_elements(
    rule: LayerRule,
    layer: LayerArgs,
    shapes: Sequence[Shape],
    out: Shape,
    factor: Factor,
) -> int:
    """Elements of every tensor a layer's operations create besides its output.

    Common to all types: the quantized input, the activation's temporaries,
    the bias addition's result and the padded input (``padding="same"``);
    then the type's own (:attr:`LayerRule.intermediates`).

    Args:
        rule: The layer's rule.
        layer: Its arguments.
        shapes: Its input shapes (batch excluded).
        out: Its output shape.
        factor: Elements per element of the quantizer or activation held in an
            argument (:data:`QUANTIZER_FACTORS`, :data:`ACTIVATION_FACTORS`).
    """
    first, o = math.prod(shapes[0]), math.prod(out)
    total = factor("input_quantizer") * first + factor("activation") * o
    if getattr(layer, "use_bias", False):
        total += o  # the bias addition writes a new tensor
    if rule.padded:
        total += padded_elements(layer, tuple(shapes[0]), rule.rank)
    return total + rule.intermediates(layer, shapes, out)


def fixed_elements(
    rule: LayerRule,
    layer: LayerArgs,
    shapes: Sequence[Shape],
    out: Shape,
    factor: Factor,
    weights: Iterable[Any] | None = None,
) -> int:
    """Batch-independent elements: each quantized kernel times its
    quantizer's factor, plus the type's own (:attr:`LayerRule.fixed`).

    Args:
        rule / layer / shapes / out / factor: As :func:`intermediate_elements`.
        weights: The layer's weights (``name``, ``shape``) if already known,
            else the rule's.
    """
    if weights is None:
        weights = (rule.weights or no_weights)(layer, shapes, out)
    sizes = {w.name: math.prod(w.shape) for w in weights}
    total = sum(
        factor(argument) * sizes.get(weight, 0) for argument, weight in rule.quantized
    )
    return total + rule.fixed(layer, shapes, out)

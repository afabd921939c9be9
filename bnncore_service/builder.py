"""Definition → analytic estimate → Keras model.

The builder constructs every layer by calling an allow-listed constructor with
validated arguments (:meth:`bnncore_service.schemas.layers.LayerSpec.create`); client
data never reaches Keras deserialization. Zoo definitions call
``bnncore.zoo.get(name)(input_shape=..., num_classes=..., include_top=...)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bnncore_service.config import Settings
from bnncore_service.estimate import DefinitionError, LimitError, estimate
from bnncore_service.schemas.definitions import Graph, Sequential, Zoo
from bnncore_service.schemas.layers import Input
from bnncore_service.schemas.reports import Estimate

__all__ = ["Plan", "build", "plan", "zoo_names"]


@dataclass(frozen=True)
class Plan:
    """A validated definition ready to build.

    Attributes:
        definition: The validated definition.
        normalized: Its canonical form (what is stored and hashed).
        content_hash: SHA-256 of the canonical form.
        estimate: The analytic estimate, or ``None`` for a zoo definition
            (whose size is fixed by its name and input shape).
    """

    definition: Any
    normalized: dict[str, Any]
    content_hash: str
    estimate: Estimate | None


def zoo_names() -> list[str]:
    """Names of the zoo architectures, or ``[]`` while ``bnncore.zoo`` is absent."""
    try:
        from bnncore import zoo

        return sorted(zoo.names())
    except Exception:  # absent or broken: the service still runs without it
        return []


def plan(definition: Any, settings: Settings) -> Plan:
    """Validates a definition's sizes against the limits before anything is built.

    Raises:
        LimitError: a configured limit is exceeded.
        DefinitionError: the definition cannot make a model.
    """
    from bnncore_service.schemas.definitions import content_hash

    if isinstance(definition, Zoo):
        normalized = definition.normalized()
        digest = content_hash(normalized)
        names = zoo_names()
        if definition.zoo not in names:
            raise DefinitionError(
                f"definition.zoo: unknown architecture {definition.zoo!r}; "
                f"available: {', '.join(names) or 'none (bnncore.zoo is missing)'}"
            )
        for n in definition.input_shape:
            if n > settings.max_dimension:
                raise LimitError(
                    f"definition.input_shape: dimension {n:,} exceeds the limit "
                    f"{settings.max_dimension:,} (BNN_MAX_DIMENSION)"
                )
        return Plan(definition, normalized, digest, None)
    # Sizes first: nothing (not even the canonical form) before the limits pass.
    layers = getattr(definition, "layers", None)
    if layers is not None and len(layers) > settings.max_layers:
        raise LimitError(
            f"definition.layers: layer count {len(layers):,} exceeds the limit "
            f"{settings.max_layers:,} (BNN_MAX_LAYERS)"
        )
    offset = 1 if isinstance(definition, Sequential) else 0
    result = estimate(definition.graph(), settings, offset=offset)
    normalized = definition.normalized()
    return Plan(definition, normalized, content_hash(normalized), result)


def _build_graph(graph: Graph) -> Any:
    import keras

    tensors: dict[str, Any] = {}
    inputs = []
    for layer in graph.layers:
        if isinstance(layer, Input):
            tensor = layer.create()
            inputs.append(tensor)
        else:
            sources = [tensors[name] for name in layer.inputs or []]
            tensor = layer.create()(sources if layer._min_inputs > 1 else sources[0])
        tensors[layer.name] = tensor
    outputs = [tensors[name] for name in graph.outputs]
    return keras.Model(
        inputs=inputs if len(inputs) > 1 else inputs[0],
        outputs=outputs if len(outputs) > 1 else outputs[0],
        name=graph.name,
    )


def build(built_plan: Plan, settings: Settings) -> Any:
    """Builds the Keras model of a plan (blocking TensorFlow work).

    Raises:
        DefinitionError: Keras refused the arguments (a message naming them).
        LimitError: a zoo model larger than the limits.
    """
    definition = built_plan.definition
    try:
        if isinstance(definition, Zoo):
            from bnncore import zoo

            model = zoo.get(definition.zoo)(
                input_shape=tuple(definition.input_shape),
                num_classes=definition.num_classes,
                include_top=definition.include_top,
            )
        else:
            model = _build_graph(definition.graph())
    except (ValueError, TypeError) as error:
        raise DefinitionError(f"definition: Keras refused the model: {error}") from None
    if isinstance(definition, Zoo):
        params = sum(math.prod(w.shape) for w in model.weights)
        if params > settings.max_params:
            raise LimitError(
                f"definition.zoo: {definition.zoo} has {params:,} params, over the "
                f"limit {settings.max_params:,} (BNN_MAX_PARAMS)"
            )
    return model

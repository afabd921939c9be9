"""Where each layer of a model is called, with the shapes of every call.

Counting MACs and activations needs, for every call of a layer inside a model,
the shapes going in and out and which layer produced each input. Only public
Keras APIs are used:

* functional models: ``model.operations`` and ``model.get_config()``, whose
  ``inbound_nodes`` list every call of an operation in this model, with the
  shape of each input and the ``(operation, call, output)`` that produced it
  (read by :mod:`bnncore_runtime.keras_config`);
* Sequential models: ``model.layers`` in order, one call each;
* subclassed models, and functional models whose config cannot be built (a
  custom layer without ``get_config``): one call per layer, shapes from
  ``layer.input`` / ``layer.output`` when Keras recorded them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import keras

from bnncore_runtime.keras_config import History, KerasTensor, read_model

__all__ = ["Call", "Site", "call_sites", "flat_shapes", "model_kind", "recorded_call"]

Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class Call:
    """One call of an operation.

    Attributes:
        input_shapes: Shapes of the tensors passed in, flattened.
        input_sources: For each input, the name of the operation that produced
            it (``None`` when unknown).
        output_shapes: Shapes of the outputs, flattened (empty when unknown).
    """

    input_shapes: tuple[Shape, ...]
    input_sources: tuple[str | None, ...]
    output_shapes: tuple[Shape, ...]


@dataclass(frozen=True)
class Site:
    """An operation of a model and its calls in that model."""

    op: Any
    calls: tuple[Call, ...]


def model_kind(model: keras.Model) -> str:
    """``"functional"``, ``"sequential"`` or ``"subclassed"``."""
    if isinstance(model, keras.Sequential):
        return "sequential"
    if hasattr(model, "operations") and hasattr(model, "get_config"):
        return "functional"
    return "subclassed"


def _shape(value: Any) -> Shape:
    return tuple(None if d is None else int(d) for d in value)


def flat_shapes(tensors: Any) -> tuple[Shape, ...]:
    """The shapes of a (nested) structure of tensors, flattened."""
    return tuple(_shape(t.shape) for t in keras.tree.flatten(tensors))


def _recorded(op: Any, attribute: str) -> tuple[Shape, ...] | None:
    """``op.input`` / ``op.output`` shapes, or ``None`` if Keras has none."""
    try:
        return flat_shapes(getattr(op, attribute))
    except (AttributeError, ValueError, RuntimeError):
        return None


def recorded_call(op: Any) -> Call:
    """One call of ``op`` with the shapes Keras recorded (empty when none).

    For profiling a layer on its own, outside of any model's graph.
    """
    input_shapes = _recorded(op, "input") or ()
    output_shapes = _recorded(op, "output") or ()
    return Call(input_shapes, (None,) * len(input_shapes), output_shapes)


def _is_shape(value: Any) -> bool:
    return isinstance(value, tuple | list) and all(
        d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in value
    )


def _inferred_outputs(op: Any, input_shapes: tuple[Shape, ...]) -> tuple[Shape, ...]:
    """Output shapes of ``op`` called on ``input_shapes``, or ``()`` if unknown."""
    if _recorded(op, "input") == input_shapes:
        recorded = _recorded(op, "output")
        if recorded is not None:
            return recorded
    compute = getattr(op, "compute_output_shape", None)
    if compute is None or not input_shapes:
        return ()
    argument = input_shapes[0] if len(input_shapes) == 1 else list(input_shapes)
    try:
        result = compute(argument)
    except Exception:  # any layer may refuse; the shape then stays unknown
        return ()
    if _is_shape(result):
        return (_shape(result),)
    try:
        return tuple(_shape(s) for s in keras.tree.flatten(result) if _is_shape(s))
    except Exception:
        return ()


# ----------------------------------------------------------------------------
# Functional models: read get_config()
# ----------------------------------------------------------------------------


def _functional_sites(model: keras.Model) -> list[Site]:
    config = read_model(model.get_config(), kind="functional")
    # Every call's input tensors, and the output shapes that consumers saw.
    inputs: dict[str, list[tuple[KerasTensor, ...]]] = {}
    seen_outputs: dict[History, Shape] = {}
    for layer in config.layers:
        inputs[layer.name] = [call.tensors for call in layer.calls]
        for call in layer.calls:
            for tensor in call.tensors:
                if tensor.shape is None:
                    raise ValueError(f"{tensor.path}: the config states no shape")
                seen_outputs[tensor.history] = tensor.shape

    sites = []
    for op in model.operations:
        if isinstance(op, keras.layers.InputLayer):
            continue
        n_outputs = len(_recorded(op, "output") or ())
        calls = []
        for index, tensors in enumerate(inputs.get(op.name, [])):
            input_shapes = tuple(cast(Shape, t.shape) for t in tensors)
            keys = [History(op.name, index, t) for t in range(n_outputs)]
            if n_outputs and all(key in seen_outputs for key in keys):
                outputs = tuple(seen_outputs[key] for key in keys)
            else:
                outputs = _inferred_outputs(op, input_shapes)
            calls.append(
                Call(
                    input_shapes=input_shapes,
                    input_sources=tuple(t.history.layer for t in tensors),
                    output_shapes=outputs,
                )
            )
        sites.append(Site(op=op, calls=tuple(calls)))
    return sites


# ----------------------------------------------------------------------------
# Sequential and subclassed models: one call per layer
# ----------------------------------------------------------------------------


def _listed_sites(model: keras.Model, chained: bool) -> list[Site]:
    sites = []
    previous: str | None = None
    for layer in getattr(model, "operations", None) or model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        input_shapes = _recorded(layer, "input") or ()
        output_shapes = _recorded(layer, "output") or ()
        sources = ((previous if chained else None),) * len(input_shapes)
        call = Call(input_shapes, sources, output_shapes)
        sites.append(Site(op=layer, calls=(call,)))
        previous = layer.name
    return sites


def call_sites(model: keras.Model) -> list[Site]:
    """The operations of ``model`` (input layers excluded) with their calls.

    Args:
        model: A built Keras model.

    Returns:
        One :class:`Site` per operation, in the model's order. A layer shared
        within the model has several calls; a layer appears once.
    """
    kind = model_kind(model)
    if kind == "functional":
        try:
            return _functional_sites(model)
        except (NotImplementedError, KeyError, TypeError, ValueError):
            # A layer without a usable get_config: fall back to one call each.
            return _listed_sites(model, chained=False)
    return _listed_sites(model, chained=kind == "sequential")

"""A Keras model as a flat list of nodes over named values.

Functional models are read from their public config (``get_config()``, whose
``inbound_nodes`` record every call with its tensor arguments; read by
:mod:`bnncore_runtime.keras_config`) and their ``operations``; Sequential
models are a chain of their layers. Nested Functional/Sequential models are
inlined. Anything else (a subclassed model)
raises :class:`UnsupportedGraphError` and is run whole by Keras.
"""

from __future__ import annotations

from typing import Any

import keras

from bnncore_runtime.graph import (
    Graph,
    Node,
    TensorRef,
    UnsupportedGraphError,
    ValueId,
    add_extra_outputs,
    identity,
    prune,
    resolve_aliases,
    substitute,
    tensor_refs,
    toposort,
)
from bnncore_runtime.keras_config import (
    KerasConfigError,
    KerasTensor,
    ModelConfig,
    read_model,
)

__all__ = [
    "Graph",
    "Node",
    "TensorRef",
    "UnsupportedGraphError",
    "ValueId",
    "parse",
    "substitute",
]


def _is_functional(model: Any) -> bool:
    if isinstance(model, keras.Sequential):
        return False
    if not isinstance(model, keras.Model):
        return False
    try:
        config = model.get_config()
    except Exception:
        return False
    return isinstance(config, dict) and "input_layers" in config and "layers" in config


_SERIALIZED_VALUES = (
    "__slice__",
    "__ellipsis__",
    "__tensor__",
    "__numpy__",
    "__bytes__",
)


def _read(model: Any) -> ModelConfig:
    """The functional ``model``'s config, read by the one Keras-config reader."""
    try:
        return read_model(model.get_config(), kind="functional")
    except KerasConfigError as error:
        raise UnsupportedGraphError(f"model {model.name!r}: {error}") from error


def _refs(read: Any, scope: tuple[Any, ...], mapping: dict) -> Any:
    """Call arguments as read (:class:`KerasTensor` in place of each tensor)
    with TensorRefs for the tensors (``mapping`` renames values)."""
    if isinstance(read, KerasTensor):
        value = (*scope, *read.history)
        return TensorRef(mapping.get(value, value), read.shape)
    if isinstance(read, dict):
        if read.get("class_name") in _SERIALIZED_VALUES:
            try:  # slices, Ellipsis, constants: Keras's own deserializer
                return keras.saving.deserialize_keras_object(read)
            except Exception as error:
                raise UnsupportedGraphError(f"call argument {read!r}") from error
        return {key: _refs(item, scope, mapping) for key, item in read.items()}
    if isinstance(read, list):
        return [_refs(item, scope, mapping) for item in read]
    if isinstance(read, tuple):
        return tuple(_refs(item, scope, mapping) for item in read)
    return read


def _parse_functional(
    model: Any,
    scope: tuple[Any, ...],
    bound: dict[ValueId, ValueId],
    config: ModelConfig | None = None,
) -> tuple[list[Node], list[ValueId], list[ValueId]]:
    config = _read(model) if config is None else config
    ops = {op.name: op for op in model.operations}
    inputs = [(*scope, *value) for value in config.inputs]
    outputs = [(*scope, *value) for value in config.outputs]
    nodes: list[Node] = []
    for layer in config.layers:
        op = ops.get(layer.name)
        if op is None:
            raise UnsupportedGraphError(
                f"operation {layer.name!r} not found in the model"
            )
        if isinstance(op, keras.layers.InputLayer):
            continue
        for node_index, call in enumerate(layer.calls):
            args = _refs(call.args, scope, bound)
            kwargs = _refs(call.kwargs, scope, bound)
            out = (*scope, layer.name, node_index)
            nodes.extend(_expand(op, list(args), dict(kwargs), out))
    return nodes, [bound.get(v, v) for v in inputs], [bound.get(v, v) for v in outputs]


def _expand(op: Any, args: list[Any], kwargs: dict[str, Any], out: tuple) -> list[Node]:
    """A call node, or the inlined graph of a nested model."""
    nested = isinstance(op, keras.Sequential) or _is_functional(op)
    refs = list(tensor_refs((args, kwargs)))
    if not nested or not refs:
        return [Node(op, args, kwargs, [(*out, 0)])]
    scope = (*out, "in")
    if isinstance(op, keras.Sequential):
        if len(refs) != 1:
            raise UnsupportedGraphError(
                f"Sequential {op.name!r} called on several tensors"
            )
        return _sequential_nodes(op, refs[0], scope, out)
    config = _read(op)
    sub_inputs = [(*scope, *value) for value in config.inputs]
    if len(sub_inputs) != len(refs):
        raise UnsupportedGraphError(f"nested model {op.name!r}: input count mismatch")
    bound = {sub: ref.value for sub, ref in zip(sub_inputs, refs, strict=True)}
    nodes, _, sub_outputs = _parse_functional(op, scope, bound, config)
    # Alias the nested outputs to this call's output ids.
    for index, value in enumerate(sub_outputs):
        nodes.append(identity((*out, index), value))
    return nodes


def _sequential_nodes(
    model: Any, first: TensorRef, scope: tuple[Any, ...], out: tuple
) -> list[Node]:
    layers = [
        layer
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)
    ]
    nodes: list[Node] = []
    current = first
    for index, layer in enumerate(layers):
        target = (*scope, layer.name, index)
        expanded = _expand(layer, [current], {}, target)
        nodes.extend(expanded)
        current = TensorRef((*target, 0), None)
    nodes.append(identity((*out, 0), current.value))
    return nodes


def parse(model: Any) -> Graph:
    """Reads a Functional or Sequential Keras model as a :class:`Graph`.

    Raises:
        UnsupportedGraphError: for models whose structure is not a graph of calls.
    """
    if isinstance(model, keras.Sequential):
        shape = tuple(model.inputs[0].shape) if model.inputs else None
        if shape is None:
            raise UnsupportedGraphError("Sequential model without a known input shape")
        source: ValueId = ("input", 0)
        out = ("model",)
        nodes = _sequential_nodes(model, TensorRef(source, shape), ("seq",), out)
        inputs, outputs, shapes = [source], [(*out, 0)], [shape]
    elif _is_functional(model):
        nodes, inputs, outputs = _parse_functional(model, (), {})
        shapes = [tuple(t.shape) for t in model.inputs]
        if len(shapes) != len(inputs):
            raise UnsupportedGraphError("model inputs do not match its config")
    else:
        raise UnsupportedGraphError(
            f"{type(model).__name__} is not Functional or Sequential"
        )
    nodes, outputs = resolve_aliases(nodes, outputs)
    add_extra_outputs(nodes, outputs)
    nodes = prune(toposort(nodes, inputs), outputs)
    return Graph(nodes, inputs, outputs, shapes)

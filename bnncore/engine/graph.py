"""A Keras model as a flat list of nodes over named values.

Functional models are read from their public config (``get_config()``, whose
``inbound_nodes`` record every call with its tensor arguments) and their
``operations``; Sequential models are a chain of their layers. Nested
Functional/Sequential models are inlined. Anything else (a subclassed model)
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


def _shape(config: dict[str, Any]) -> tuple[int | None, ...] | None:
    shape = config.get("shape")
    return None if shape is None else tuple(shape)


_SERIALIZED_VALUES = (
    "__slice__",
    "__ellipsis__",
    "__tensor__",
    "__numpy__",
    "__bytes__",
)


def _history_refs(raw: Any, scope: tuple[Any, ...], mapping: dict) -> Any:
    """Turns serialized keras tensors into TensorRefs (``mapping`` renames values)."""
    if isinstance(raw, dict):
        if raw.get("class_name") == "__keras_tensor__":
            config = raw["config"]
            name, node_index, tensor_index = config["keras_history"]
            value = (*scope, name, int(node_index), int(tensor_index))
            return TensorRef(mapping.get(value, value), _shape(config))
        if raw.get("class_name") in _SERIALIZED_VALUES:
            try:  # slices, Ellipsis, constants: Keras's own deserializer
                return keras.saving.deserialize_keras_object(raw)
            except Exception as error:
                raise UnsupportedGraphError(f"call argument {raw!r}") from error
        return {key: _history_refs(item, scope, mapping) for key, item in raw.items()}
    if isinstance(raw, list):
        return [_history_refs(item, scope, mapping) for item in raw]
    if isinstance(raw, tuple):
        return tuple(_history_refs(item, scope, mapping) for item in raw)
    return raw


def _entry_values(raw: Any, scope: tuple[Any, ...]) -> list[ValueId]:
    """``[[name, node, tensor], ...]`` (or a single triple) as value ids."""
    if isinstance(raw, dict):
        raise UnsupportedGraphError("dict-structured model inputs/outputs")
    if len(raw) == 3 and isinstance(raw[0], str):
        raw = [raw]
    return [(*scope, name, int(node), int(tensor)) for name, node, tensor in raw]


def _parse_functional(
    model: Any, scope: tuple[Any, ...], bound: dict[ValueId, ValueId]
) -> tuple[list[Node], list[ValueId], list[ValueId]]:
    config = model.get_config()
    ops = {op.name: op for op in model.operations}
    inputs = _entry_values(config["input_layers"], scope)
    outputs = _entry_values(config["output_layers"], scope)
    nodes: list[Node] = []
    for layer_config in config["layers"]:
        name = layer_config["name"]
        op = ops.get(name)
        if op is None:
            raise UnsupportedGraphError(f"operation {name!r} not found in the model")
        if isinstance(op, keras.layers.InputLayer):
            continue
        for node_index, raw in enumerate(layer_config.get("inbound_nodes", [])):
            args = _history_refs(raw.get("args", []), scope, bound)
            kwargs = _history_refs(raw.get("kwargs", {}), scope, bound)
            out = (*scope, name, node_index)
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
    sub_inputs = _entry_values(op.get_config()["input_layers"], scope)
    if len(sub_inputs) != len(refs):
        raise UnsupportedGraphError(f"nested model {op.name!r}: input count mismatch")
    bound = {sub: ref.value for sub, ref in zip(sub_inputs, refs, strict=True)}
    nodes, _, sub_outputs = _parse_functional(op, scope, bound)
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

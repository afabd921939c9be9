"""A Keras model as a flat list of nodes over named values.

Functional models are read from their public config (``get_config()``, whose
``inbound_nodes`` record every call with its tensor arguments) and their
``operations``; Sequential models are a chain of their layers. Nested
Functional/Sequential models are inlined. Anything else (a subclassed model)
raises :class:`UnsupportedGraphError` and is run whole by Keras.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import keras

__all__ = ["Graph", "Node", "UnsupportedGraphError", "ValueId", "parse"]

ValueId = tuple[Any, ...]


class UnsupportedGraphError(Exception):
    """The model's structure cannot be read as a graph of layer calls."""


@dataclass(frozen=True)
class TensorRef:
    """A placeholder for a graph value inside a node's call arguments."""

    value: ValueId
    shape: tuple[int | None, ...] | None


@dataclass
class Node:
    """One call of an operation (a layer or a Keras op) in the graph.

    Attributes:
        op: The Keras layer or operation that is called.
        args: Positional arguments, with :class:`TensorRef` for graph values.
        kwargs: Keyword arguments, likewise.
        outputs: Values produced, in the order of ``keras.tree.flatten``.
    """

    op: Any
    args: list[Any]
    kwargs: dict[str, Any]
    outputs: list[ValueId]
    inputs: list[ValueId] = field(default_factory=list)
    input_shapes: list[tuple[int | None, ...] | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        refs = list(_refs((self.args, self.kwargs)))
        self.inputs = [r.value for r in refs]
        self.input_shapes = [r.shape for r in refs]

    @property
    def name(self) -> str:
        return str(self.op.name)


@dataclass
class Graph:
    """Nodes in topological order, with the model's input and output values."""

    nodes: list[Node]
    inputs: list[ValueId]
    outputs: list[ValueId]
    input_shapes: list[tuple[int | None, ...]]

    def consumers(self) -> dict[ValueId, list[Node]]:
        table: dict[ValueId, list[Node]] = {}
        for node in self.nodes:
            for value in node.inputs:
                table.setdefault(value, []).append(node)
        return table

    def producer(self) -> dict[ValueId, Node]:
        return {value: node for node in self.nodes for value in node.outputs}


def _refs(structure: Any) -> Iterator[TensorRef]:
    if isinstance(structure, TensorRef):
        yield structure
    elif isinstance(structure, list | tuple):
        for item in structure:
            yield from _refs(item)
    elif isinstance(structure, dict):
        for item in structure.values():
            yield from _refs(item)


def substitute(structure: Any, env: dict[ValueId, Any]) -> Any:
    """Replaces every :class:`TensorRef` in ``structure`` by ``env[ref.value]``."""
    if isinstance(structure, TensorRef):
        return env[structure.value]
    if isinstance(structure, list):
        return [substitute(item, env) for item in structure]
    if isinstance(structure, tuple):
        return tuple(substitute(item, env) for item in structure)
    if isinstance(structure, dict):
        return {key: substitute(item, env) for key, item in structure.items()}
    return structure


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
    refs = list(_refs((args, kwargs)))
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
        nodes.append(_identity((*out, index), value))
    return nodes


class _Identity:
    """Stand-in operation that forwards its input (aliases a nested output)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, x: Any) -> Any:
        return x


def _identity(target: ValueId, source: ValueId) -> Node:
    return Node(_Identity("identity"), [TensorRef(source, None)], {}, [target])


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
    nodes.append(_identity((*out, 0), current.value))
    return nodes


def _toposort(nodes: list[Node], inputs: list[ValueId]) -> list[Node]:
    available = set(inputs)
    pending = list(nodes)
    ordered: list[Node] = []
    while pending:
        progressed = False
        remaining = []
        for node in pending:
            if all(v in available for v in node.inputs):
                ordered.append(node)
                available.update(node.outputs)
                progressed = True
            else:
                remaining.append(node)
        if not progressed:
            missing = sorted(
                {str(v) for n in remaining for v in n.inputs} - set(map(str, available))
            )
            raise UnsupportedGraphError(f"unresolved graph values: {missing[:3]}")
        pending = remaining
    return ordered


def _prune(nodes: list[Node], outputs: list[ValueId]) -> list[Node]:
    """Drops nodes whose values never reach an output."""
    needed = set(outputs)
    kept: list[Node] = []
    for node in reversed(nodes):
        if any(v in needed for v in node.outputs):
            kept.append(node)
            needed.update(node.inputs)
    return list(reversed(kept))


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
    nodes, outputs = _resolve_aliases(nodes, outputs)
    _add_extra_outputs(nodes, outputs)
    nodes = _prune(_toposort(nodes, inputs), outputs)
    return Graph(nodes, inputs, outputs, shapes)


def _resolve_aliases(
    nodes: list[Node], outputs: list[ValueId]
) -> tuple[list[Node], list[ValueId]]:
    """Removes identity nodes, pointing their readers at the aliased value."""
    alias = {
        node.outputs[0]: node.inputs[0]
        for node in nodes
        if isinstance(node.op, _Identity)
    }

    def resolve(value: ValueId) -> ValueId:
        seen = set()
        while value in alias and value not in seen:
            seen.add(value)
            value = alias[value]
        return value

    def rewrite(structure: Any) -> Any:
        if isinstance(structure, TensorRef):
            return TensorRef(resolve(structure.value), structure.shape)
        if isinstance(structure, list):
            return [rewrite(item) for item in structure]
        if isinstance(structure, tuple):
            return tuple(rewrite(item) for item in structure)
        if isinstance(structure, dict):
            return {key: rewrite(item) for key, item in structure.items()}
        return structure

    kept = [
        Node(node.op, rewrite(node.args), rewrite(node.kwargs), node.outputs)
        for node in nodes
        if not isinstance(node.op, _Identity)
    ]
    return kept, [resolve(v) for v in outputs]


def _add_extra_outputs(nodes: list[Node], outputs: list[ValueId]) -> None:
    """Declares the further outputs (tensor index > 0) that other nodes read."""
    referenced = set(outputs)
    for node in nodes:
        referenced.update(node.inputs)
    for node in nodes:
        prefix = node.outputs[0][:-1]
        count = 1 + max(
            (v[-1] for v in referenced if v[:-1] == prefix and isinstance(v[-1], int)),
            default=0,
        )
        node.outputs = [(*prefix, t) for t in range(count)]

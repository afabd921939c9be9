"""A model as a flat list of nodes over named values (plain data, no Keras).

A :class:`Node` is one call of an operation: the Keras layer itself when
:mod:`bnncore.engine.graph` reads a Keras model, or a
:class:`~bnncore_runtime.definition.LayerSpec` (class name, config, weights)
when :mod:`bnncore_runtime.definition` reads an export. The planner
(:mod:`bnncore_runtime.planner`) works on either through an adapter.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Graph",
    "Identity",
    "Node",
    "TensorRef",
    "UnsupportedGraphError",
    "ValueId",
    "add_extra_outputs",
    "identity",
    "prune",
    "resolve_aliases",
    "substitute",
    "tensor_refs",
    "toposort",
]

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
        refs = list(tensor_refs((self.args, self.kwargs)))
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


def tensor_refs(structure: Any) -> Iterator[TensorRef]:
    if isinstance(structure, TensorRef):
        yield structure
    elif isinstance(structure, list | tuple):
        for item in structure:
            yield from tensor_refs(item)
    elif isinstance(structure, dict):
        for item in structure.values():
            yield from tensor_refs(item)


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


class Identity:
    """Stand-in operation that forwards its input (aliases a nested output)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, x: Any) -> Any:
        return x


def identity(target: ValueId, source: ValueId) -> Node:
    return Node(Identity("identity"), [TensorRef(source, None)], {}, [target])


def toposort(nodes: list[Node], inputs: list[ValueId]) -> list[Node]:
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


def prune(nodes: list[Node], outputs: list[ValueId]) -> list[Node]:
    """Drops nodes whose values never reach an output."""
    needed = set(outputs)
    kept: list[Node] = []
    for node in reversed(nodes):
        if any(v in needed for v in node.outputs):
            kept.append(node)
            needed.update(node.inputs)
    return list(reversed(kept))


def resolve_aliases(
    nodes: list[Node], outputs: list[ValueId]
) -> tuple[list[Node], list[ValueId]]:
    """Removes identity nodes, pointing their readers at the aliased value."""
    alias = {
        node.outputs[0]: node.inputs[0]
        for node in nodes
        if isinstance(node.op, Identity)
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
        if not isinstance(node.op, Identity)
    ]
    return kept, [resolve(v) for v in outputs]


def add_extra_outputs(nodes: list[Node], outputs: list[ValueId]) -> None:
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

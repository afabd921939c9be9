"""What TensorFlow allocates for a model: the oracle of the peak-memory tests.

The model is traced with ``tf.function(...).get_concrete_function`` at a fixed
batch size, and every operation output in the graph is sized statically
(elements × dtype size). Outputs of operations that allocate nothing
(identities, reshapes, variable reads) are views of their input.

* :func:`layer_bytes` sums, per layer (the first name scope below the model's),
  every allocated output of that layer's operations.
* :func:`simulated_peak` runs the graph's operations in creation order (a
  topological order), frees each buffer after its last reader and reports the
  largest total live at once: placeholders live throughout, the graph's outputs
  until the end.
"""

from __future__ import annotations

import re
from typing import Any

import tensorflow as tf

VIEWS = frozenset(
    {
        "Identity",
        "IdentityN",
        "StopGradient",
        "Reshape",
        "Squeeze",
        "ExpandDims",
        "Snapshot",
        "ReadVariableOp",
        "NoOp",
        "Shape",
    }
)
"""Operations whose outputs are views of their input, not allocations
(constants count: with a free batch dimension they are ``Fill`` operations)."""


def trace(model: Any, batch: int) -> Any:
    """The graph of ``model`` called on inputs of batch size ``batch``."""
    specs = [tf.TensorSpec((batch, *i.shape[1:]), tf.float32) for i in model.inputs]

    def call(*x: Any) -> Any:
        return model(list(x) if len(x) > 1 else x[0], training=False)

    return tf.function(call).get_concrete_function(*specs).graph


def _size(tensor: Any) -> int:
    if tensor.dtype == tf.resource or not tensor.shape.is_fully_defined():
        return 0
    return tensor.shape.num_elements() * tensor.dtype.size


def _layer_of(op_name: str, names: list[str]) -> str | None:
    parts = op_name.split("/")
    if len(parts) < 3:
        return None
    scope = parts[1]
    for name in names:
        if scope == name or re.fullmatch(re.escape(name) + r"_\d+", scope):
            return name
    return None


def layer_bytes(graph: Any, names: list[str]) -> dict[str, int]:
    """Bytes allocated by each layer's operations (views excluded)."""
    totals = dict.fromkeys(names, 0)
    for op in graph.get_operations():
        if op.type in VIEWS or op.type == "Placeholder":
            continue
        layer = _layer_of(op.name, names)
        if layer is not None:
            totals[layer] += sum(_size(t) for t in op.outputs)
    return totals


def largest_tensor(graph: Any) -> tuple[int, str]:
    """The largest single allocated tensor: (bytes, operation name)."""
    best = (0, "")
    for op in graph.get_operations():
        if op.type in VIEWS:
            continue
        for tensor in op.outputs:
            best = max(best, (_size(tensor), op.name))
    return best


def simulated_peak(graph: Any) -> int:
    """Most bytes live at once running ``graph`` op by op in creation order."""
    ops = graph.get_operations()
    root: dict[Any, Any] = {}  # tensor -> the tensor owning its buffer

    def owner(tensor: Any) -> Any:
        return root.get(tensor.ref(), tensor.ref())

    last: dict[Any, int] = {}
    size: dict[Any, int] = {}
    born: dict[Any, int] = {}
    for i, op in enumerate(ops):
        for tensor in op.inputs:
            key = owner(tensor)
            last[key] = max(last.get(key, -1), i)
        for k, tensor in enumerate(op.outputs):
            if op.type in VIEWS and op.inputs:
                source = op.inputs[min(k, len(op.inputs) - 1)]
                root[tensor.ref()] = owner(source)
                continue
            size[tensor.ref()] = _size(tensor)
            born[tensor.ref()] = i
            if op.type == "Placeholder":
                last[tensor.ref()] = len(ops)
    for tensor in graph.outputs:
        last[owner(tensor)] = len(ops)
    events = [0] * (len(ops) + 2)
    for key, bytes_ in size.items():
        events[born[key]] += bytes_
        events[last.get(key, born[key]) + 1] -= bytes_
    live = peak = 0
    for delta in events:
        live += delta
        peak = max(peak, live)
    return peak

"""Turns a parsed graph into a list of steps.

1. Binary layers (see :mod:`bnncore.engine.recognize`) become
   :class:`~bnncore.engine.steps.BinaryStep` s, and float convolutions the
   compiled core reproduces (:func:`bnncore.engine.floatops.float_conv`)
   :class:`~bnncore.engine.steps.FloatConvStep` s.
2. Each absorbs the chain of elementwise layers after it (batch norm,
   activations, identity layers, one residual add) while every intermediate
   value has a single reader and is not a model output.
3. When all readers of the chain's result binarize it, the step writes packed
   bits only; a max pooling followed by per-channel monotone layers whose
   result is only binarized runs on the packed bits (AND of the bits, or OR
   for the channels a decreasing map reverses).
4. Every other layer is a :class:`~bnncore.engine.steps.FloatStep`: native
   code where it is exact (see :mod:`bnncore.engine.floatops`), else the
   Keras layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from bnncore.engine import kernels as K
from bnncore.engine import recognize as R
from bnncore.engine.floatops import calls_directly, float_conv, native
from bnncore.engine.graph import Graph, Node, TensorRef, ValueId, substitute
from bnncore.engine.steps import (
    BinaryStep,
    ChainStep,
    ConvSpec,
    FloatConvStep,
    FloatStep,
    PackStep,
    Step,
)

__all__ = ["build_plan", "infer_specs"]


@dataclass
class _Chain:
    head: Node
    step: ChainStep
    nodes: list[Node] = field(default_factory=list)  # absorbed, in order
    end: ValueId | None = None  # value the step's result stands for


def infer_specs(graph: Graph) -> dict[ValueId, Any]:
    """Symbolic shapes of all values (``compute_output_spec`` of each op)."""
    specs: dict[ValueId, Any] = {
        value: keras.KerasTensor(shape)
        for value, shape in zip(graph.inputs, graph.input_shapes, strict=True)
    }
    for node in graph.nodes:
        try:
            args = substitute(node.args, specs)
            kwargs = {
                k: v
                for k, v in substitute(node.kwargs, specs).items()
                if k not in ("training",)
            }
            out = keras.tree.flatten(node.op.compute_output_spec(*args, **kwargs))
        except Exception:
            out = []
        for value, spec in zip(node.outputs, out, strict=False):
            specs[value] = spec
    return specs


def _rank(specs: dict[ValueId, Any], value: ValueId) -> int | None:
    spec = specs.get(value)
    return None if spec is None else len(spec.shape)


def _shape(specs: dict[ValueId, Any], value: ValueId) -> tuple | None:
    spec = specs.get(value)
    return None if spec is None else tuple(spec.shape)


def _plain_call(node: Node) -> bool:
    """One tensor argument and no keyword arguments that change the result."""
    if (
        len(node.inputs) != 1
        or len(node.args) != 1
        or not isinstance(node.args[0], TensorRef)
    ):
        return False
    return all(v is None or k in ("training", "mask") for k, v in node.kwargs.items())


def _is_add(node: Node) -> bool:
    if isinstance(node.op, keras.layers.Add):
        return len(node.inputs) == 2
    if isinstance(node.op, keras.layers.Layer):
        return False
    return type(node.op).__name__ == "Add" and len(node.inputs) == 2 and not node.kwargs


def _binary_step(node: Node, specs: dict[ValueId, Any]) -> BinaryStep | None:
    layer = node.op
    kind = R.binary_kind(layer)
    if kind is None or not _plain_call(node):
        return None
    rank = _rank(specs, node.inputs[0])
    if rank is None or (kind == "conv" and rank != layer.rank + 2) or rank < 2:
        return None
    kernel = R.binary_kernel(layer, kind)
    if kernel is None:
        return None
    if kind == "dense":
        spec = ConvSpec((1, 1), (1, 1), (1, 1), "valid", 1, 0)
    else:
        k, s, d = (
            tuple(layer.kernel_size),
            tuple(layer.strides),
            tuple(layer.dilation_rate),
        )
        if layer.rank == 1:
            k, s, d = (1, *k), (1, *s), (1, *d)
        pad_mode = 1 if float(layer.pad_values) == 1.0 else 0
        spec = ConvSpec(k, s, d, layer.padding, pad_mode, layer.rank)
    ops: list[tuple[Any, ...]] = []
    if kernel.scale is not None:
        ops.append((K.OP_SCALE, kernel.scale))
    if layer.use_bias:
        ops.append(
            (K.OP_BIAS, np.ascontiguousarray(np.asarray(layer.bias, np.float32)))
        )
    act = R.activation_ops(layer.activation)
    if act is None:
        return None
    ops.extend(act)
    step = BinaryStep(
        name=layer.name,
        spec=spec,
        kernel=kernel,
        groups=int(getattr(layer, "groups", 1)),
        source=node.inputs[0],
        ops=ops,
        output=node.outputs[0],
    )
    step.layer = layer
    return step


def _is_flatten(node: Node, specs: dict[ValueId, Any], value: ValueId) -> bool:
    rank = _rank(specs, value)
    return (
        isinstance(node.op, keras.layers.Flatten)
        and _plain_call(node)
        and getattr(node.op, "data_format", "channels_last") == "channels_last"
        and rank is not None
        and rank >= 3
    )


def _extend_chain(
    chain: _Chain, consumers: dict, outputs: set, taken: set, specs
) -> None:
    """Absorbs the elementwise layers (and one residual add) after the head.

    ``taken`` holds the ids of heads and of nodes other chains absorbed; the
    nodes absorbed here are added to it.
    """
    step = chain.step
    current = chain.head.outputs[0]
    while True:
        readers = consumers.get(current, [])
        if current in outputs or len(readers) != 1 or id(readers[0]) in taken:
            break
        nxt = readers[0]
        if _is_flatten(nxt, specs, current):
            chain.nodes.append(nxt)
            taken.add(id(nxt))
            step.fused.append(nxt.name)
            step.flatten = True
            current = nxt.outputs[0]
            break
        if _plain_call(nxt) and isinstance(nxt.op, keras.layers.Layer):
            more = R.elementwise_ops(nxt.op, _rank(specs, current))
            if more is None:
                break
            step.ops.extend(more)
        elif _is_add(nxt) and step.residual is None:
            other = (
                next(v for v in nxt.inputs if v != current)
                if nxt.inputs.count(current) == 1
                else None
            )
            if other is None or _shape(specs, other) != _shape(specs, current):
                break
            if str(specs[other].dtype) != "float32":
                break
            step.residual = other
            step.ops.append((K.OP_RESIDUAL,))
        else:
            break
        chain.nodes.append(nxt)
        taken.add(id(nxt))
        step.fused.append(nxt.name)
        current = nxt.outputs[0]
    chain.end = current
    step.output = current


def _try_pool(
    chain: _Chain, consumers, outputs, heads, specs, head_groups, taken: set
) -> None:
    """Packed max pooling when the pooled, monotone-mapped result is only binarized."""
    step = chain.step
    current = chain.end
    if current is None:
        return
    readers = consumers.get(current, [])
    if current in outputs or len(readers) != 1 or step.residual is not None:
        return
    if id(readers[0]) in taken:
        return
    if step.flatten:
        return
    pool = readers[0]
    layer = pool.op
    if not (isinstance(layer, keras.layers.MaxPooling2D) and _plain_call(pool)):
        return
    if layer.data_format != "channels_last" or _rank(specs, current) != 4:
        return
    post: list[tuple[Any, ...]] = []
    flatten = False
    absorbed = [pool]
    value = pool.outputs[0]
    while True:
        readers = consumers.get(value, [])
        if value in outputs or not readers:
            return
        if all(id(r) in heads for r in readers):
            break
        if len(readers) != 1:
            return
        nxt = readers[0]
        if _is_flatten(nxt, specs, value) and not flatten:
            flatten = True
            absorbed.append(nxt)
            value = nxt.outputs[0]
            continue
        if flatten or not (_plain_call(nxt) and isinstance(nxt.op, keras.layers.Layer)):
            return
        more = R.elementwise_ops(nxt.op, _rank(specs, value))
        if more is None or not all(R.is_monotone_op(op[0]) for op in more):
            return
        post.extend(more)
        absorbed.append(nxt)
        value = nxt.outputs[0]
    groups = {head_groups[id(r)] for r in consumers[value]}
    if len(groups) != 1:
        return
    shape = _shape(specs, current)
    if shape is None:
        return
    channels = shape[-1]
    (g,) = groups
    flip = R.decreasing_channels(post, channels)
    mask = None
    if flip.any():
        cwg = K.words_for(channels // g)
        bits = np.zeros((g, cwg * 64), dtype=bool)
        bits[:, : channels // g] = flip.reshape(g, channels // g)
        mask = (
            np.packbits(bits.reshape(-1), bitorder="little")
            .view("<u8")
            .astype(np.uint64)
        )
    step.ops.extend(post)
    step.float_out = False
    step.packed_groups = g
    step.pool = (
        tuple(layer.pool_size),
        tuple(layer.strides),
        layer.padding,
        mask,
        value,
    )
    step.flatten = flatten
    chain.nodes.extend(absorbed)
    taken.update(id(n) for n in absorbed)
    step.fused.extend(n.name for n in absorbed)
    chain.end = value


def _pixel_layouts(chains: dict, consumers: dict, heads: set, specs: dict) -> None:
    """Dense layers reading a flattened packed output get pixel-packed kernels."""
    by_node = {id(c.head): c for c in chains.values()}
    for chain in chains.values():
        step = chain.step
        if not step.flatten or step.packed_groups is None:
            continue
        flat_node = chain.nodes[-1]
        flat_shape = _shape(specs, flat_node.inputs[0])
        if flat_shape is None or chain.end is None:
            continue
        spatial = flat_shape[1:-1]
        pixels = int(np.prod(spatial)) if None not in spatial else None
        readers = [
            by_node[id(r)] for r in consumers.get(chain.end, []) if id(r) in heads
        ]
        kernels = []
        for reader in readers:
            kernel = None
            if pixels is not None and reader.step.spec.rank == 0:
                kernel = R.binary_kernel(reader.step.layer, "dense", pixels)
            kernels.append(kernel)
        if pixels is None or any(k is None for k in kernels):
            step.packed_groups = None
            step.float_out = True
            continue
        for reader, kernel in zip(readers, kernels, strict=True):
            reader.step.kernel = kernel


def build_plan(graph: Graph, specs: dict[ValueId, Any], mode: str) -> list[Step]:
    """The steps computing ``graph``; see the module docstring.

    Args:
        graph: The parsed model.
        specs: Symbolic tensors of the values, from :func:`infer_specs`.
        mode: ``"native"`` (exact native code for common float layers) or
            ``"keras"`` (every other layer called through Keras).
    """
    consumers = graph.consumers()
    outputs = set(graph.outputs)
    chains: dict[int, _Chain] = {}
    for node in graph.nodes:
        step: ChainStep | None = _binary_step(node, specs)
        if step is None and mode == "native":
            step = _float_conv_step(node, specs)
        if step is not None:
            chains[id(node)] = _Chain(node, step)
    binary_steps = {
        k: c.step for k, c in chains.items() if isinstance(c.step, BinaryStep)
    }
    binary = set(binary_steps)
    head_groups = {key: step.groups for key, step in binary_steps.items()}
    taken = set(chains)
    # Binary chains first: they gain most from absorbing a shared add.
    for key in sorted(chains, key=lambda k: k not in binary):
        chain = chains[key]
        _extend_chain(chain, consumers, outputs, taken, specs)
        if key in binary:
            _try_pool(chain, consumers, outputs, binary, specs, head_groups, taken)
    # Packed outputs for chains whose result binary layers read.
    for chain in chains.values():
        step = chain.step
        if step.pool is not None:
            continue
        readers = consumers.get(chain.end, []) if chain.end is not None else []
        binary_readers = [r for r in readers if id(r) in binary]
        if not binary_readers:
            continue
        groups = [head_groups[id(r)] for r in binary_readers]
        step.packed_groups = max(set(groups), key=groups.count)
        step.float_out = (
            chain.end in outputs
            or len(binary_readers) != len(readers)
            or len(set(groups)) > 1
        )
    _pixel_layouts(chains, consumers, binary, specs)
    for chain in chains.values():
        chain.step.layer = None  # the plan must not keep the original model alive
    last_of: dict[int, _Chain] = {}
    absorbed: set[int] = set()
    for chain in chains.values():
        last = chain.nodes[-1] if chain.nodes else chain.head
        last_of[id(last)] = chain
        absorbed.update(id(n) for n in [chain.head, *chain.nodes])
    order = [n for n in graph.nodes if id(n) not in absorbed or id(n) in last_of]
    sensitive = _sign_sensitive(graph, list(binary_steps.values()))
    packed_available: set[tuple[ValueId, int]] = set()
    steps: list[Step] = []
    for node in order:
        if id(node) not in last_of:
            reaches = any(v in sensitive for v in node.outputs)
            steps.append(_float_step(node, specs, mode, reaches))
            continue
        step = last_of[id(node)].step
        if isinstance(step, BinaryStep):
            source = (step.source, step.groups)
            if source not in packed_available:
                steps.append(PackStep(step.source, step.groups))
                packed_available.add(source)
        steps.append(step)
        if step.packed_groups is not None:
            end = step.pool[-1] if step.pool else step.output
            packed_available.add((end, step.packed_groups))
    return steps


def _sign_sensitive(graph: Graph, steps: list[BinaryStep]) -> set[ValueId]:
    """Values from which some binary layer's input can be reached."""
    producer = graph.producer()
    pending = [s.source for s in steps]
    seen: set[ValueId] = set()
    while pending:
        value = pending.pop()
        if value in seen:
            continue
        seen.add(value)
        node = producer.get(value)
        if node is not None:
            pending.extend(node.inputs)
    return seen


def _float_conv_step(node: Node, specs: dict[ValueId, Any]) -> FloatConvStep | None:
    if not _plain_call(node) or not isinstance(node.op, keras.layers.Layer):
        return None
    conv = float_conv(node.op, _shape(specs, node.inputs[0]))
    if conv is None:
        return None
    return FloatConvStep(
        name=node.name,
        source=node.inputs[0],
        ops=list(conv.ops),
        output=node.outputs[0],
        conv=conv.run,
        native=conv,
        kernel_bytes=int(conv.kernel.nbytes),
        bound=conv.bound,
        spread=conv.spread,
    )


def _float_step(
    node: Node, specs: dict[ValueId, Any], mode: str, sensitive: bool
) -> FloatStep:
    if mode == "native":
        found = native(node, specs, sensitive)
        if found is not None:
            return FloatStep(node, native=found)
        return FloatStep(node, direct=calls_directly(node.op))
    return FloatStep(node)

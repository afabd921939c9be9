"""Turns a parsed graph into a list of steps.

1. Binary layers become :class:`~bnncore_runtime.steps.BinaryStep` s, and
   float convolutions the compiled core reproduces
   :class:`~bnncore_runtime.steps.FloatConvStep` s.
2. Each absorbs the chain of elementwise layers after it (batch norm,
   activations, identity layers, one residual add) while every intermediate
   value has a single reader and is not a model output.
3. When all readers of the chain's result binarize it, the step writes packed
   bits only; a max pooling followed by per-channel monotone layers whose
   result is only binarized runs on the packed bits (AND of the bits, or OR
   for the channels a decreasing map reverses).
4. Every other layer is a :class:`~bnncore_runtime.steps.FloatStep`: native
   code where it is exact (see :mod:`bnncore_runtime.natives`), else what the
   front end does with it (the engine: the Keras layer; the runtime: refuse).

One planner for two front ends: the questions it asks about a layer (is it
binary, which epilogue ops does it fold to, ...) go through a
:class:`Frontend`. :mod:`bnncore.engine` answers them from Keras layers,
:mod:`bnncore_runtime.layers` from an export's layer class names, configs and
decoded weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from bnncore_runtime import kernels as K
from bnncore_runtime.graph import Graph, Node, TensorRef, ValueId
from bnncore_runtime.natives import NativeConv, decreasing_channels, is_monotone_op
from bnncore_runtime.steps import (
    BinaryKernel,
    BinaryStep,
    ChainStep,
    ConvSpec,
    FloatConvStep,
    FloatStep,
    PackStep,
    Step,
)

__all__ = ["BinaryLayer", "Frontend", "build_plan"]


@dataclass
class BinaryLayer:
    """What the planner needs of a binary layer (see :meth:`Frontend.binary`).

    Attributes:
        kind: ``"dense"`` or ``"conv"``.
        rank: 1 or 2 for a convolution (its spatial rank); ignored for dense.
        kernel: The packed kernel.
        spec: The convolution's hyper-parameters.
        groups: Convolution groups.
        ops: The layer's own epilogue ops (scale, bias, activation).
    """

    kind: str
    rank: int
    kernel: BinaryKernel
    spec: ConvSpec
    groups: int
    ops: list[tuple[Any, ...]]


class Frontend(Protocol):
    """The planner's questions about the operations of a graph's nodes.

    ``specs`` map values to objects with ``.shape`` (batch axis included,
    ``None`` where unknown) and ``.dtype``.
    """

    def is_layer(self, op: Any) -> bool:
        """A layer (rather than a bare operation such as ``+``)."""
        ...

    def is_add(self, node: Node) -> bool:
        """An addition of its inputs."""
        ...

    def is_flatten(self, op: Any) -> bool:
        """A channels-last ``Flatten``."""
        ...

    def max_pool_window(
        self, op: Any
    ) -> tuple[tuple[int, int], tuple[int, int], str] | None:
        """``(pool, strides, padding)`` of a channels-last 2D max pooling."""
        ...

    def binary(self, op: Any, rank: int) -> BinaryLayer | None:
        """The binary layer ``op`` is (input of rank ``rank``), or None."""
        ...

    def binary_kernel(self, op: Any, pixels: int) -> BinaryKernel | None:
        """A dense binary layer's kernel packed pixel by pixel."""
        ...

    def elementwise_ops(
        self, op: Any, rank: int | None
    ) -> list[tuple[Any, ...]] | None:
        """Epilogue ops of a single-input elementwise layer, or None."""
        ...

    def float_conv(self, op: Any, shape: tuple | None) -> NativeConv | None:
        """The core's version of a float (depthwise) convolution, or None."""
        ...

    def float_step(
        self, node: Node, specs: dict[ValueId, Any], mode: str, sensitive: bool
    ) -> FloatStep:
        """The step of any other node (native, or the front end's fallback)."""
        ...


@dataclass
class _Chain:
    head: Node
    step: ChainStep
    nodes: list[Node] = field(default_factory=list)  # absorbed, in order
    end: ValueId | None = None  # value the step's result stands for


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


def binary_layer(
    kind: str,
    kernel: BinaryKernel | None,
    *,
    conv_rank: int = 0,
    kernel_size: tuple[int, ...] = (1, 1),
    strides: tuple[int, ...] = (1, 1),
    dilation: tuple[int, ...] = (1, 1),
    padding: str = "valid",
    pad_value: float = 0.0,
    bias: np.ndarray | None = None,
    act: list[tuple[Any, ...]] | None = None,
    groups: int = 1,
) -> BinaryLayer | None:
    """A binary layer from its parameters (both front ends' one way to make
    it); None when the kernel is not ``±s_c`` or the activation cannot fold.

    Args:
        kind: ``"dense"`` or ``"conv"``.
        kernel: The packed kernel (None: not binary).
        conv_rank: 1 or 2 for a convolution.
        kernel_size, strides, dilation, padding: The convolution's window.
        pad_value: Value of padded taps (0 or 1; see docs/engine.md).
        bias: The bias, or None.
        act: Epilogue ops of the activation (None: it does not fold).
        groups: Convolution groups.
    """
    if kernel is None or act is None:
        return None
    if kind == "dense":
        spec = ConvSpec((1, 1), (1, 1), (1, 1), "valid", 1, 0)
    else:
        k, s, d = tuple(kernel_size), tuple(strides), tuple(dilation)
        if conv_rank == 1:
            k, s, d = (1, *k), (1, *s), (1, *d)
        pad_mode = 1 if float(pad_value) == 1.0 else 0
        spec = ConvSpec(k, s, d, padding, pad_mode, conv_rank)  # type: ignore[arg-type]
    ops: list[tuple[Any, ...]] = []
    if kernel.scale is not None:
        ops.append((K.OP_SCALE, kernel.scale))
    if bias is not None:
        ops.append((K.OP_BIAS, np.ascontiguousarray(np.asarray(bias, np.float32))))
    ops.extend(act)
    return BinaryLayer(kind, conv_rank, kernel, spec, int(groups), ops)


def _binary_step(
    fe: Frontend, node: Node, specs: dict[ValueId, Any]
) -> BinaryStep | None:
    if not _plain_call(node):
        return None
    rank = _rank(specs, node.inputs[0])
    if rank is None or rank < 2:
        return None
    found = fe.binary(node.op, rank)
    if found is None:
        return None
    step = BinaryStep(
        name=node.name,
        spec=found.spec,
        kernel=found.kernel,
        groups=found.groups,
        source=node.inputs[0],
        ops=found.ops,
        output=node.outputs[0],
    )
    step.layer = node.op
    return step


def _is_flatten(
    fe: Frontend, node: Node, specs: dict[ValueId, Any], value: ValueId
) -> bool:
    rank = _rank(specs, value)
    return (
        fe.is_flatten(node.op) and _plain_call(node) and rank is not None and rank >= 3
    )


def _extend_chain(
    fe: Frontend, chain: _Chain, consumers: dict, outputs: set, taken: set, specs
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
        if _is_flatten(fe, nxt, specs, current):
            chain.nodes.append(nxt)
            taken.add(id(nxt))
            step.fused.append(nxt.name)
            step.flatten = True
            current = nxt.outputs[0]
            break
        if _plain_call(nxt) and fe.is_layer(nxt.op):
            more = fe.elementwise_ops(nxt.op, _rank(specs, current))
            if more is None:
                break
            step.ops.extend(more)
        elif fe.is_add(nxt) and len(nxt.inputs) == 2 and step.residual is None:
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
    fe: Frontend, chain: _Chain, consumers, outputs, heads, specs, head_groups,
    taken: set,
) -> None:  # fmt: skip
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
    found = fe.max_pool_window(pool.op)
    if found is None or not _plain_call(pool) or _rank(specs, current) != 4:
        return
    pool_size, pool_strides, pool_padding = found
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
        if _is_flatten(fe, nxt, specs, value) and not flatten:
            flatten = True
            absorbed.append(nxt)
            value = nxt.outputs[0]
            continue
        if flatten or not (_plain_call(nxt) and fe.is_layer(nxt.op)):
            return
        more = fe.elementwise_ops(nxt.op, _rank(specs, value))
        if more is None or not all(is_monotone_op(op[0]) for op in more):
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
    flip = decreasing_channels(post, channels)
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
        tuple(pool_size),
        tuple(pool_strides),
        pool_padding,
        mask,
        value,
    )
    step.flatten = flatten
    chain.nodes.extend(absorbed)
    taken.update(id(n) for n in absorbed)
    step.fused.extend(n.name for n in absorbed)
    chain.end = value


def _pixel_layouts(
    fe: Frontend, chains: dict, consumers: dict, heads: set, specs: dict
) -> None:
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
                kernel = fe.binary_kernel(reader.step.layer, pixels)
            kernels.append(kernel)
        if pixels is None or any(k is None for k in kernels):
            step.packed_groups = None
            step.float_out = True
            continue
        for reader, kernel in zip(readers, kernels, strict=True):
            reader.step.kernel = kernel


def build_plan(
    fe: Frontend, graph: Graph, specs: dict[ValueId, Any], mode: str
) -> list[Step]:
    """The steps computing ``graph``; see the module docstring.

    Args:
        fe: The front end that answers for the graph's operations.
        graph: The parsed model.
        specs: The values' shapes and dtypes (``.shape``, ``.dtype``).
        mode: ``"native"`` (exact native code for common float layers) or
            ``"keras"`` (every other layer through the front end's fallback).
    """
    consumers = graph.consumers()
    outputs = set(graph.outputs)
    chains: dict[int, _Chain] = {}
    for node in graph.nodes:
        step: ChainStep | None = _binary_step(fe, node, specs)
        if step is None and mode == "native":
            step = _float_conv_step(fe, node, specs)
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
        _extend_chain(fe, chain, consumers, outputs, taken, specs)
        if key in binary:
            _try_pool(fe, chain, consumers, outputs, binary, specs, head_groups,
                      taken)  # fmt: skip
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
    _pixel_layouts(fe, chains, consumers, binary, specs)
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
            steps.append(fe.float_step(node, specs, mode, reaches))
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


def _float_conv_step(
    fe: Frontend, node: Node, specs: dict[ValueId, Any]
) -> FloatConvStep | None:
    if not _plain_call(node) or not fe.is_layer(node.op):
        return None
    conv = fe.float_conv(node.op, _shape(specs, node.inputs[0]))
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

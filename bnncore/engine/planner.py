"""The plan of a Keras model: :mod:`bnncore_runtime.planner` (the one planner,
shared with the TensorFlow-free runtime) asking :class:`KerasFrontend` about
the model's layers."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from bnncore.engine import recognize as R
from bnncore.engine.floatops import (
    calls_directly,
    float_conv,
    is_add,
    max_pool_window,
    native,
)
from bnncore.engine.graph import Graph, Node, ValueId, substitute
from bnncore_runtime import planner
from bnncore_runtime.natives import NativeConv
from bnncore_runtime.planner import BinaryLayer, binary_layer
from bnncore_runtime.steps import BinaryKernel, FloatStep, Step

__all__ = ["KerasFrontend", "build_plan", "infer_specs"]


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


class KerasFrontend:
    """Answers the planner's questions from Keras layers (see
    :class:`bnncore_runtime.planner.Frontend`); layers without a native
    version run through Keras."""

    def is_layer(self, op: Any) -> bool:
        return isinstance(op, keras.layers.Layer)

    def is_add(self, node: Node) -> bool:
        return is_add(node)

    def is_flatten(self, op: Any) -> bool:
        return (
            isinstance(op, keras.layers.Flatten)
            and getattr(op, "data_format", "channels_last") == "channels_last"
        )

    def max_pool_window(
        self, op: Any
    ) -> tuple[tuple[int, int], tuple[int, int], str] | None:
        return max_pool_window(op)

    def binary(self, op: Any, rank: int) -> BinaryLayer | None:
        kind = R.binary_kind(op)
        if kind is None or (kind == "conv" and rank != op.rank + 2):
            return None
        kernel = R.binary_kernel(op, kind)
        conv = kind == "conv"
        return binary_layer(
            kind,
            kernel,
            conv_rank=op.rank if conv else 0,
            kernel_size=tuple(op.kernel_size) if conv else (1, 1),
            strides=tuple(op.strides) if conv else (1, 1),
            dilation=tuple(op.dilation_rate) if conv else (1, 1),
            padding=op.padding if conv else "valid",
            pad_value=float(op.pad_values) if conv else 0.0,
            bias=np.asarray(op.bias, np.float32) if op.use_bias else None,
            act=R.activation_ops(op.activation) if kernel is not None else None,
            groups=int(getattr(op, "groups", 1)),
        )

    def binary_kernel(self, op: Any, pixels: int) -> BinaryKernel | None:
        return R.binary_kernel(op, "dense", pixels)

    def elementwise_ops(
        self, op: Any, rank: int | None
    ) -> list[tuple[Any, ...]] | None:
        return R.elementwise_ops(op, rank)

    def float_conv(self, op: Any, shape: tuple | None) -> NativeConv | None:
        return float_conv(op, shape)

    def float_step(
        self, node: Node, specs: dict[ValueId, Any], mode: str, sensitive: bool
    ) -> FloatStep:
        if mode == "native":
            found = native(node, specs, sensitive)
            if found is not None:
                return FloatStep(node, native=found)
            return FloatStep(node, direct=calls_directly(node.op))
        return FloatStep(node)


def build_plan(graph: Graph, specs: dict[ValueId, Any], mode: str) -> list[Step]:
    """The steps computing a Keras model's ``graph`` (see
    :func:`bnncore_runtime.planner.build_plan`).

    Args:
        graph: The parsed model.
        specs: Symbolic tensors of the values, from :func:`infer_specs`.
        mode: ``"native"`` (exact native code for common float layers) or
            ``"keras"`` (every other layer called through Keras).
    """
    return planner.build_plan(KerasFrontend(), graph, specs, mode)

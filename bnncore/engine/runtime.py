"""``compile(model) -> PackedModel``: the public entry point of the engine."""

from __future__ import annotations

from typing import Any

import keras

from bnncore.engine import kernels as K
from bnncore.engine.graph import Node, UnsupportedGraphError, ValueId, parse, substitute
from bnncore.engine.planner import build_plan, infer_specs
from bnncore.engine.steps import Env, FloatStep, Step, WholeModelStep
from bnncore_runtime.plan import THREADS_VARIABLE, CompiledPlan
from bnncore_runtime.plan import default_threads as _default_threads

__all__ = ["THREADS_VARIABLE", "PackedModel", "compile"]

_MODES = ("native", "keras")


class PackedModel(CompiledPlan):
    """A compiled model: binary layers on packed bits, the rest in TensorFlow.

    Build it with :func:`compile`. The compiled model keeps packed copies of the
    binary kernels and clones of the other layers, not the original model.

    Attributes:
        steps: The plan, in execution order.
        threads: Worker threads of the binary kernels.
    """

    def _collect(self, env: Env) -> list[Any]:
        if self._outputs is None:
            return list(keras.tree.flatten(env.floats[WholeModelStep.OUTPUT]))
        return super()._collect(env)


def _clone(op: Any, node: Node, specs: dict[ValueId, Any]) -> Any:
    """A copy of a layer with its weights (so the original model can be freed)."""
    if not isinstance(op, keras.layers.Layer):
        try:
            return type(op).from_config(op.get_config())
        except Exception:
            return op
    try:
        clone = type(op).from_config(op.get_config())
        args = substitute(node.args, specs)
        kwargs = {
            k: v for k, v in substitute(node.kwargs, specs).items() if k != "training"
        }
        clone(*args, **kwargs)
        clone.set_weights(op.get_weights())
        return clone
    except Exception:
        return op


def _detach(steps: list[Step], graph_specs: dict[ValueId, Any]) -> None:
    """Replaces the ops of the float segments by clones (shared layers stay shared)."""
    clones: dict[int, Any] = {}
    for step in steps:
        if not isinstance(step, FloatStep) or step.node is None:
            continue
        node = step.node
        key = id(node.op)
        if key not in clones:
            clones[key] = _clone(node.op, node, graph_specs)
        node.op = clones[key]


def compile(
    model: Any, *, threads: int | None = None, float_mode: str = "native"
) -> PackedModel:
    """Compiles a Keras model for inference.

    Binary layers (a sign input quantizer and a 1-bit kernel quantizer whose
    values are ``±s`` per output channel: ``QuantDense``, ``QuantConv1D``,
    ``QuantConv2D``) run on bit-packed data with the batch norm, activation and
    residual add after them folded in; all other layers run in TensorFlow, so
    every model compiles and ``predict`` equals the model's forward pass.

    Args:
        model: A built Keras model (Functional or Sequential; other models run
            whole in Keras).
        threads: Worker threads (default: the environment variable
            ``BNN_ENGINE_THREADS``, a positive integer, when set; else the CPUs
            available to this process). A batch of more than one sample is
            split across the threads (each runs the whole program on its
            samples); a single sample's layers are split within.
        float_mode: ``"native"`` runs common float layers (batch norm,
            activations, pooling, adds) in exact native code and calls the
            others' Keras ``call``; ``"keras"`` calls every non-binary layer
            through Keras, one by one.

    Returns:
        The :class:`PackedModel`.

    Raises:
        ValueError: for a model that is not built, or bad arguments.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"Expected a keras.Model. Received: model of type {type(model).__name__}."
        )
    if float_mode not in _MODES:
        raise ValueError(
            f"Expected float_mode to be one of {_MODES}. "
            f"Received: float_mode={float_mode!r}."
        )
    if threads is None:
        threads = _default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"Expected a positive integer. Received: threads={threads!r}.")
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built: call it on data or build it from "
            "keras.Input before compiling."
        )
    try:
        model_inputs = list(model.inputs or [])
        graph = parse(model)
    except (UnsupportedGraphError, AttributeError, ValueError):
        step = WholeModelStep(model)
        return PackedModel(
            [step], [WholeModelStep.INPUT], None, None, None, model.name, threads
        )
    input_shapes = [tuple(t.shape) for t in model_inputs]
    input_dtypes = [str(t.dtype) for t in model_inputs]
    specs = infer_specs(graph)
    steps = build_plan(graph, specs, float_mode)
    _detach(steps, specs)
    return PackedModel(
        steps,
        graph.inputs,
        graph.outputs,
        input_shapes,
        input_dtypes,
        model.name,
        threads,
    )


def kernel_info() -> dict[str, Any]:
    """The instruction-set level and micro-kernel in use, the levels this CPU
    supports, and the CPU features they depend on."""
    return {
        "isa": K.isa(),
        "supported_isas": K.supported_isas(),
        "kernel": K.kernel(),
        **K.features(),
    }

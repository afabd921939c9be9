"""``compile(model) -> PackedModel``: the public entry point of the engine."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import keras
import numpy as np

from bnncore.engine import kernels as K
from bnncore.engine.buffers import BufferPool
from bnncore.engine.graph import Node, UnsupportedGraphError, ValueId, parse, substitute
from bnncore.engine.planner import build_plan, infer_specs
from bnncore.engine.program import Program, _Mismatch, build_program
from bnncore.engine.steps import BinaryStep, Env, FloatStep, Step, WholeModelStep

__all__ = ["PackedModel", "compile"]

_MODES = ("native", "keras")
THREADS_VARIABLE = "BNN_ENGINE_THREADS"


def _default_threads() -> int:
    """``BNN_ENGINE_THREADS`` when set, else the CPUs available to the process.

    Raises:
        ValueError: for a value of the variable that is not a positive integer.
    """
    value = os.environ.get(THREADS_VARIABLE, "").strip()
    if value:
        try:
            threads = int(value, 10)
        except ValueError:
            threads = 0
        if threads < 1:
            raise ValueError(
                f"Expected {THREADS_VARIABLE} to be a positive integer (the number "
                f"of threads). Received: {THREADS_VARIABLE}={value!r}."
            )
        return threads
    return max(
        1,
        len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count() or 1,
    )


class PackedModel:
    """A compiled model: binary layers on packed bits, the rest in TensorFlow.

    Build it with :func:`compile`. The compiled model keeps packed copies of the
    binary kernels and clones of the other layers, not the original model.

    Attributes:
        steps: The plan, in execution order.
        threads: Worker threads of the binary kernels.
    """

    def __init__(
        self,
        steps: list[Step],
        inputs: list[ValueId],
        outputs: list[ValueId] | None,
        input_shapes: list[tuple[int | None, ...]] | None,
        input_dtypes: list[str] | None,
        name: str,
        threads: int,
    ) -> None:
        self.steps = steps
        self._inputs = inputs
        self._outputs = outputs
        self._input_shapes = input_shapes
        self._input_dtypes = input_dtypes
        self.name = name
        self.threads = threads
        self._buffers = BufferPool()
        # Programs by per-sample input shapes and dtypes (None: the plan runs
        # step by step for those shapes).
        self._programs: dict[Any, Program | None] = {}
        self._programs_lock = threading.Lock()

    @property
    def isa(self) -> str:
        """The instruction-set level the core runs at: ``"portable"``, ``"avx2"``
        or ``"avx512"`` (chosen from cpuid, or forced by ``BNN_ENGINE_ISA`` or
        :func:`bnncore.engine.kernels.set_isa`; one level for the process)."""
        return K.isa()

    @property
    def weight_bytes(self) -> int:
        """Bytes of parameters held: packed kernels, folded constants, float layers."""
        return sum(step.weight_bytes for step in self.steps)

    @property
    def binary_layers(self) -> list[str]:
        """Names of the layers that run on packed bits."""
        return [s.name for s in self.steps if isinstance(s, BinaryStep)]

    def describe(self) -> str:
        """One line per step of the plan."""
        return "\n".join(step.describe() for step in self.steps)

    def _check_inputs(self, x: Any) -> list[np.ndarray]:
        if self._input_shapes is None or self._input_dtypes is None:
            return [x]  # a model run whole, inputs unknown
        arrays = list(x) if isinstance(x, list | tuple) else [x]
        if len(arrays) != len(self._inputs):
            raise ValueError(
                f"Expected {len(self._inputs)} input array(s) for model {self.name!r}. "
                f"Received: x with {len(arrays)} array(s)."
            )
        checked = []
        for index, (array, shape, dtype) in enumerate(
            zip(arrays, self._input_shapes, self._input_dtypes, strict=True)
        ):
            array = np.asarray(array)
            field = "x" if len(arrays) == 1 else f"x[{index}]"
            if not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
                raise ValueError(
                    "Expected a numeric array. "
                    f"Received: {field} of dtype {array.dtype}."
                )
            ok = len(array.shape) == len(shape) and all(
                want is None or want == got
                for want, got in zip(shape, array.shape, strict=True)
            )
            if ok and array.ndim and array.shape[0] == 0:
                raise ValueError(
                    "Expected at least one sample. "
                    f"Received: {field}.shape={array.shape}."
                )
            if not ok:
                expected = tuple("batch" if d is None else d for d in shape)
                raise ValueError(
                    f"Expected {field} of shape {expected}. "
                    f"Received: {field}.shape={array.shape}."
                )
            checked.append(np.ascontiguousarray(array, dtype=dtype))
        return checked

    def predict(self, x: Any) -> Any:
        """Runs the model on a batch.

        Args:
            x: Array (or list of arrays for several inputs) with the model's
                input shape; the batch dimension may be any size.

        Returns:
            NumPy array, or a list of arrays for a model with several outputs.

        Raises:
            ValueError: if the inputs do not match the model's inputs.
        """
        inputs = self._check_inputs(x)
        program = self.program(inputs)
        if program is not None:
            try:
                results = program.run(inputs, self.threads)
                return results[0] if len(results) == 1 else results
            except _Mismatch:
                pass  # a Keras layer's output changed shape: run step by step
        return self._predict_steps(inputs)

    __call__ = predict

    def predict_steps(self, x: Any) -> Any:
        """Runs the plan step by step from Python (each step one kernel call):
        the reference the whole-plan programs of :meth:`predict` equal bit for
        bit. Same arguments and results as :meth:`predict`."""
        return self._predict_steps(self._check_inputs(x))

    def program(self, inputs: list[np.ndarray]) -> Program | None:
        """The whole-plan program for the (checked) inputs' shapes, made on
        first use; None when the plan runs step by step."""
        if self._outputs is None or not all(isinstance(a, np.ndarray) for a in inputs):
            return None
        key = tuple((a.shape[1:], a.dtype.str) for a in inputs)
        try:
            return self._programs[key]
        except KeyError:
            pass
        with self._programs_lock:
            if key not in self._programs:
                if len(self._programs) >= 8:
                    self._programs.pop(next(iter(self._programs)))
                self._programs[key] = build_program(
                    self.steps, self._inputs, self._outputs, inputs
                )
            return self._programs[key]

    def _predict_steps(self, inputs: list[Any]) -> Any:
        key = tuple((a.shape, a.dtype.str) for a in inputs if isinstance(a, np.ndarray))
        with self._buffers.lease(key) as lease:
            env = Env()
            for value, array in zip(self._inputs, inputs, strict=True):
                env.floats[value] = array
            for step in self.steps:
                step.run(env, self.threads)
            if self._outputs is None:
                outputs = keras.tree.flatten(env.floats[WholeModelStep.OUTPUT])
            else:
                outputs = [env.floats[v] for v in self._outputs]
            results = [np.asarray(out, dtype=np.float32) for out in outputs]
            del env
        self._buffers.give_back(lease, results)
        return results[0] if len(results) == 1 else results

    def step_times(self, x: Any, repeats: int = 5) -> list[tuple[str, float]]:
        """Median wall time of each step over ``repeats`` runs on ``x``.

        Returns:
            ``(description, seconds)`` per step, in plan order.
        """
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise ValueError(
                f"Expected a positive integer. Received: repeats={repeats!r}."
            )
        samples: list[list[float]] = [[] for _ in self.steps]
        inputs = self._check_inputs(x)
        key = tuple((a.shape, a.dtype.str) for a in inputs if isinstance(a, np.ndarray))
        for _ in range(repeats + 1):  # the first run fills the buffer pool
            with self._buffers.lease(key) as lease:
                env = Env()
                for value, array in zip(self._inputs, inputs, strict=True):
                    env.floats[value] = array
                for index, step in enumerate(self.steps):
                    start = time.perf_counter()
                    step.run(env, self.threads)
                    samples[index].append(time.perf_counter() - start)
                del env
            self._buffers.give_back(lease, [])
        samples = [times[1:] for times in samples]
        return [
            (step.describe(), float(np.median(times)))
            for step, times in zip(self.steps, samples, strict=True)
        ]


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

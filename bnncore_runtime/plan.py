"""A compiled plan and its ``predict``: the part of a compiled model that
needs neither Keras nor TensorFlow (:class:`bnncore.engine.PackedModel` and
:class:`bnncore_runtime.Model` build on it)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np

from bnncore_runtime import kernels as K
from bnncore_runtime.buffers import BufferPool
from bnncore_runtime.graph import ValueId
from bnncore_runtime.program import Program, _Mismatch, build_program
from bnncore_runtime.steps import BinaryStep, Env, Step

__all__ = ["THREADS_VARIABLE", "CompiledPlan", "default_threads"]

THREADS_VARIABLE = "BNN_ENGINE_THREADS"


def default_threads() -> int:
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


class CompiledPlan:
    """A plan (steps over named values) with its inputs, outputs and threads.

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
        # The direct path of predict: (program, per-sample shape, dtype) of the
        # last single-input, single-output call that ran a direct program.
        self._direct: tuple[Program, tuple[int, ...], np.dtype] | None = None

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
        direct = self._direct
        if (
            direct is not None
            and type(x) is np.ndarray
            and x.dtype is direct[2]
            and x.shape[1:] == direct[1]
            and x.shape[0] > 0
            and x.flags.c_contiguous
        ):
            # The checks below passed for this per-sample shape and dtype, and
            # would change nothing: one call into the core.
            return direct[0].run_direct([x], self.threads)[0]
        inputs = self._check_inputs(x)
        program = self.program(inputs)
        if program is not None:
            try:
                results = program.run(inputs, self.threads)
            except _Mismatch:
                pass  # a Keras layer's output changed shape: run step by step
            else:
                if program.direct and len(inputs) == 1 and len(results) == 1:
                    array = inputs[0]
                    if array is x and array.dtype == np.float32:
                        self._direct = (program, array.shape[1:], array.dtype)
                return results[0] if len(results) == 1 else results
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
            outputs = self._collect(env)
            results = [np.asarray(out, dtype=np.float32) for out in outputs]
            del env
        self._buffers.give_back(lease, results)
        return results[0] if len(results) == 1 else results

    def _collect(self, env: Env) -> list[Any]:
        """The output values of a step-by-step run."""
        if self._outputs is None:
            raise RuntimeError(f"{self.name}: the plan has no outputs.")
        return [env.floats[v] for v in self._outputs]

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

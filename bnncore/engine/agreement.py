"""Layer-by-layer agreement of a compiled model with its Keras model.

The engine's contract (docs/engine.md, "Exactness") does not depend on how
TensorFlow rounds on the CPU at hand: each step of a plan, fed the values
Keras computed for its inputs, gives

* float outputs within a bound derived from the summation length of each
  output (zero for the operations the engine performs exactly as Keras does);
* binarization decisions (packed sign bits) equal to the signs of Keras's
  values, except where Keras's value lies within that bound of the threshold,
  where either sign is a correct rounding of the exact result.

:func:`verify` checks this for a model and an input batch and reports every
decision that was near the threshold, and every one that differed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from bnncore.engine import kernels as K
from bnncore.engine.floatops import gamma
from bnncore.engine.graph import ValueId, parse, substitute
from bnncore.engine.runtime import PackedModel, compile
from bnncore.engine.steps import (
    BinaryStep,
    ChainStep,
    Env,
    FloatConvStep,
    FloatStep,
    PackedTensor,
    Step,
)

__all__ = ["Agreement", "StepAgreement", "verify"]


@dataclass(frozen=True)
class StepAgreement:
    """How one step of the plan agrees with Keras on the same inputs.

    Attributes:
        step: The step's description (``PackedModel.describe()`` line).
        values: Float outputs compared.
        max_abs_diff: Largest ``|engine - keras|`` over those outputs.
        max_bound: Largest bound allowed for any of them.
        exceeded: Float outputs whose difference exceeds their bound.
        decisions: Binarization decisions compared (packed sign bits).
        near_threshold: Decisions where Keras's value lies within the bound of
            the threshold: either sign is a correct rounding there.
        flipped: Decisions that differ from the sign of Keras's value.
        unexplained: Flipped decisions that were not near the threshold.
    """

    step: str
    values: int
    max_abs_diff: float
    max_bound: float
    exceeded: int
    decisions: int
    near_threshold: int
    flipped: int
    unexplained: int

    @property
    def ok(self) -> bool:
        """Whether the step keeps the contract on this input."""
        return self.exceeded == 0 and self.unexplained == 0


@dataclass(frozen=True)
class Agreement:
    """The result of :func:`verify`.

    Attributes:
        steps: One record per step of the plan, in plan order.
        samples_near_threshold: Indices of the samples (first axis) with at
            least one decision near the threshold; on the others every
            binarization is Keras's, so the outputs differ by float rounding only.
    """

    steps: tuple[StepAgreement, ...]
    samples_near_threshold: tuple[int, ...]

    @property
    def ok(self) -> bool:
        """Whether every step keeps the contract."""
        return all(s.ok for s in self.steps)

    @property
    def near_threshold(self) -> int:
        return sum(s.near_threshold for s in self.steps)

    @property
    def flipped(self) -> int:
        return sum(s.flipped for s in self.steps)

    def __str__(self) -> str:
        head = (
            f"{'step':<56} {'values':>8} {'max diff':>9} {'bound':>9} "
            f"{'decisions':>9} {'near':>5} {'flipped':>7}  ok"
        )
        lines = [head]
        for s in self.steps:
            lines.append(
                f"{s.step[:56]:<56} {s.values:>8} {s.max_abs_diff:>9.2e} "
                f"{s.max_bound:>9.2e} {s.decisions:>9} {s.near_threshold:>5} "
                f"{s.flipped:>7}  {'yes' if s.ok else 'NO'}"
            )
        lines.append(
            f"{self.near_threshold} decision(s) near the threshold, "
            f"{self.flipped} flipped; samples near the threshold: "
            f"{list(self.samples_near_threshold)}"
        )
        return "\n".join(lines)


def verify(model: Any, x: Any, *, packed: PackedModel | None = None) -> Agreement:
    """Runs each step of ``compile(model)`` on Keras's values for its inputs and
    compares its outputs with Keras's (see the module docstring).

    Decisions near the threshold are counted with two bounds: the step's own
    (its inputs equal to Keras's), and the bound carried from the steps before
    it through native steps — how far the engine's value may be from Keras's
    when the engine runs end to end. A value that passes through a layer run
    by Keras (arbitrary code) carries no bound past it.

    Args:
        model: The Keras model.
        x: An input batch (array, or list of arrays).
        packed: The compiled model (default: ``compile(model)``).

    Returns:
        The :class:`Agreement`, one record per step.

    Raises:
        ValueError: for inputs that do not fit the model, or a model that
            runs whole in Keras (no plan to verify).
    """
    packed = compile(model) if packed is None else packed
    inputs = packed._check_inputs(x)
    if packed._outputs is None:
        raise ValueError(
            f"Model {model.name!r} runs whole in Keras: there are no steps to verify."
        )
    reference = _keras_values(model, inputs)
    engine_env = Env()
    for value, array in zip(packed._inputs, inputs, strict=True):
        engine_env.floats[value] = array
    for step in packed.steps:  # the engine's own packed layouts
        step.run(engine_env, 1)
    carried: dict[ValueId, np.ndarray] = {}
    records, near_samples = [], set()
    for step in packed.steps:
        tally = _check_step(step, reference, engine_env, carried)
        records.append(tally.record())
        near_samples |= tally.near_samples
    return Agreement(tuple(records), tuple(sorted(near_samples)))


def _keras_values(model: Any, inputs: list[np.ndarray]) -> dict[ValueId, np.ndarray]:
    """Every value of the model's graph as Keras computes it, layer by layer."""
    graph = parse(model)
    values: dict[ValueId, Any] = dict(zip(graph.inputs, inputs, strict=True))
    for node in graph.nodes:
        args = substitute(node.args, values)
        kwargs = substitute(node.kwargs, values)
        if isinstance(node.op, keras.layers.Layer):
            kwargs["training"] = False
        result = node.op(*args, **kwargs)
        for value, out in zip(node.outputs, keras.tree.flatten(result), strict=False):
            values[value] = np.asarray(out)
    return values


def _repack(value: np.ndarray, like: PackedTensor) -> PackedTensor:
    """Keras's float ``value`` packed in the layout of the engine's ``like``."""
    x = np.asarray(value, np.float32)
    n = x.shape[0]
    if like.pixels > 1:
        words = K.pack(x.reshape(n, like.pixels, -1), like.groups)
        return PackedTensor(words.reshape(n, -1), like.shape, like.groups, like.pixels)
    return PackedTensor(K.pack(x.reshape(like.shape), like.groups), like.shape,
                        like.groups)  # fmt: skip


def _signs(packed: PackedTensor) -> np.ndarray:
    """The ±1 values that packed bits stand for, in the shape of the value."""
    if packed.pixels == 1:
        return K.unpack(packed.words, packed.shape[-1], packed.groups)
    channels = packed.shape[-1] // packed.pixels
    words = packed.words.reshape(packed.shape[0], packed.pixels, -1)
    return K.unpack(words, channels, packed.groups).reshape(packed.shape)


class _Recording(dict):
    """A dict that remembers which keys were written."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.written: list[Any] = []

    def __setitem__(self, key: Any, value: Any) -> None:
        self.written.append(key)
        super().__setitem__(key, value)


def _check_step(
    step: Step,
    reference: dict[ValueId, np.ndarray],
    engine_env: Env,
    carried: dict[ValueId, np.ndarray],
) -> _Tally:
    env = Env()
    env.floats = _Recording(reference)
    env.packed = _Recording()
    if isinstance(step, BinaryStep):
        key = (step.source, step.groups)
        env.packed[key] = _repack(reference[step.source], engine_env.packed[key])
    env.floats.written.clear()
    env.packed.written.clear()
    step.run(env, 1)
    tally = _Tally(step.describe())
    if isinstance(step, ChainStep):
        bound, wide = _chain_bounds(step, env, reference, carried, tally)
    elif isinstance(step, FloatStep):
        bound, wide = _float_bounds(step, env, reference, carried)
    else:  # packing: the same decisions as Keras's sign on the same values

        def bound(value: ValueId) -> np.ndarray:
            return _ZERO

        def wide(value: ValueId) -> np.ndarray | None:
            return carried.get(value)

    for value in dict.fromkeys(env.floats.written):
        got = np.asarray(env.floats[value], np.float64)
        tally.floats(got, np.asarray(reference[value], np.float64), bound(value))
        carried_bound = wide(value)
        if carried_bound is not None:
            carried[value] = carried_bound
    for key in dict.fromkeys(env.packed.written):
        value = key[0]
        signs, ref = _signs(env.packed[key]), reference[value]
        tally.decisions(signs, ref, bound(value))
        end_to_end = wide(value)
        if end_to_end is not None:
            tally.near_end_to_end(ref, end_to_end)
    return tally


class _Tally:
    def __init__(self, name: str) -> None:
        self.name = name
        self.values = self.exceeded = 0
        self.decisions_ = self.near = self.flipped = self.unexplained = 0
        self.max_diff = self.max_bound = 0.0
        self.near_samples: set[int] = set()

    def floats(self, got: np.ndarray, ref: np.ndarray, bound: np.ndarray) -> None:
        # TensorFlow flushes subnormal results to zero; the core does not.
        bound = np.broadcast_to(bound, ref.shape) + _TINY
        diff = np.abs(got - ref)
        self.values += diff.size
        self.exceeded += int(np.count_nonzero(~(diff <= bound)))
        if diff.size:
            self.max_diff = max(self.max_diff, float(np.max(diff)))
            self.max_bound = max(self.max_bound, float(np.max(bound)))

    def decisions(self, signs: np.ndarray, ref: np.ndarray, bound: np.ndarray) -> None:
        ref = np.asarray(ref, np.float64).reshape(signs.shape)
        bound = np.broadcast_to(bound, ref.shape)
        flipped = (signs < 0) != (ref < 0)
        near = ((bound > 0) & (np.abs(ref) <= bound)) | (
            flipped & (np.abs(ref) < _TINY)
        )
        self.decisions_ += signs.size
        self.near += int(np.count_nonzero(near))
        self.flipped += int(np.count_nonzero(flipped))
        self.unexplained += int(np.count_nonzero(flipped & ~near))
        self._note_samples(near)

    def near_end_to_end(self, ref: np.ndarray, bound: np.ndarray) -> None:
        """Decisions an end-to-end run may take either way (carried bound)."""
        ref = np.abs(np.asarray(ref, np.float64))
        self._note_samples((bound > 0) & (ref <= bound.reshape(ref.shape)))

    def internal(self, near: np.ndarray) -> None:
        """Decisions inside a fused chain (a sign before other ops)."""
        self.near += int(np.count_nonzero(near))
        self._note_samples(near)

    def _note_samples(self, near: np.ndarray) -> None:
        if near.ndim and near.any():
            rows = near.reshape(near.shape[0], -1).any(axis=1)
            self.near_samples.update(int(i) for i in np.flatnonzero(rows))

    def record(self) -> StepAgreement:
        return StepAgreement(
            self.name, self.values, self.max_diff, self.max_bound, self.exceeded,
            self.decisions_, self.near, self.flipped, self.unexplained,
        )  # fmt: skip


_ZERO = np.zeros(())
_TINY = float(np.finfo(np.float32).tiny)  # the smallest normal float32


def _float_bounds(
    step: FloatStep,
    env: Env,
    reference: dict[ValueId, np.ndarray],
    carried: dict[ValueId, np.ndarray],
) -> tuple[Any, Any]:
    """A float step's own bound, and the bound carried through it."""
    if step.fn is None or step.bound is None:  # the Keras layer: the same ops
        return (lambda value: _ZERO), (lambda value: None)
    out = np.asarray(env.floats[step.outputs[0]], np.float64)
    inputs = [np.asarray(reference[v]) for v in step.inputs]
    own = np.asarray(step.bound([np.asarray(a) for a in inputs], out), np.float64)
    ref_out = np.asarray(reference[step.outputs[0]], np.float64)
    measured = np.abs(out - ref_out.reshape(out.shape))
    total: np.ndarray | None = None
    moved = [carried.get(v) for v in step.inputs]
    if step.monotone and any(d is not None for d in moved):
        # Monotone in each input: the outputs at the interval ends bound the rest.
        shifted = []
        for sign in (1.0, -1.0):
            ends = [
                np.asarray(a, np.float32) if d is None
                else (np.asarray(a, np.float64) + sign * d.reshape(np.shape(a)))
                .astype(np.float32)
                for a, d in zip(inputs, moved, strict=True)
            ]  # fmt: skip
            shifted.append(np.asarray(step.fn(ends, 1), np.float64))
        move = np.maximum(np.abs(shifted[0] - out), np.abs(shifted[1] - out))
        total = measured + move + np.spacing(np.abs(out).astype(np.float32))
    elif not any(d is not None for d in moved):
        total = measured if np.any(measured) else None
    return (lambda value: own), (lambda value: total)


def _chain_bounds(
    step: ChainStep,
    env: Env,
    reference: dict[ValueId, np.ndarray],
    carried: dict[ValueId, np.ndarray],
    tally: _Tally,
) -> tuple[Any, Any]:
    """Bounds of a fused chain: the product sums' bound, carried through the
    epilogue op by op (each op adds a rounding of its result; a multiplier
    scales the bound; ReLU and clips never widen it).

    Where the chain absorbed layers after its head and the head's own result
    is no sign, the head's values are compared with Keras's (against the sums'
    bound), and the difference measured there is what the rest of the chain
    carries: a bound for these inputs, tighter than the worst case."""
    incoming: np.ndarray | None = None
    if isinstance(step, FloatConvStep):
        x = np.asarray(reference[step.source], np.float32)
        y = np.asarray(step.conv(x, 1), np.float32)
        delta = np.asarray(step.bound(x), np.float64)
        products = 0
        if step.source in carried:
            incoming = step.spread(carried[step.source])
    else:
        assert isinstance(step, BinaryStep)
        packed = env.packed[(step.source, step.groups)]
        geo, out_shape = step._geometry(packed)
        dots, _ = K.bconv(packed.words, step.kernel.panels, geo, [], threads=1)
        assert dots is not None
        y = dots.reshape(out_shape)
        delta = np.zeros(y.shape)  # integer dot products: exact on both sides
        products = math.prod(step.kernel.shape[:3])
    residual = None if step.residual is None else reference[step.residual]
    near = np.zeros(y.shape, bool)
    head_signs = any(op[0] == K.OP_SIGN for op in step.ops[: step.head_ops])
    for index, op in enumerate(step.ops):
        if index == step.head_ops and not head_signs:
            head = np.asarray(reference[step.head_output], np.float64).reshape(y.shape)
            tally.floats(y.astype(np.float64), head, delta)
            delta = np.abs(y - head) + _ulp(y, np.zeros(y.shape))
        result, delta, inside = _apply(op, y, delta, products, residual)
        if incoming is not None:
            _, incoming, _ = _apply(op, y, incoming, 0, residual)
        y = result
        near |= inside
    tally.internal(near)
    final = np.asarray(delta, np.float64)
    # End to end: what this step measurably adds, plus what came in. (Pooled
    # chains fold the layers after the pooling in before it: no Keras value
    # stands for their result, so their own bound stands in.)
    if step.pool is None:
        ref_out = np.asarray(reference[step.output], np.float64).reshape(y.shape)
        own = np.abs(y - ref_out)
    else:
        own = delta
    wide = own + (0.0 if incoming is None else incoming)
    final_wide = np.asarray(wide, np.float64) if np.any(wide) else None

    def reshape(bound: np.ndarray, value: ValueId) -> np.ndarray:
        if isinstance(step, BinaryStep) and step.pool and value == step.pool[-1]:
            pool, strides, _, _, _ = step.pool
            pads, sizes = step.pool_geometry(bound.shape)
            pooled = K.fmaxpool(bound.astype(np.float32), pool, strides, pads, sizes)
            widened = pooled.astype(np.float64) * (1 + 2**-20)
            return widened.reshape(np.shape(reference[value]))
        return bound.reshape(np.shape(reference[value]))

    return (
        lambda value: reshape(final, value),
        lambda value: None if final_wide is None else reshape(final_wide, value),
    )


def _apply(
    op: tuple[Any, ...],
    y: np.ndarray,
    delta: np.ndarray,
    products: int,
    residual: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One epilogue op on float32 ``y`` and the bound ``delta`` it carries;
    also the sign decisions it makes within ``delta`` of the threshold."""
    code = op[0]
    none = np.zeros(np.shape(y), bool)
    if code == K.OP_SCALE:
        y = np.multiply(y, op[1])
        # Keras sums `products` terms of magnitude |scale| (magnitude-aware
        # kernels); the engine multiplies the exact integer once.
        delta = delta * np.abs(op[1]) + gamma(products) * products * np.abs(op[1])
    elif code == K.OP_BIAS:
        y = np.add(y, op[1])
    elif code == K.OP_MULADD:
        t = np.multiply(y, op[1])
        delta = delta * np.abs(op[1]) + _ulp(t, delta)
        y = np.add(t, op[2])
    elif code == K.OP_RELU:
        return np.maximum(y, np.float32(0)), delta, none
    elif code == K.OP_CLIP:
        lo, hi = np.float32(op[1]), np.float32(op[2])
        return np.minimum(np.maximum(y, lo), hi), delta, none
    elif code == K.OP_SIGN:
        inside = (delta > 0) & (np.abs(y) <= delta)
        signs = np.where(y < 0, np.float32(-1), np.float32(1))
        return signs, np.where(inside, 2.0, 0.0), inside
    elif code == K.OP_RESIDUAL:
        y = np.add(y, np.asarray(residual, np.float32).reshape(y.shape))
    return y, delta + _ulp(y, delta), none


def _ulp(y: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Largest rounding step of a float32 result within ``delta`` of ``|y|``."""
    return np.spacing((np.abs(y) + delta).astype(np.float32)).astype(np.float64)

"""Whole-plan programs: a plan's native steps held by the compiled core.

A plan (the list of :mod:`~bnncore_runtime.steps`) is lowered, per input shape
(every size but the batch), into segments: runs of consecutive native steps
that the core executes as one program call with the GIL released
(``csrc/program.c``), and single steps that run Keras layers in Python. A
model whose steps are all native is one call per ``predict``.

The program's steps are data (:class:`CStep`): a kind, slots read and
written, the kind's dims by name, the binary convolution's
:class:`~bnncore_runtime.kernels.ConvGeometry`, epilogue ops and weights.
Kinds, dim names, step fields, geometry fields and epilogue ops are defined
once in the core (``BNN_STEP_KINDS``/``BNN_STEP_FIELDS`` in
``csrc/program.h``, ``BNN_GEOM_FIELDS``/``BNN_EPILOGUE_OPS`` in
``csrc/bnn.h``) and read from it here; the names used by Python are checked
against them at import.

Shapes come from a trace: the plan runs once step by step on two copies of
the first sample, and every value's shape per sample is read off it. Every
slot holds one value for the whole batch, batch-major, so the core may run a
program on any range of samples (one run of samples per thread for a batch).
The kernels are the ones the step-by-step path calls, in the same order: the
results are the same bits.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bnncore_runtime import kernels as K
from bnncore_runtime.buffers import SMALL_BYTES, aligned_empty
from bnncore_runtime.geometry import window
from bnncore_runtime.graph import ValueId
from bnncore_runtime.steps import (
    BinaryStep,
    ChainStep,
    Env,
    FloatConvStep,
    FloatStep,
    PackedTensor,
    PackStep,
    Step,
)

__all__ = ["STEP_KINDS", "CStep", "Program", "build_program"]


@dataclass(frozen=True)
class CStep:
    """One step of a program as the core reads it (by these field names).

    Attributes:
        kind: Index of the step kind (:data:`STEP_KINDS`).
        inputs: Slots read.
        out: Slot written (float, or packed for ``pack``/``pmaxpool``), or -1.
        out_packed: Packed output slot (``bconv``, ``epilogue``), or -1.
        residual: Slot read by the residual op, or -1.
        dims: The kind's dims in the core's order (see :func:`make_step`).
        geometry: The binary convolution's geometry (``bconv``; its ``n`` is
            per sample).
        ops: Epilogue ops ``(OP_*, args...)``.
        weights: ``(array,)``: panels, float kernel or pooling OR mask.
        pad_value: Value of padded taps (``fconv``).
    """

    kind: int
    inputs: tuple[int, ...]
    out: int = -1
    out_packed: int = -1
    residual: int = -1
    dims: tuple[int, ...] = ()
    geometry: K.ConvGeometry | None = None
    ops: list[tuple[Any, ...]] = field(default_factory=list)
    weights: tuple[np.ndarray, ...] | None = None
    pad_value: float = 0.0


def _kinds() -> dict[str, tuple[int, tuple[str, ...]]]:
    found = K.description()
    fields = tuple(f.name for f in dataclasses.fields(CStep))
    if tuple(found["step_fields"]) != fields:
        raise ImportError(
            "bnncore_runtime: CStep's fields differ from the core's BNN_STEP_FIELDS: "
            f"{fields} vs {found['step_fields']}; rebuild the core."
        )
    return {
        name: (index, tuple(dims.split()))
        for index, (name, dims) in enumerate(found["step_kinds"])
    }


# Step kind name -> (code, names of its dims), as the core defines them.
STEP_KINDS = _kinds()


def make_step(
    kind: str, inputs: list[int], dims: dict[str, Any], **fields: Any
) -> CStep:
    """A :class:`CStep` of ``kind`` whose dims are given by name.

    Raises:
        ValueError: when ``dims`` does not name exactly the kind's dims.
    """
    code, names = STEP_KINDS[kind]
    wanted = {n.rstrip("*") for n in names}
    if set(dims) != wanted:
        raise ValueError(f"{kind}: dims {sorted(dims)} != {sorted(wanted)}")
    flat: list[int] = []
    for name in names:
        if name.endswith("*"):
            flat.extend(int(v) for v in dims[name[:-1]])
        else:
            flat.append(int(dims[name]))
    return CStep(code, tuple(inputs), dims=tuple(flat), **fields)


class _Unsupported(Exception):  # noqa: N818
    """The plan (or this input shape) cannot run as a program."""


class _Mismatch(Exception):  # noqa: N818
    """A value computed in Python does not have its traced shape."""


@dataclass
class _Segment:
    first: int = 0  # C steps [first, last)
    last: int = 0
    step: Step | None = None  # a Python step instead
    fill: list[ValueId] = field(default_factory=list)  # values copied to slots after


def _per_sample(shape: tuple[int, ...]) -> tuple[int, ...]:
    if not shape or shape[0] != 2:
        raise _Unsupported("a value without the batch axis")
    return tuple(int(d) for d in shape[1:])


def _rows(shape: tuple[int, ...]) -> int:
    """Rows per sample of a per-sample shape (all axes but the last)."""
    return math.prod(shape[:-1])


# Elementwise ops whose sign decisions an epilogue step makes exactly as the
# elementwise step followed by packing does: the same IEEE operations in the
# same order (CLIP is not: NumPy's clip keeps a NaN, the epilogue's gives lo).
_FUSED_PACK_OPS = frozenset((K.OP_SCALE, K.OP_BIAS, K.OP_MULADD, K.OP_RELU, K.OP_SIGN))


class _Builder:
    def __init__(
        self,
        env: Env,
        inputs: list[ValueId],
        readers: dict[ValueId, int] | None = None,
    ) -> None:
        self.env = env
        self.inputs = inputs
        # How many plan steps (and model outputs) read each float value.
        self.readers = readers or {}
        self.bytes: list[int] = []
        self.shapes: list[tuple[int, ...]] = []  # per sample, of the first value
        self.dtypes: list[Any] = []
        self.float_slot: dict[ValueId, int] = {}
        self.packed_slot: dict[tuple[ValueId, int], int] = {}
        self.steps: list[CStep] = []
        self.segments: list[_Segment] = []
        self.python_values: dict[ValueId, _Segment] = {}  # produced in Python
        self.input_slots: dict[int, int] = {}  # slot -> input index
        self.value_shapes: dict[ValueId, tuple[int, ...]] = {}

    def new_slot(self, nbytes: int, shape: tuple[int, ...], dtype: Any) -> int:
        self.bytes.append(int(nbytes))
        self.shapes.append(shape)
        self.dtypes.append(np.dtype(dtype))
        return len(self.bytes) - 1

    def shape(self, value: ValueId) -> tuple[int, ...]:
        shape = self.value_shapes.get(value)
        if shape is None:
            shape = _per_sample(tuple(np.shape(self.env.floats[value])))
            self.value_shapes[value] = shape
        return shape

    def read(self, value: ValueId) -> int:
        """The float slot of a value a C step reads."""
        slot = self.float_slot.get(value)
        if slot is not None:
            return slot
        shape = self.shape(value)
        slot = self.new_slot(4 * math.prod(shape), shape, np.float32)
        self.float_slot[value] = slot
        if value in self.inputs:
            self.input_slots[slot] = self.inputs.index(value)
        elif value in self.python_values:
            self.python_values[value].fill.append(value)
        else:
            raise _Unsupported(f"value {value} has no producer")
        return slot

    def write(self, value: ValueId, shape: tuple[int, ...] | None = None) -> int:
        """A new float slot for a value a C step writes."""
        traced = self.shape(value)
        shape = traced if shape is None else shape
        if math.prod(shape) != math.prod(traced):
            raise _Unsupported(f"{value}: {shape} vs the traced {traced}")
        slot = self.new_slot(4 * math.prod(shape), shape, np.float32)
        self.float_slot[value] = slot
        return slot

    def packed(self, key: tuple[ValueId, int]) -> PackedTensor:
        return self.env.packed[key]

    def write_packed(self, key: tuple[ValueId, int]) -> int:
        words = self.packed(key).words
        shape = _per_sample(words.shape)
        slot = self.new_slot(8 * math.prod(shape), shape, np.uint64)
        self.packed_slot[key] = slot
        return slot

    def temp(self, nbytes: int) -> int:
        return self.new_slot(nbytes, (nbytes,), np.uint8)

    def add(
        self, kind: str, inputs: list[int], dims: dict[str, Any], **kw: Any
    ) -> None:
        self.steps.append(make_step(kind, inputs, dims, **kw))

    # ---- lowering, one plan step at a time ---------------------------------

    def lower(self, step: Step) -> bool:
        if isinstance(step, PackStep):
            self.lower_pack(step)
        elif isinstance(step, BinaryStep):
            self.lower_binary(step)
        elif isinstance(step, FloatConvStep):
            return self.lower_fconv(step)
        elif isinstance(step, FloatStep):
            return self.lower_float(step)
        else:
            return False
        return True

    def lower_pack(self, step: PackStep) -> None:
        shape = self.shape(step.value)
        x = self.read(step.value)
        channels = shape[-1]
        cwg = K.words_for(channels // step.groups)
        out = self.write_packed((step.value, step.groups))
        if self._fuse_pack(step, x, shape, cwg, out):
            return
        dims = dict(rows=_rows(shape), channels=channels, groups=step.groups,
                    words_per_group=cwg)  # fmt: skip
        self.add("pack", [x], dims, out=out)

    def _fuse_pack(
        self, step: PackStep, x: int, shape: tuple[int, ...], cwg: int, out: int
    ) -> bool:
        """Packing the output of the elementwise step just before it (a batch
        norm, say), read by nothing else: one epilogue step that writes the
        sign bits only (one pass over the values instead of two, and no
        float output)."""
        if not self.steps or self.readers.get(step.value, 0) != 1:
            return False
        segment = self.segments[-1] if self.segments else None
        if segment is None or segment.step is not None:
            return False  # the step before is not in the current C segment
        if segment.first >= len(self.steps):
            return False
        prev = self.steps[-1]
        if prev.kind != STEP_KINDS["elementwise"][0] or prev.out != x:
            return False
        if not all(op[0] in _FUSED_PACK_OPS for op in prev.ops):
            return False
        dims = dict(rows=_rows(shape), cout=shape[-1], gout=step.groups,
                    cw_out_g=cwg, wpp_out=step.groups * cwg)  # fmt: skip
        self.steps[-1] = make_step(
            "epilogue", list(prev.inputs), dims, out_packed=out, ops=list(prev.ops)
        )
        return True

    def lower_binary(self, step: BinaryStep) -> None:
        source = self.packed((step.source, step.groups))
        words = source.words
        one = PackedTensor(
            np.broadcast_to(np.zeros((), np.uint64), (1, *words.shape[1:])),
            (1, *source.shape[1:]),
            source.groups,
            source.pixels,
        )
        geo, out_shape = step._geometry(one)
        x = self.packed_slot.get((step.source, step.groups))
        if x is None:
            raise _Unsupported("packed input not made by the program")
        per_sample = out_shape[1:]
        y = self.write(step.output, per_sample) if step.float_out else -1
        gout, cw, wpp = K.out_layout(geo.cout, step.packed_groups or 1)
        yp = -1
        if step.packed_groups is not None:
            if step.pool is None:
                yp = self.write_packed((step.output, step.packed_groups))
            else:
                yp = self.temp(8 * geo.rows * wpp)
        residual = -1 if step.residual is None else self.read(step.residual)
        self.add(
            "bconv", [x], dict(gout=gout, cw_out_g=cw, wpp_out=wpp), out=y,
            out_packed=yp, residual=residual, geometry=geo, ops=list(step.ops),
            weights=(step.kernel.panels,),
        )  # fmt: skip
        if step.pool is None:
            return
        if step.packed_groups is None:
            raise _Unsupported("pooling without a packed output")
        pool, strides, _, mask, target = step.pool
        (pt, pl), (oh, ow) = step.pool_geometry(out_shape)
        _, h, w, _ = out_shape
        out = self.write_packed((target, step.packed_groups))
        dims = dict(n=1, h=h, w=w, wpp=wpp, ph=pool[0], pw=pool[1], sh=strides[0],
                    sw=strides[1], pt=pt, pl=pl, oh=oh, ow=ow)  # fmt: skip
        weights = None if mask is None else (mask,)
        self.add("pmaxpool", [yp], dims, out=out, weights=weights)

    def lower_fconv(self, step: FloatConvStep) -> bool:
        native = step.native
        if native is None or native.geometry is None:
            return False
        shape = self.shape(step.source)
        x = self.read(step.source)
        dims = native.geometry((1, *shape))
        out_shape = (dims["oh"], dims["ow"], dims["cout"])
        y = (
            self.write(step.output, out_shape)
            if step.float_out
            else self.temp(4 * math.prod(out_shape))
        )
        self.add("fconv", [x], dims, out=y, weights=(native.kernel,),
                 pad_value=float(native.pad_value))  # fmt: skip
        if not step.ops and step.packed_groups is None:
            return True
        gout, cw, wpp = K.out_layout(dims["cout"], step.packed_groups or 1)
        yp = -1
        if step.packed_groups is not None:
            yp = self.write_packed((step.output, step.packed_groups))
        residual = -1 if step.residual is None else self.read(step.residual)
        edims = dict(rows=dims["oh"] * dims["ow"], cout=dims["cout"], gout=gout,
                     cw_out_g=cw, wpp_out=wpp)  # fmt: skip
        self.add("epilogue", [y], edims, out=y, out_packed=yp, residual=residual,
                 ops=list(step.ops))  # fmt: skip
        return True

    def lower_float(self, step: FloatStep) -> bool:
        lowering = step.lowering
        if lowering is None or step.fn is None or len(step.outputs) != 1:
            return False
        what = lowering[0]
        output = step.outputs[0]
        shapes = [self.shape(v) for v in step.inputs]
        out_shape = self.shape(output)
        if what == "alias":
            if math.prod(shapes[0]) != math.prod(out_shape):
                return False
            self.float_slot[output] = self.read(step.inputs[0])
            return True
        if what == "add":
            if any(s != out_shape for s in shapes) or len(shapes) > 16:
                return False
            xs = [self.read(v) for v in step.inputs]
            self.add(
                "add", xs, dict(count=math.prod(out_shape)), out=self.write(output)
            )
            return True
        if what == "concat":
            axis = lowering[1]
            rank = len(out_shape) + 1
            if axis not in (-1, rank - 1) or len(shapes) > 16:
                return False
            if any(s[:-1] != out_shape[:-1] for s in shapes):
                return False
            xs = [self.read(v) for v in step.inputs]
            dims = dict(rows=_rows(out_shape), widths=[s[-1] for s in shapes])
            self.add("concat", xs, dims, out=self.write(output))
            return True
        x = self.read(step.inputs[0])
        shape = shapes[0]
        if what == "fmaxpool":
            pool, strides, padding = lowering[1], lowering[2], lowering[3]
            (pt, oh), (pl, ow) = (
                window(shape[0], pool[0], strides[0], 1, padding),
                window(shape[1], pool[1], strides[1], 1, padding),
            )
            dims = dict(n=1, h=shape[0], w=shape[1], c=shape[2], ph=pool[0],
                        pw=pool[1], sh=strides[0], sw=strides[1], pt=pt, pl=pl,
                        oh=oh, ow=ow)  # fmt: skip
            self.add("fmaxpool", [x], dims, out=self.write(output))
        elif what == "elementwise":
            dims = dict(rows=_rows(shape), channels=shape[-1])
            self.add("elementwise", [x], dims, out=self.write(output),
                     ops=list(lowering[1]))  # fmt: skip
        elif what == "gap":
            dims = dict(n=1, pixels=_rows(shape), channels=shape[-1])
            self.add("gap", [x], dims, out=self.write(output))
        elif what == "softmax":
            dims = dict(rows=_rows(shape), channels=shape[-1])
            self.add("softmax", [x], dims, out=self.write(output))
        elif what == "dense":
            _, kernel4, bias, ops, softmax = lowering
            rows, cin, cout = _rows(shape), shape[-1], kernel4.shape[-1]
            y = self.write(output)
            dims = dict(n=rows, h=1, w=1, cin=cin, kh=1, kw=1, sh=1, sw=1, dh=1,
                        dw=1, pt=0, pl=0, oh=1, ow=1, cout=cout, depth_mult=1,
                        depthwise=0)  # fmt: skip
            self.add("fconv", [x], dims, out=y, weights=(kernel4,))
            tail = ([(K.OP_BIAS, bias)] if bias is not None else []) + list(ops)
            if tail:
                self.add("elementwise", [y], dict(rows=rows, channels=cout), out=y,
                         ops=tail)  # fmt: skip
            if softmax:
                self.add("softmax", [y], dict(rows=rows, channels=cout), out=y)
        else:
            raise _Unsupported(f"unknown lowering {what!r}")
        return True


def _reads(step: Step) -> list[ValueId]:
    """Float values a step reads."""
    if isinstance(step, FloatStep):
        return list(step.inputs)
    if isinstance(step, PackStep):
        return [step.value]
    if isinstance(step, ChainStep):
        return [v for v in (step.source, step.residual) if v is not None]
    raise _Unsupported(f"step {step.describe()!r}")


def _float_readers(
    steps: list[Step], outputs: list[ValueId]
) -> dict[ValueId, int] | None:
    """How many steps (and outputs) read each float value; None when a step's
    reads are not known. (A binary step reads its source packed: the packing
    step reads the float value.)"""
    readers = dict.fromkeys(outputs, 1)
    for step in steps:
        if isinstance(step, BinaryStep):
            values = [] if step.residual is None else [step.residual]
        else:
            try:
                values = _reads(step)
            except _Unsupported:
                return None
        for value in values:
            readers[value] = readers.get(value, 0) + 1
    return readers


def _writes(step: Step) -> list[ValueId]:
    """Float values a step writes (packed ones stay in Python: unsupported)."""
    if isinstance(step, FloatStep):
        return list(step.outputs)
    if isinstance(step, ChainStep) and step.packed_groups is None:
        return [step.output]
    raise _Unsupported(f"step {step.describe()!r}")


def build_program(
    steps: list[Step],
    inputs: list[ValueId],
    outputs: list[ValueId],
    arrays: list[np.ndarray],
) -> Program | None:
    """The program of a plan for the per-sample shapes of ``arrays`` (the
    checked inputs of a call), or None when the plan cannot run as one."""
    if any(a.ndim == 0 or a.shape[0] < 1 for a in arrays):
        return None
    trace = [np.ascontiguousarray(np.repeat(a[:1], 2, axis=0)) for a in arrays]
    env = Env()
    for value, array in zip(inputs, trace, strict=True):
        env.floats[value] = array
    for step in steps:
        step.run(env, 1)
    builder = _Builder(env, list(inputs), _float_readers(steps, outputs))
    try:
        current: _Segment | None = None
        for step in steps:
            before = len(builder.steps)
            if builder.lower(step):
                if current is None:
                    current = _Segment(before, before)
                    builder.segments.append(current)
                current.last = len(builder.steps)
                continue
            current = None
            segment = _Segment(step=step)
            builder.segments.append(segment)
            _reads(step)
            for value in _writes(step):
                builder.python_values[value] = segment
                builder.shape(value)  # every value keeps the batch axis
        return Program(builder, inputs, outputs)
    except (_Unsupported, KeyError, ValueError):
        return None


class Program:
    """A lowered plan: the core's program and the Python steps between its
    segments. Thread-safe: each call runs in its own arena (reused)."""

    def __init__(self, b: _Builder, inputs: list[ValueId], outputs: list[ValueId]):
        self.segments = [
            s for s in b.segments if s.step is not None or s.last > s.first
        ]
        self.native = all(s.step is None for s in self.segments)
        self.inputs = inputs
        self.outputs = outputs
        self.shapes = b.shapes
        self.dtypes = b.dtypes
        self.bytes = b.bytes
        self.float_slot = b.float_slot
        self.value_shapes = b.value_shapes
        self.input_slots = b.input_slots
        # Outputs the program writes: bound to fresh arrays per call.
        self.output_slots: dict[int, int] = {}  # slot -> first output index
        for index, value in enumerate(outputs):
            slot = b.float_slot.get(value)
            if value in inputs or value in b.python_values or slot is None:
                continue
            if slot in b.input_slots:
                continue
            self.output_slots.setdefault(slot, index)
        bound = set(self.input_slots) | set(self.output_slots)
        self.offsets: list[int] = []
        total = 0
        for slot, nbytes in enumerate(b.bytes):
            if slot in bound:
                self.offsets.append(-1)
                continue
            self.offsets.append(total)
            total += -(-nbytes // 64) * 64
        self.arena_bytes = total
        self.core = K._kernels.program(b.bytes, self.offsets, b.steps)
        self.nsteps = len(b.steps)
        names = {code: name for name, (code, _) in STEP_KINDS.items()}
        self.kinds = tuple(names[step.kind] for step in b.steps)  # step kinds, in order
        self._lock = threading.Lock()
        self._free: list[np.ndarray] = []
        self._n = 0
        # The direct path (run_direct): a native program whose outputs are
        # distinct slots it writes, bound to fresh float32 arrays of the
        # values' shapes; the arena is the core's own (Program.call).
        slots = [b.float_slot.get(value, -1) for value in outputs]
        self.direct = (
            self.native
            and len(set(slots)) == len(slots)
            and all(slot in self.output_slots for slot in slots)
            and all(b.dtypes[slot] == np.float32 for slot in slots)
        )
        self._direct_inputs = tuple(self.input_slots.items())  # (slot, index)
        self._direct_outputs = tuple(
            (slot, self.value_shapes[value], b.bytes[slot])
            for slot, value in zip(slots, outputs, strict=True)
            if self.direct
        )

    def _arena(self, n: int) -> np.ndarray:
        with self._lock:
            if n != self._n:
                self._free, self._n = [], n
            if self._free:
                return self._free.pop()
        return aligned_empty((max(n * self.arena_bytes, 1),), np.uint8)

    def _give_back(self, n: int, arena: np.ndarray) -> None:
        with self._lock:
            if n == self._n and len(self._free) < 4:
                self._free.append(arena)

    def run(self, arrays: list[np.ndarray], threads: int) -> list[np.ndarray]:
        """Runs the model on the checked inputs ``arrays``.

        Raises:
            _Mismatch: when a value computed in Python does not have the traced
                shape (the caller then runs the plan step by step).
        """
        n = int(arrays[0].shape[0])
        if any(int(a.shape[0]) != n for a in arrays):
            raise _Mismatch("inputs of different batch sizes")
        if self.direct and all(
            a.dtype == np.float32 and a.flags.c_contiguous for a in arrays
        ):
            return self.run_direct(arrays, threads)
        arena = self._arena(n)
        bindings: list[tuple[int, np.ndarray, bool]] = []
        bound: dict[int, np.ndarray] = {}
        for slot, index in self.input_slots.items():
            array = np.ascontiguousarray(arrays[index], dtype=np.float32)
            bindings.append((slot, array, False))
            bound[slot] = array
        for slot in self.output_slots:
            array = aligned_empty((n, *self.shapes[slot]), self.dtypes[slot])
            bindings.append((slot, array, True))
            bound[slot] = array
        binding = tuple(bindings)
        try:
            if self.native:
                self.core.run(arena, n, binding, 0, self.nsteps, threads)
                env = None
            else:
                env = self._run_segments(arena, n, binding, bound, arrays, threads)
            return self._results(n, arena, bound, env, arrays)
        finally:
            self._give_back(n, arena)

    def run_direct(self, arrays: list[np.ndarray], threads: int) -> list[np.ndarray]:
        """:meth:`run` of a :attr:`direct` program on inputs that are float32
        and C-contiguous, with one batch size: one call into the core, which
        writes the outputs straight into the arrays returned."""
        n = int(arrays[0].shape[0])
        bindings = [(slot, arrays[index], False) for slot, index in self._direct_inputs]
        results = []
        for slot, shape, nbytes in self._direct_outputs:
            if n * nbytes < SMALL_BYTES:
                array = np.empty((n, *shape), np.float32)
            else:
                array = aligned_empty((n, *shape), np.float32)
            bindings.append((slot, array, True))
            results.append(array)
        self.core.call(n, tuple(bindings), threads)
        return results

    def _view(self, slot: int, n: int, arena: np.ndarray, bound: dict) -> np.ndarray:
        array = bound.get(slot)
        if array is None:
            start = n * self.offsets[slot]
            array = arena[start : start + n * self.bytes[slot]].view(self.dtypes[slot])
        return array.reshape(n, *self.shapes[slot])

    def _run_segments(self, arena, n, binding, bound, arrays, threads) -> Env:
        env = Env()
        for value, array in zip(self.inputs, arrays, strict=True):
            env.floats[value] = array
        for segment in self.segments:
            step = segment.step
            if step is None:
                self.core.run(arena, n, binding, segment.first, segment.last, threads)
                continue
            for value in _reads(step):
                if value not in env.floats:
                    slot = self.float_slot[value]
                    env.floats[value] = self._view(slot, n, arena, bound).reshape(
                        n, *self.value_shapes[value]
                    )
            step.run(env, threads)
            for value in segment.fill:
                got = np.asarray(env.floats[value], dtype=np.float32)
                slot = self.float_slot[value]
                target = self._view(slot, n, arena, bound).reshape(
                    n, *self.value_shapes[value]
                )
                if got.shape != target.shape:
                    raise _Mismatch(f"{value}: {got.shape} != {target.shape}")
                np.copyto(target, got)
        return env

    def _results(self, n, arena, bound, env, arrays) -> list[np.ndarray]:
        results: list[np.ndarray] = []
        used: set[int] = set()
        for value in self.outputs:
            slot = self.float_slot.get(value)
            if value in self.inputs:
                array = np.asarray(arrays[self.inputs.index(value)], dtype=np.float32)
            elif env is not None and value in env.floats and slot is None:
                array = np.asarray(env.floats[value], dtype=np.float32)
            elif slot is not None and slot in self.output_slots and slot not in used:
                used.add(slot)
                array = bound[slot].reshape(n, *self.value_shapes[value])
            elif slot is not None:
                view = self._view(slot, n, arena, bound)
                array = np.array(view.reshape(n, *self.value_shapes[value]), copy=True)
            else:
                if env is None:
                    raise _Mismatch(f"{value}: not computed")
                array = np.asarray(env.floats[value], dtype=np.float32)
            if np.shares_memory(array, arena):
                array = array.copy()
            results.append(array)
        return results

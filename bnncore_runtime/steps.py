"""The steps of a compiled plan and the environment they read and write.

Float values live in ``Env.floats`` (NumPy arrays or TensorFlow tensors);
packed values in ``Env.packed`` keyed by ``(value, groups)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bnncore_runtime import kernels as K
from bnncore_runtime.geometry import axis_geometry
from bnncore_runtime.graph import Node, ValueId, substitute

__all__ = [
    "BinaryKernel",
    "BinaryStep",
    "ChainStep",
    "Env",
    "FloatConvStep",
    "FloatStep",
    "PackStep",
    "PackedTensor",
    "Step",
]


@dataclass
class PackedTensor:
    """Packed sign bits with the logical shape ``(..., channels)`` they stand for."""

    words: np.ndarray
    shape: tuple[int, ...]
    groups: int
    pixels: int = 1  # > 1: a flattened (pixels, channels) tensor, packed per pixel


@dataclass
class Env:
    """Values computed so far during one ``predict`` call."""

    floats: dict[ValueId, Any] = field(default_factory=dict)
    packed: dict[tuple[ValueId, int], PackedTensor] = field(default_factory=dict)

    def array(self, value: ValueId) -> np.ndarray:
        data = self.floats[value]
        if not isinstance(data, np.ndarray):
            data = np.asarray(data)
            self.floats[value] = data
        return data


class Step:
    """One unit of work in a plan."""

    kind = "step"

    def run(self, env: Env, threads: int) -> None:
        raise NotImplementedError

    @property
    def weight_bytes(self) -> int:
        """Bytes of parameters this step keeps resident."""
        return 0

    def describe(self) -> str:
        return self.kind


class PackStep(Step):
    """Packs the sign bits of a float value for binary consumers."""

    kind = "pack"

    def __init__(self, value: ValueId, groups: int) -> None:
        self.value = value
        self.groups = groups

    def run(self, env: Env, threads: int) -> None:
        x = np.asarray(env.array(self.value), dtype=np.float32)
        words = K.pack(x, self.groups, threads)
        env.packed[(self.value, self.groups)] = PackedTensor(
            words, x.shape, self.groups
        )

    def describe(self) -> str:
        return f"pack (groups={self.groups})"


@dataclass
class BinaryKernel:
    """Packed kernel of a binary layer.

    Attributes:
        panels: uint64 weights from :func:`bnncore_runtime.kernels.pack_weights`.
        scale: float32 per-output-channel magnitude, or None when it is 1.
        shape: (kh, kw, cin_per_group, cout) of the kernel as a convolution.
    """

    panels: np.ndarray
    scale: np.ndarray | None
    shape: tuple[int, int, int, int]

    @property
    def nbytes(self) -> int:
        extra = 0 if self.scale is None else self.scale.nbytes
        return int(self.panels.nbytes) + extra


@dataclass
class ConvSpec:
    """Convolution hyper-parameters as a 2D convolution (1D: height 1)."""

    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilation: tuple[int, int]
    padding: str  # "valid" | "same" | "causal"
    pad_mode: int  # 1: padded taps are +1; 0: padded taps are 0
    rank: int  # 0 dense, 1 or 2 convolution


class ChainStep(Step):
    """A layer with the elementwise layers after it folded into its epilogue.

    Attributes:
        name: Layer name (for descriptions).
        source: Input value.
        ops: Epilogue ops (see :mod:`bnncore_runtime.kernels`).
        residual: Value added by the ``OP_RESIDUAL`` op, if any.
        output: Value produced.
        fused: Names of the layers folded into this step.
        float_out: Whether the float output is needed.
        packed_groups: Group layout of the packed output, or None.
        pool: Optional packed max pooling after the epilogue (binary steps):
            ``(pool, strides, padding, or_mask, pooled value)``.
        flatten: The result is flattened (a Flatten layer was folded).
    """

    def __init__(
        self,
        *,
        name: str,
        source: ValueId,
        ops: list[tuple[Any, ...]],
        output: ValueId,
    ) -> None:
        self.name = name
        self.source = source
        self.ops = ops
        self.residual: ValueId | None = None
        self.output = output
        # The head layer's own output and ops (the chain may absorb more).
        self.head_output = output
        self.head_ops = len(ops)
        self.fused = [name]
        self.float_out = True
        self.packed_groups: int | None = None
        self.pool: tuple[Any, ...] | None = None
        self.flatten = False
        self.layer: Any = None  # set while planning only

    def _ops_bytes(self) -> int:
        return sum(
            a.nbytes for op in self.ops for a in op[1:] if isinstance(a, np.ndarray)
        )

    def _outputs(self) -> str:
        outs = [
            o
            for o, on in (("float", self.float_out), ("packed", self.packed_groups))
            if on
        ]
        return "/".join(outs)

    def _store(self, env: Env, y: np.ndarray | None, yp: np.ndarray | None,
               out_shape: tuple[int, ...]) -> None:  # fmt: skip
        n = out_shape[0]
        if y is not None:
            y = y.reshape(out_shape)
            env.floats[self.output] = y.reshape(n, -1) if self.flatten else y
        groups = self.packed_groups
        if yp is None or groups is None:
            return
        yp = yp.reshape(*out_shape[:-1], yp.shape[-1])
        packed = PackedTensor(yp, out_shape, groups)
        if self.flatten:
            pixels = math.prod(out_shape[1:-1])
            packed = PackedTensor(
                yp.reshape(n, -1), (n, pixels * out_shape[-1]), 1, pixels
            )
        env.packed[(self.output, groups)] = packed


class FloatConvStep(ChainStep):
    """A float (depthwise) convolution in the compiled core, with its epilogue.

    Args:
        conv: ``conv(x, threads) -> y``, the convolution without bias.
        kernel_bytes: Bytes of the kernel it keeps.
        bound: ``bound(x)``: elementwise bound on ``|conv(x) - Keras's sums|``.
        spread: ``spread(d)``: bound on the outputs' move for inputs moved by
            at most ``d``.
        **kwargs: See :class:`ChainStep`.
    """

    kind = "float"

    def __init__(
        self,
        *,
        conv: Any,
        kernel_bytes: int,
        bound: Any,
        spread: Any,
        native: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conv = conv
        self.native = native  # the NativeConv (kernel, geometry) for programs
        self.kernel_bytes = kernel_bytes
        self.bound = bound
        self.spread = spread

    @property
    def weight_bytes(self) -> int:
        return self.kernel_bytes + self._ops_bytes()

    def describe(self) -> str:
        fused = " + ".join(self.fused)
        return f"native conv {self.name} [{fused}] -> {self._outputs()}"

    def run(self, env: Env, threads: int) -> None:
        y = self.conv(env.array(self.source), threads)
        residual = None if self.residual is None else env.array(self.residual)
        yp = None
        if self.ops or self.packed_groups is not None:
            _, yp = K.epilogue(y, self.ops, float_out=True,
                               packed_groups=self.packed_groups, residual=residual,
                               threads=threads)  # fmt: skip
        self._store(env, y if self.float_out else None, yp, y.shape)


class BinaryStep(ChainStep):
    """A binary dense/convolution on packed input with its folded epilogue.

    Args:
        spec: Convolution shape parameters.
        kernel: Packed kernel.
        groups: Convolution groups (the input is read packed in this layout).
        **kwargs: See :class:`ChainStep`.
    """

    kind = "binary"

    def __init__(
        self, *, spec: ConvSpec, kernel: BinaryKernel, groups: int, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.kernel = kernel
        self.groups = groups
        self._geometry_cache: dict[tuple, tuple[K.ConvGeometry, tuple]] = {}

    @property
    def weight_bytes(self) -> int:
        return self.kernel.nbytes + self._ops_bytes()

    def describe(self) -> str:
        what = {0: "dense", 1: "conv1d", 2: "conv2d"}[self.spec.rank]
        extra = " (packed maxpool)" if self.pool else ""
        fused = " + ".join(self.fused)
        return f"binary {what} {self.name} [{fused}]{extra} -> {self._outputs()}"

    def _geometry(self, packed: PackedTensor) -> tuple[K.ConvGeometry, tuple]:
        """The convolution's geometry on ``packed`` and the output shape: the
        one place a :class:`~bnncore_runtime.kernels.ConvGeometry` is built."""
        s = self.spec
        shape = packed.shape
        kh, kw, cin_g, cout = self.kernel.shape
        if s.rank == 0:  # a dense layer: one 1 x kw "image" per row
            rows = math.prod(shape[:-1])
            if packed.pixels != kw:
                raise ValueError(
                    f"{self.name}: packed input has {packed.pixels} pixel(s) per row; "
                    f"the kernel was packed for {kw}."
                )
            n, h, w, groups = rows, 1, kw, 1
            wpp = packed.words.size // max(rows * kw, 1)
            strides, dilation, pad_mode = (1, 1), (1, 1), 1
            pt, oh, pl, ow = 0, 1, 0, 1
            out_shape: tuple[int, ...] = (*shape[:-1], cout)
        else:
            wpp = packed.words.shape[-1]
            n, groups = shape[0], self.groups
            h, w = (1, shape[1]) if s.rank == 1 else (shape[1], shape[2])
            strides, dilation, pad_mode = s.strides, s.dilation, s.pad_mode
            pt, oh = axis_geometry(h, kh, strides[0], dilation[0], s.padding)
            pl, ow = axis_geometry(w, kw, strides[1], dilation[1], s.padding)
            if s.rank == 1:
                pt, oh = 0, 1
            if oh < 1 or ow < 1:
                raise ValueError(
                    f"{self.name}: input spatial size {shape[1:-1]} is smaller than "
                    f"the kernel {self.kernel.shape[:2]} allows with "
                    f"padding={s.padding!r}."
                )
            out_shape = (n, ow, cout) if s.rank == 1 else (n, oh, ow, cout)
        geo = K.ConvGeometry(
            n=n, h=h, w=w, wpp_in=wpp, groups=groups, cin_g=cin_g, kh=kh, kw=kw,
            sh=strides[0], sw=strides[1], dh=dilation[0], dw=dilation[1],
            pt=pt, pl=pl, oh=oh, ow=ow, cout=cout, pad_mode=pad_mode,
        )  # fmt: skip
        return geo, out_shape

    def pool_geometry(
        self, out_shape: tuple[int, ...]
    ) -> tuple[tuple[int, int], tuple[int, int]]:
        """``(pads, sizes)`` of the packed max pooling on the output: ``(pt, pl),
        (oh, ow)``."""
        if self.pool is None:
            raise RuntimeError(f"{self.name}: no pooling.")
        pool, strides, padding, _, _ = self.pool
        _, h, w, _ = out_shape
        pt, oh = axis_geometry(h, pool[0], strides[0], 1, padding)
        pl, ow = axis_geometry(w, pool[1], strides[1], 1, padding)
        return (pt, pl), (oh, ow)

    def run(self, env: Env, threads: int) -> None:
        packed = env.packed[(self.source, self.groups)]
        key = (packed.shape, packed.words.shape, packed.pixels)
        cached = self._geometry_cache.get(key)
        if cached is None:
            cached = self._geometry_cache[key] = self._geometry(packed)
        geo, out_shape = cached
        residual = None
        if self.residual is not None:
            residual = env.array(self.residual)
            if tuple(residual.shape) != out_shape:
                raise ValueError(
                    f"{self.name}: residual of shape {tuple(residual.shape)} does not "
                    f"match the output shape {out_shape}."
                )
        y, yp = K.bconv(
            packed.words,
            self.kernel.panels,
            geo,
            self.ops,
            float_out=self.float_out,
            packed_groups=self.packed_groups,
            residual=residual,
            threads=threads,
        )
        if self.pool is None:
            self._store(env, y, yp, out_shape)
            return
        n = out_shape[0]
        groups = self.packed_groups
        if yp is None or groups is None:  # the planner pools packed outputs only
            raise RuntimeError(f"{self.name}: max pooling needs a packed output.")
        yp = yp.reshape(*out_shape[:-1], yp.shape[-1])
        pool, strides, _, or_mask, target = self.pool
        c = out_shape[-1]
        pads, (oh, ow) = self.pool_geometry(out_shape)
        words = K.maxpool(yp, pool, strides, pads, (oh, ow), or_mask, threads)
        packed = PackedTensor(words, (n, oh, ow, c), groups)
        if self.flatten:
            packed = PackedTensor(words.reshape(n, -1), (n, oh * ow * c), 1, oh * ow)
        env.packed[(target, groups)] = packed


class FloatStep(Step):
    """A layer the engine does not binarize: native code or the Keras layer.

    Args:
        node: The graph node (its op must be a clone owned by the plan when
            ``native`` is None; with ``native`` the op is not kept).
        native: Native implementation (:class:`~bnncore_runtime.natives.Native`),
            or None to run the layer.
        direct: Call ``op.call(x)`` instead of ``op(x, training=False)``.
    """

    def __init__(self, node: Node, native: Any = None, direct: bool = False) -> None:
        self.name = node.name
        self.inputs = list(node.inputs)
        self.outputs = list(node.outputs)
        self.fn = None if native is None else native.fn
        self.constants = [] if native is None else native.constants
        self.bound = None if native is None else native.bound
        self.monotone = native is not None and native.monotone
        self.lowering = None if native is None else native.lowering
        self.direct = direct
        self.node = None if native is not None else node
        self.kind = "float" if native is not None else "keras"

    def run(self, env: Env, threads: int) -> None:
        if self.fn is not None:
            env.floats[self.outputs[0]] = self.fn(
                [env.array(v) for v in self.inputs], threads
            )
            return
        node = self.node
        if node is None:  # set whenever fn is None
            raise RuntimeError(f"{self.name}: no layer to run.")
        import keras  # only plans made from a Keras model have layer steps

        args = substitute(node.args, env.floats)
        if self.direct:
            result = node.op.call(*args)
        else:
            kwargs = substitute(node.kwargs, env.floats)
            if isinstance(node.op, keras.layers.Layer):
                kwargs["training"] = False
            result = node.op(*args, **kwargs)
        for value, out in zip(self.outputs, keras.tree.flatten(result), strict=False):
            env.floats[value] = out

    @property
    def weight_bytes(self) -> int:
        if self.fn is not None or self.node is None:
            return sum(int(c.nbytes) for c in self.constants)
        return sum(
            int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize
            for w in getattr(self.node.op, "weights", [])
        )

    def describe(self) -> str:
        return f"{'native' if self.fn is not None else 'keras'} {self.name}"

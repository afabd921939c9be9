"""Python side of the compiled core: bit layouts, weight packing and kernel calls.

Bit convention: a value in {-1, +1} is one bit, ``1`` for -1 and ``0`` for +1
(so ``sign(0) = +1`` packs to 0, as :func:`bnncore.math.sign` has it).

* Packed activations are NHWC: each pixel holds ``groups`` runs of
  ``ceil(channels_per_group / 64)`` little-endian 64-bit words; channel ``c`` of a
  group is bit ``c % 64`` of word ``c // 64``; bits past the last channel are 0.
* Packed weights: for each output channel, its ``kh·kw·cin_per_group`` signs
  in (kh, kw, cin) order form one bit string of ``ceil(K / 64)`` words (exactly
  one bit per weight, rounded up to a word per channel); output channels are
  interleaved four at a time ("panels") so the AVX2 kernel reads word ``k`` of
  four channels with one load (AVX-512: words ``k`` and ``k + 1``).

The instruction-set level (:func:`isa`, :func:`set_isa`, environment variable
``BNN_ENGINE_ISA``) is chosen in the compiled core (``csrc/config.c``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bnncore_runtime.buffers import empty as _empty

CORE_MISSING = (
    "bnncore's compiled core (the extension module bnncore_runtime._kernels, "
    "from bnncore/engine/_kernels.c and bnncore/engine/csrc) is not installed, so "
    "the packed engine (bnncore.engine) and the runtime (bnncore_runtime.load) "
    "cannot run; quantizers, layers, analysis, export and the zoo work without "
    "it. The install builds it when it finds a C compiler and the Python headers "
    "(Debian/Ubuntu: apt-get install gcc python3-dev): install them, then run "
    "`pip install -e .` (or `pip install .`, or `pip install ./runtime` for the "
    "runtime alone) again, or `python setup.py build_ext --inplace` in a checkout."
)
"""What any use of the core says when the extension could not be imported."""


class CoreUnavailableError(ImportError):
    """The compiled core could not be imported (see :data:`CORE_MISSING`)."""


def _core_error(cause: ImportError) -> CoreUnavailableError:
    error = CoreUnavailableError(f"{CORE_MISSING} (importing it failed: {cause})")
    error.__cause__ = cause
    return error


class _MissingCore:
    """Stands in for the compiled core when it could not be imported: importing
    this module (and so ``import bnncore``) still works, and any call into the
    core raises :class:`CoreUnavailableError` naming the original error."""

    def __init__(self, cause: ImportError) -> None:
        self.cause = cause

    def __getattr__(self, name: str) -> Any:
        raise _core_error(self.cause)


_missing: ImportError | None = None
try:
    from bnncore_runtime import _kernels
except ImportError as error:
    _missing = error
    _kernels = _MissingCore(error)  # type: ignore[assignment]


def core_available() -> bool:
    """Whether the compiled core was imported (else its functions raise
    :class:`CoreUnavailableError`)."""
    return _missing is None


def require_core() -> None:
    """Raises :class:`CoreUnavailableError` unless the compiled core was imported."""
    if _missing is not None:
        raise _core_error(_missing)


__all__ = [
    "CORE_MISSING",
    "EPILOGUE_OPS",
    "OP_BIAS",
    "OP_CLIP",
    "OP_MULADD",
    "OP_RELU",
    "OP_RESIDUAL",
    "OP_SCALE",
    "OP_SIGN",
    "ConvGeometry",
    "CoreUnavailableError",
    "bconv",
    "core_available",
    "description",
    "epilogue",
    "fconv",
    "features",
    "fmaxpool",
    "global_avg_pool",
    "isa",
    "kernel",
    "maxpool",
    "out_layout",
    "pack",
    "pack_weights",
    "require_core",
    "set_isa",
    "set_kernel",
    "softmax",
    "supported_isas",
    "unpack",
    "words_for",
]

# The epilogue ops in code order: the core's list (BNN_EPILOGUE_OPS in
# csrc/bnn.h), checked at import by _check_description().
EPILOGUE_OPS = ("scale", "bias", "muladd", "relu", "clip", "sign", "residual")
OP_SCALE, OP_BIAS, OP_MULADD, OP_RELU, OP_CLIP, OP_SIGN, OP_RESIDUAL = range(
    len(EPILOGUE_OPS)
)


def words_for(bits: int) -> int:
    """Number of 64-bit words holding ``bits`` bits."""
    return -(-int(bits) // 64)


def features() -> dict[str, Any]:
    """CPU features and ``worker_threads`` started so far.

    The features (booleans, from cpuid): ``avx2``, ``fma``, ``popcnt``,
    ``avx512f``, ``avx512bw``, ``avx512vl``, ``avx512vpopcntdq``.
    """
    return dict(_kernels.features())


def isa() -> str:
    """The instruction-set level in use: ``"portable"``, ``"avx2"`` or ``"avx512"``.

    Every kernel of the core follows it: binary micro-kernels, row packing,
    epilogues, float convolutions and pooling. ``portable`` is plain C (no
    target-specific code, not even the POPCNT instruction); ``avx2`` needs
    AVX2 and FMA; ``avx512`` adds AVX-512 F, BW, VL and VPOPCNTDQ for the
    binary kernels, packing and epilogues.
    """
    return str(_kernels.isa())


def supported_isas() -> list[str]:
    """The levels this CPU can run, lowest first (always starts with ``"portable"``)."""
    return list(_kernels.supported_isas())


def set_isa(name: str) -> None:
    """Makes ``name`` the instruction-set level of the following calls.

    Args:
        name: ``"portable"``, ``"avx2"``, ``"avx512"`` (up to what the CPU runs),
            or ``"auto"``: the level of the environment variable
            ``BNN_ENGINE_ISA`` when it was set at import, else the highest.

    Raises:
        ValueError: for an unknown level or one above this CPU.
    """
    _kernels.set_isa(name)


def kernel() -> str:
    """Name of the binary micro-kernel in use.

    ``"avx512"``, ``"avx2"``, ``"generic"`` (the portable level) or ``"popcnt"``
    (the portable level with the scalar POPCNT kernel, only by
    :func:`set_kernel`).
    """
    return str(_kernels.kernel())


def set_kernel(name: str) -> None:
    """Forces a micro-kernel, and with it the level (older form of :func:`set_isa`).

    Args:
        name: ``"avx512"``, ``"avx2"``, ``"generic"`` (= ``set_isa("portable")``),
            ``"popcnt"`` (the portable level with the scalar POPCNT kernel) or
            ``"auto"``.

    Raises:
        ValueError: for an unknown name or one this CPU cannot run.
    """
    _kernels.set_kernel(name)


def pack(x: np.ndarray, groups: int = 1, threads: int = 1) -> np.ndarray:
    """Sign bits of ``x`` along its last axis, ``groups`` runs of words per row.

    Args:
        x: float32 array ``(..., C)``.
        groups: Number of equal channel groups, each packed to whole words.
        threads: Worker threads.

    Returns:
        uint64 array ``(..., groups * ceil(C / groups / 64))``.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    channels = x.shape[-1]
    cwg = words_for(channels // groups)
    rows = math.prod(x.shape[:-1])
    out = _empty((*x.shape[:-1], groups * cwg), dtype=np.uint64)
    _kernels.pack(x, out, rows, channels, groups, cwg, threads)
    return out


def unpack(words: np.ndarray, channels: int, groups: int = 1) -> np.ndarray:
    """Inverse of :func:`pack`: ±1 float32 array ``(..., channels)``."""
    words = np.ascontiguousarray(words, dtype=np.uint64)
    cwg = words_for(channels // groups)
    rows = math.prod(words.shape[:-1])
    out = _empty((*words.shape[:-1], channels), dtype=np.float32)
    _kernels.unpack(words, out, rows, channels, groups, cwg)
    return out


def pack_weights(negative: np.ndarray, groups: int = 1) -> np.ndarray:
    """Packs kernel signs into panels.

    Args:
        negative: bool array ``(kh, kw, cin_per_group, cout)``, True where the
            binarized weight is -1.
        groups: Number of groups; output channel ``o`` belongs to group
            ``o // (cout // groups)``.

    Returns:
        uint64 array ``(groups, panels_per_group, words, 4)``.
    """
    kh, kw, cin_g, cout = negative.shape
    ng = cout // groups
    kbits = kh * kw * cin_g
    kwords = words_for(kbits)
    npan = -(-ng // 4)
    rows = np.asarray(negative, dtype=bool).reshape(kbits, cout).T  # (cout, K)
    padded = np.zeros((cout, kwords * 64), dtype=bool)
    padded[:, :kbits] = rows
    bits = np.packbits(padded, axis=1, bitorder="little")  # (cout, kwords * 8)
    words = bits.view("<u8").astype(np.uint64)  # (cout, kwords)
    panels = np.zeros((groups, npan * 4, kwords), dtype=np.uint64)
    panels[:, :ng, :] = words.reshape(groups, ng, kwords)
    panels = panels.reshape(groups, npan, 4, kwords).transpose(0, 1, 3, 2)
    return np.ascontiguousarray(panels)


@dataclass(frozen=True)
class ConvGeometry:
    """Shape of a binary convolution over packed NHWC input (dense: 1x1 output).

    The core reads it by field name (``BNN_GEOM_FIELDS`` in ``csrc/bnn.h``; the
    names and their order are checked at import). ``pad_mode`` is 1 when
    padded taps count as +1 and 0 when they count as 0 (``pad_values=0``).
    """

    n: int
    h: int
    w: int
    wpp_in: int
    groups: int
    cin_g: int
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    pt: int
    pl: int
    oh: int
    ow: int
    cout: int
    pad_mode: int

    @property
    def cw_g(self) -> int:
        return words_for(self.cin_g)

    @property
    def rows(self) -> int:
        """Output positions (rows of the dot-product matrix)."""
        return self.n * self.oh * self.ow

    def with_batch(self, n: int) -> ConvGeometry:
        """The same convolution over ``n`` images (rows for dense layers)."""
        return dataclasses.replace(self, n=n)


def out_layout(cout: int, groups: int) -> tuple[int, int, int]:
    """``(groups, words per group, words per row)`` of a packed output."""
    cw = words_for(cout // groups)
    return groups, cw, groups * cw


def description() -> dict[str, Any]:
    """The core's step description (``csrc/program.h``, ``csrc/bnn.h``): step
    kinds with the names of their dims, the fields of a step, the geometry's
    fields and the epilogue ops."""
    return dict(_kernels.description())


def _check_description() -> None:
    """The Python names of the shared description are the core's."""
    found = description()
    fields = tuple(f.name for f in dataclasses.fields(ConvGeometry))
    if tuple(found["geometry_fields"]) != fields:
        raise ImportError(
            "bnncore_runtime: ConvGeometry's fields differ from the core's "
            f"BNN_GEOM_FIELDS: {fields} vs {found['geometry_fields']}; rebuild the "
            "core (`python setup.py build_ext --inplace`)."
        )
    if tuple(found["epilogue_ops"]) != EPILOGUE_OPS:
        raise ImportError(
            "bnncore_runtime: the epilogue ops differ from the core's "
            f"BNN_EPILOGUE_OPS: {EPILOGUE_OPS} vs {found['epilogue_ops']}; rebuild "
            "the core (`python setup.py build_ext --inplace`)."
        )


if core_available():
    _check_description()


def bconv(
    x: np.ndarray,
    panels: np.ndarray,
    geometry: ConvGeometry,
    ops: list[tuple[Any, ...]],
    *,
    float_out: bool = True,
    packed_groups: int | None = None,
    residual: np.ndarray | None = None,
    threads: int = 1,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Runs a binary convolution with its epilogue.

    Args:
        x: packed input, uint64 ``(n, h, w, wpp_in)`` (any shape of that size).
        panels: weights from :func:`pack_weights`.
        geometry: the convolution's shape.
        ops: epilogue program, tuples ``(OP_*, args...)`` applied in order to the
            float32 dot products.
        float_out: Write the float32 output ``(n, oh, ow, cout)``.
        packed_groups: Also write the output's sign bits in this group layout.
        residual: float32 ``(n, oh, ow, cout)`` read by ``OP_RESIDUAL``.
        threads: Worker threads.

    Returns:
        ``(float output or None, packed output or None)``.
    """
    g = geometry
    shape = (g.n, g.oh, g.ow)
    y = _empty((*shape, g.cout), dtype=np.float32) if float_out else None
    layout = out_layout(g.cout, packed_groups or 1)
    yp = (
        _empty((*shape, layout[2]), dtype=np.uint64)
        if packed_groups is not None
        else None
    )
    if residual is not None:
        residual = np.ascontiguousarray(residual, dtype=np.float32)
    _kernels.bconv(
        np.ascontiguousarray(x),
        panels,
        g,
        layout,
        ops,
        y,
        yp,
        residual,
        int(threads),
    )
    return y, yp


def maxpool(
    x: np.ndarray,
    pool: tuple[int, int],
    strides: tuple[int, int],
    pads: tuple[int, int],
    out_size: tuple[int, int],
    or_mask: np.ndarray | None = None,
    threads: int = 1,
) -> np.ndarray:
    """Max pooling of ±1 values on packed bits ``(n, h, w, wpp)``.

    Args:
        x: packed input.
        pool: window (ph, pw).
        strides: (sh, sw).
        pads: padding before (top, left); padded positions are ignored.
        out_size: (oh, ow).
        or_mask: uint64 ``(wpp,)``; channels whose bit is set take the minimum
            (OR of bits) instead of the maximum.
        threads: Worker threads.

    Returns:
        Packed output ``(n, oh, ow, wpp)``.
    """
    x = np.ascontiguousarray(x, dtype=np.uint64)
    n, h, w, wpp = x.shape
    out = _empty((n, *out_size, wpp), dtype=np.uint64)
    geometry = (n, h, w, wpp, *pool, *strides, *pads, *out_size)
    _kernels.maxpool(x, out, geometry, or_mask, int(threads))
    return out


def fmaxpool(
    x: np.ndarray,
    pool: tuple[int, int],
    strides: tuple[int, int],
    pads: tuple[int, int],
    out_size: tuple[int, int],
    threads: int = 1,
) -> np.ndarray:
    """Max pooling of float32 NHWC data; padded positions are ignored."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, h, w, c = x.shape
    out = _empty((n, *out_size, c), dtype=np.float32)
    _kernels.fmaxpool(x, out, (n, h, w, c, *pool, *strides, *pads, *out_size), threads)
    return out


def fconv(
    x: np.ndarray,
    kernel: np.ndarray,
    strides: tuple[int, int],
    dilation: tuple[int, int],
    pads: tuple[int, int],
    out_size: tuple[int, int],
    *,
    depthwise: bool = False,
    pad_value: float = 0.0,
    threads: int = 1,
) -> np.ndarray:
    """Float 2D (depthwise) convolution of NHWC ``x`` rounding like TensorFlow.

    Args:
        x: float32 ``(n, h, w, cin)``.
        kernel: float32 ``(kh, kw, cin, cout)``, or ``(kh, kw, cin, multiplier)``
            when ``depthwise``.
        strides, dilation: per spatial axis.
        pads: padding before (top, left); padded positions read ``pad_value``.
        out_size: (oh, ow).
        depthwise: Depthwise convolution.
        pad_value: Value of padded positions.
        threads: Worker threads.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    kernel = np.ascontiguousarray(kernel, dtype=np.float32)
    n, h, w, cin = x.shape
    kh, kw = kernel.shape[:2]
    mult = kernel.shape[3] if depthwise else 1
    cout = cin * mult if depthwise else kernel.shape[3]
    out = _empty((n, *out_size, cout), dtype=np.float32)
    geometry = (n, h, w, cin, kh, kw, *strides, *dilation, *pads, *out_size, cout, mult)
    _kernels.fconv(x, kernel, out, geometry, float(pad_value), depthwise, threads)
    return out


def epilogue(
    y: np.ndarray,
    ops: list[tuple[Any, ...]],
    *,
    float_out: bool = True,
    packed_groups: int | None = None,
    residual: np.ndarray | None = None,
    threads: int = 1,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Applies epilogue ops along the last axis of float32 ``y``.

    The float result overwrites ``y`` (which must be a fresh, writable array).

    Returns:
        ``(y or None, packed sign bits or None)``.
    """
    cout = y.shape[-1]
    rows = math.prod(y.shape[:-1])
    gout = packed_groups or 1
    cw_out_g = words_for(cout // gout)
    yp = (
        _empty((*y.shape[:-1], gout * cw_out_g), dtype=np.uint64)
        if packed_groups is not None
        else None
    )
    if residual is not None:
        residual = np.ascontiguousarray(residual, dtype=np.float32)
    out = y if float_out else None
    geometry = (rows, cout, gout, cw_out_g, gout * cw_out_g)
    _kernels.epilogue(y, ops, out, yp, residual, geometry, int(threads))
    return out, yp


def global_avg_pool(x: np.ndarray, keepdims: bool = False) -> np.ndarray:
    """Mean over the spatial axes of float32 NHWC ``x`` (float32 sums)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, c = x.shape[0], x.shape[-1]
    pixels = math.prod(x.shape[1:-1])
    out = _empty((n, *(1,) * (x.ndim - 2), c) if keepdims else (n, c), np.float32)
    _kernels.gap(x, out, n, pixels, c)
    return out


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax along the last axis of float32 ``x`` (max subtracted first)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = _empty(x.shape, np.float32)
    _kernels.softmax(x, out, math.prod(x.shape[:-1]), x.shape[-1])
    return out

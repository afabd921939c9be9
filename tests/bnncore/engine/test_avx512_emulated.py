"""The avx512 level's kernels on any machine, through SIMD Everywhere.

``csrc/mk_avx512.c`` and ``csrc/epilogue_avx512.c`` compile natively (AVX-512
target attributes) or, with ``-DBNN_EMULATE_AVX512``, against SIMDe's
portable implementation of the same intrinsics (``libsimde-dev``). Here they
are built the second way with gcc into a small shared library (with
``avx512_harness.c``) and compared with NumPy oracles: the binary
micro-kernel (dot = K - 2·popcount(a XOR w)) for 1-4 rows, panel counts
around its 4- and 8-panel steps and word counts even and odd (its
specialized 9, 18 and 36), row packing, and the epilogues of whole
64-channel words. On a CPU with AVX-512 VPOPCNTDQ the kernel tests of
test_engine_kernels.py also run them natively (level ``avx512``).

Without gcc or the SIMDe headers the tests skip, except in CI (``CI`` set),
where they fail: CI installs ``libsimde-dev``.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bnncore.engine import kernels as K

CSRC = Path(K.__file__).parent / "csrc"
HARNESS = Path(__file__).parent / "avx512_harness.c"
SOURCES = [CSRC / "mk_avx512.c", CSRC / "epilogue_avx512.c", HARNESS]
STRICT = ("1", "true", "yes")
IN_CI = os.environ.get("CI", "").strip().lower() in STRICT

u64p = np.ctypeslib.ndpointer(np.uint64, flags="C_CONTIGUOUS")
i32p = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")
f32p = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (required in CI: apt-get install -y gcc libsimde-dev)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("gcc")
    if cc is None:
        _unavailable("no C compiler (gcc) to build the emulated AVX-512 kernels")
    probe = subprocess.run(
        [cc, "-fsyntax-only", "-x", "c", "-"],
        input="#include <simde/x86/avx512.h>\n",
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        _unavailable(
            "SIMDe headers (simde/x86/avx512.h, Debian package libsimde-dev) "
            "not found: the AVX-512 kernels cannot be emulated"
        )
    out = tmp_path_factory.mktemp("avx512") / "libbnn512.so"
    # The core's own flags (exact float rounding; warnings are errors where
    # setup.py makes them so), no -m flags: SIMDe's portable code paths.
    flags = ["-O2", "-std=gnu11", "-ffp-contract=off", "-fno-fast-math"]
    flags += ["-Wall", "-Wextra", "-fPIC", "-shared"]
    if IN_CI or os.environ.get("BNN_STRICT_BUILD", "").strip().lower() in STRICT:
        flags.append("-Werror")
    cmd = [cc, *flags, "-DBNN_EMULATE_AVX512", f"-I{CSRC}", *map(str, SOURCES)]
    build = subprocess.run([*cmd, "-o", str(out)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    lib = ctypes.CDLL(str(out))
    c_int, c_i64 = ctypes.c_int, ctypes.c_int64
    lib.h_microkernel.argtypes = [
        u64p, c_int, c_int, u64p, c_int, c_int, ctypes.c_int32, i32p, c_int,
    ]  # fmt: skip
    lib.h_pack_row.argtypes = [f32p, c_int, u64p]
    ptrs = ctypes.POINTER(ctypes.c_void_p)
    lib.h_epilogue.argtypes = [
        ctypes.c_void_p, ctypes.c_void_p, c_i64, c_int, c_int, c_int, c_int,
        c_int, c_int, c_int, c_int, ctypes.c_void_p, ctypes.c_void_p,
        ctypes.c_void_p, c_int, c_int, ctypes.c_void_p, ptrs, ptrs, f32p, f32p,
    ]  # fmt: skip
    return lib


def _popcount(v: np.ndarray) -> np.ndarray:
    """Bits set in each uint64 (summed over the last axis)."""
    return np.unpackbits(v.view(np.uint8), axis=-1).sum(axis=-1, dtype=np.int64)


@pytest.mark.parametrize("mr", [1, 2, 3, 4])
@pytest.mark.parametrize("npan", [1, 2, 3, 4, 5, 7, 8, 9, 13])
@pytest.mark.parametrize("kw", [1, 2, 3, 4, 5, 9, 18, 36, 37])
def test_microkernel_equals_numpy_popcount_oracle(lib, mr, npan, kw):
    rng = np.random.default_rng(1000 * mr + 10 * npan + kw)
    stride = kw + 3  # rows not back to back, as gathered rows may be
    rows = rng.integers(0, 2**64, size=(mr, stride), dtype=np.uint64)
    weights = rng.integers(0, 2**64, size=(npan * 4, kw), dtype=np.uint64)
    # A few all-ones and all-zeros words: counts of 0 and 64.
    weights[0, 0] = np.uint64(2**64 - 1)
    rows[-1, 0] = np.uint64(0)
    panels = np.ascontiguousarray(weights.reshape(npan, 4, kw).transpose(0, 2, 1))
    # kbits need not be 64 * kw (bits past the last weight are zero in real
    # layers); any value checks kbits - 2 * count.
    kbits = 64 * kw - 5
    ldd = 4 * npan + 8
    sentinel = np.int32(-12345)
    dots = np.full((mr, ldd), sentinel, dtype=np.int32)
    lib.h_microkernel(
        rows.ravel(), stride, mr, panels.ravel(), npan, kw, kbits, dots, ldd
    )
    counts = _popcount(rows[:, None, :kw] ^ weights[None, :, :])
    np.testing.assert_array_equal(dots[:, : 4 * npan], kbits - 2 * counts)
    assert (dots[:, 4 * npan :] == sentinel).all()  # nothing written past the panels


@pytest.mark.parametrize("n", [1, 15, 16, 63, 64, 65, 100, 128, 200])
def test_pack_row_equals_numpy_signs(lib, n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=n).astype(np.float32)
    x[rng.random(n) < 0.2] = 0.0
    x[::7] = -0.0
    if n > 3:
        x[3] = np.nan
    words = -(-n // 64)
    out = np.full(words, 0xDEAD, dtype=np.uint64)
    lib.h_pack_row(x, n, out)
    bits = np.zeros(words * 64, dtype=bool)
    bits[:n] = x < 0  # NaN and -0.0 are not < 0: +1
    expected = np.packbits(bits, bitorder="little").view("<u8")
    np.testing.assert_array_equal(out, expected)


def _ptrs(arrays):
    return (ctypes.c_void_p * len(arrays))(
        *(None if a is None else a.ctypes.data for a in arrays)
    )


# (from int32 dots with the tile epilogue, or float rows with the one-row
# epilogue, which covers whole rows), channels, packed groups, channel range.
EPILOGUE_CASES = [
    *((True, *case) for case in [
        (64, 1, 0, 64), (128, 1, 0, 128), (256, 2, 0, 256), (256, 1, 64, 192),
        (192, 3, 64, 192), (128, 2, 64, 128),
    ]),
    *((False, cout, gout, 0, cout) for cout, gout in [(64, 1), (128, 1), (256, 2)]),
]  # fmt: skip


@pytest.mark.parametrize(("from_dots", "cout", "gout", "c0", "c1"), EPILOGUE_CASES)
def test_epilogue_equals_separate_float32_operations(
    lib, from_dots, cout, gout, c0, c1
):
    rng = np.random.default_rng(cout + gout + c0)
    rows, f32 = 5, np.float32
    dots = rng.integers(-300, 300, size=(rows, cout)).astype(np.int32)
    src = (dots + rng.normal(size=dots.shape)).astype(f32)
    scale = rng.uniform(0.1, 2, cout).astype(f32)
    bias = rng.normal(size=cout).astype(f32)
    mul, add = rng.normal(size=cout).astype(f32), rng.normal(size=cout).astype(f32)
    residual = rng.normal(size=(rows, cout)).astype(f32) * 50
    codes = [K.OP_SCALE, K.OP_BIAS, K.OP_RELU, K.OP_MULADD, K.OP_CLIP, K.OP_RESIDUAL]
    vs = [scale, bias, None, mul, None, None]
    us = [None, None, None, add, None, None]
    lo = np.array([0, 0, 0, 0, -30.0, 0], f32)
    hi = np.array([0, 0, 0, 0, 250.0, 0], f32)
    cg = cout // gout
    cw_out_g = cg // 64
    wpp_out = gout * cw_out_g
    y = np.full((rows, cout), np.nan, dtype=f32)
    yp = np.zeros((rows, wpp_out), dtype=np.uint64)
    ldd = cout + 4
    padded = np.zeros((rows, ldd), dtype=np.int32)
    padded[:, :cout] = dots
    lib.h_epilogue(
        padded.ctypes.data if from_dots else None,
        None if from_dots else src.ctypes.data,
        0, rows, ldd, c0, c1, cout, gout, cw_out_g, wpp_out,
        y.ctypes.data, yp.ctypes.data, residual.ctypes.data, 0, len(codes),
        (ctypes.c_int * len(codes))(*codes), _ptrs(vs), _ptrs(us), lo, hi,
    )  # fmt: skip
    t = dots.astype(f32) if from_dots else src
    t = t * scale + bias
    t = np.maximum(t, f32(0))
    t = t * mul + add
    t = np.minimum(np.maximum(t, f32(-30.0)), f32(250.0)) + residual
    np.testing.assert_array_equal(y[:, c0:c1], t[:, c0:c1])
    assert np.isnan(y[:, :c0]).all() and np.isnan(y[:, c1:]).all()
    expected = K.pack(t, groups=gout)
    w0, w1 = c0 // 64, c1 // 64  # groups are whole words: word c // 64
    np.testing.assert_array_equal(yp[:, w0:w1], expected[:, w0:w1])
    # The sign op and packed output only.
    y2 = np.zeros_like(y)
    yp2 = np.zeros_like(yp)
    lib.h_epilogue(
        padded.ctypes.data if from_dots else None,
        None if from_dots else src.ctypes.data,
        0, rows, ldd, 0, cout, cout, gout, cw_out_g, wpp_out,
        y2.ctypes.data, yp2.ctypes.data, None, 0, 2,
        (ctypes.c_int * 2)(K.OP_BIAS, K.OP_SIGN), _ptrs([bias, None]),
        _ptrs([None, None]), lo, hi,
    )  # fmt: skip
    t = (dots.astype(f32) if from_dots else src) + bias
    np.testing.assert_array_equal(y2, np.where(t < 0, f32(-1), f32(1)))
    np.testing.assert_array_equal(yp2, K.pack(t, groups=gout))

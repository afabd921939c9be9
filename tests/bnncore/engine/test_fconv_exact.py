"""The core's float convolutions and max pooling against the reference order.

``kernels.fconv`` defines its rounding itself, the same on every CPU and
instruction-set level: each convolution output is one chain of fused
multiply-adds starting from 0.0f, over the taps in row-major order and,
within a tap, over the input channels in order; each depthwise output is a
product then an add per tap. Padded positions read the padding value and take
part in the chain like any other tap.

The oracle is a NumPy emulation of exactly that chain (its fused multiply-add
is checked against the C library's ``fmaf``), compared bit for bit, plus a
float64 reference within Higham's bound ``gamma_n · Σ|x·w|``. TensorFlow is
not an oracle here: its kernels sum in an order that depends on the CPU.

The shapes hit every code path of ``csrc/fconv.c``: runs of register tiles
along output rows and over contiguous pixels, tiles with padded or partly
padded windows, tail tiles of fewer pixels, channel tails (masked vectors),
packed kernel panels (>= 512 channels), channel blocks, dilation, depth
multipliers, batches, one and two threads, at every instruction-set level
this CPU runs (``portable`` always).
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np
import pytest

from bnncore.engine import kernels as K
from bnncore.engine.floatops import gamma


@pytest.fixture
def mode(engine_isa):
    """Every instruction-set level gives the reference order's bits."""
    return engine_isa


def _geometry(size, k, s, d, padding):
    """Keras's padding before and output size along one axis."""
    if padding == "SAME":
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        return total // 2, out
    return 0, (size - (k - 1) * d - 1) // s + 1


def _geometries(h, w, k, s, d, padding):
    (pt, oh), (pl, ow) = (_geometry(n, k, s, d, padding) for n in (h, w))
    return (pt, pl), (oh, ow)


def _fma32(a, b, c):
    """fmaf on float32 arrays: one rounding of a * b + c (normal range)."""
    a, b, c = np.broadcast_arrays(a, b, c)
    p = a.astype(np.float64) * b.astype(np.float64)  # exact
    c = c.astype(np.float64)
    s = p + c
    bb = s - p
    e = (p - (s - bb)) + (c - bb)  # s + e == p + c exactly
    r = s.astype(np.float32)
    r64 = r.astype(np.float64)
    # Rounding s again is wrong only when s is a float32 midpoint and e != 0.
    other = np.nextafter(r, np.where(s > r64, np.inf, -np.inf).astype(np.float32))
    midpoint = (s != r64) & (s == (r64 + other.astype(np.float64)) / 2) & (e != 0)
    up = np.maximum(r, other)
    down = np.minimum(r, other)
    return np.where(midpoint, np.where(e > 0, up, down), r)


def test_fma_emulation_matches_the_c_library():
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    libm.fmaf.restype = ctypes.c_float
    libm.fmaf.argtypes = [ctypes.c_float] * 3
    rng = np.random.default_rng(5)
    a = rng.normal(size=3000).astype(np.float32)
    b = rng.normal(size=3000).astype(np.float32)
    c = rng.normal(size=3000).astype(np.float32)
    # Cases where a*b + c lies near a float32 midpoint: c cancels most of a*b.
    c[:1000] = -(a[:1000] * b[:1000]).astype(np.float32)
    c[1000:1500] = np.float32(1.0)
    a[1000:1500] = np.float32(1.0) + np.float32(2**-23) * rng.integers(0, 8, 500)
    b[1000:1500] = np.float32(2**-24) * rng.integers(1, 8, 500)
    expected = np.array(
        [
            libm.fmaf(float(x), float(y), float(z))
            for x, y, z in zip(a, b, c, strict=True)
        ],
        np.float32,
    )
    assert np.array_equal(_fma32(a, b, c), expected)


def _windows(x, k, s, d, pads, sizes, pad_value):
    """x padded with pad_value; window view per tap (a, b): (n, oh, ow, cin)."""
    (pt, pl), (oh, ow) = pads, sizes
    kh, kw = k
    _, h, w, _ = x.shape
    bottom = max((oh - 1) * s[0] + (kh - 1) * d[0] + 1 - h - pt, 0)
    right = max((ow - 1) * s[1] + (kw - 1) * d[1] + 1 - w - pl, 0)
    padded = np.pad(
        x, ((0, 0), (pt, bottom), (pl, right), (0, 0)), constant_values=pad_value
    )
    for a in range(kh):
        for b in range(kw):
            top, left = a * d[0], b * d[1]
            yield (
                a,
                b,
                padded[
                    :,
                    top : top + (oh - 1) * s[0] + 1 : s[0],
                    left : left + (ow - 1) * s[1] + 1 : s[1],
                    :,
                ],
            )


def reference_conv(x, kernel, s, d, pads, sizes, pad_value=0.0):
    """The reference order: one FMA chain per output, taps then channels."""
    kh, kw, cin, cout = kernel.shape
    acc = np.zeros((x.shape[0], *sizes, cout), np.float32)
    for a, b, window in _windows(x, (kh, kw), s, d, pads, sizes, pad_value):
        for ci in range(cin):
            acc = _fma32(window[..., ci : ci + 1], kernel[a, b, ci], acc)
    return acc


def reference_depthwise(x, kernel, s, d, pads, sizes, pad_value=0.0):
    """Depthwise reference: product, then add, per tap (float32 throughout)."""
    kh, kw, cin, mult = kernel.shape
    acc = np.zeros((x.shape[0], *sizes, cin * mult), np.float32)
    for a, b, window in _windows(x, (kh, kw), s, d, pads, sizes, pad_value):
        # Output channel c * mult + m reads input channel c.
        products = window[..., :, None] * kernel[a, b][None, None, None]
        acc = acc + products.reshape(acc.shape).astype(np.float32)
    return acc


def exact_conv(x, kernel, s, d, pads, sizes, pad_value=0.0, depthwise=False):
    """float64 sums of x·w and of |x|·|w| (the latter for the error bound)."""
    kh, kw, cin, cout = kernel.shape
    width = cin * cout if depthwise else cout
    total = np.zeros((x.shape[0], *sizes, width))
    magnitude = np.zeros_like(total)
    x64, k64 = x.astype(np.float64), kernel.astype(np.float64)
    for a, b, window in _windows(x64, (kh, kw), s, d, pads, sizes, pad_value):
        if depthwise:
            column = window[..., :, None]
            total += (column * k64[a, b]).reshape(total.shape)
            magnitude += (np.abs(column) * np.abs(k64[a, b])).reshape(total.shape)
        else:
            total += window @ k64[a, b]
            magnitude += np.abs(window) @ np.abs(k64[a, b])
    return total, magnitude


def _check_against_oracles(got, x, kernel, s, d, pads, sizes, pad_value, depthwise):
    reference = reference_depthwise if depthwise else reference_conv
    expected = reference(x, kernel, (s, s), (d, d), pads, sizes, pad_value)
    assert np.array_equal(got, expected)
    total, magnitude = exact_conv(
        x, kernel, (s, s), (d, d), pads, sizes, pad_value, depthwise
    )
    n = kernel.shape[0] * kernel.shape[1] * (1 if depthwise else kernel.shape[2])
    assert np.all(np.abs(got - total) <= gamma(n) * magnitude)


# (n, h, w, cin, cout, k, stride, dilation, padding)
CONV_SHAPES = [
    (1, 224, 224, 3, 16, 3, 2, 1, "SAME"),  # QuickNet's stem
    (2, 13, 29, 3, 19, 3, 1, 1, "SAME"),  # row runs + padded rows/columns
    (2, 13, 29, 3, 41, 3, 2, 1, "SAME"),  # flattened tiles across rows
    (2, 13, 29, 3, 7, 3, 1, 1, "SAME"),  # one masked vector
    (2, 13, 29, 3, 24, 3, 1, 1, "SAME"),
    (2, 8, 30, 5, 16, 2, 2, 1, "SAME"),
    (2, 8, 30, 6, 21, 3, 2, 1, "SAME"),
    (2, 8, 30, 5, 16, 2, 1, 1, "VALID"),
    (2, 9, 30, 12, 40, 3, 2, 1, "VALID"),
    (1, 8, 30, 24, 40, 3, 1, 1, "SAME"),
    (1, 10, 10, 16, 8, 3, 1, 1, "VALID"),  # 16 input channels, small cout
    (1, 9, 9, 4, 16, 3, 1, 2, "SAME"),  # dilated: one segment per tap
    (2, 12, 30, 3, 16, 3, 1, 2, "SAME"),
    (2, 11, 13, 16, 70, 1, 1, 1, "VALID"),  # 1x1: contiguous pixels
    (2, 11, 13, 16, 70, 1, 2, 1, "VALID"),  # strided 1x1
    (2, 11, 13, 16, 70, 1, 2, 1, "SAME"),
    (2, 30, 40, 16, 33, 1, 1, 1, "VALID"),
    (1, 7, 7, 256, 136, 1, 1, 1, "VALID"),  # channel blocks
    (2, 6, 7, 160, 200, 1, 1, 1, "VALID"),
    (1, 7, 7, 256, 512, 1, 1, 1, "VALID"),  # packed panels
    (1, 9, 9, 3, 520, 3, 1, 1, "SAME"),  # packed panels + channel tail
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", CONV_SHAPES, ids=str)
def test_conv_is_the_reference_chain(shape, threads, mode):
    n, h, w, cin, cout, k, s, d, padding = shape
    if mode == "portable" and h * w * cin * cout * k * k > 3_000_000:
        pytest.skip("the scalar path is slow; smaller shapes cover it")
    rng = np.random.default_rng(sum(shape[:8]))
    x = rng.normal(size=(n, h, w, cin)).astype(np.float32)
    kernel = rng.normal(size=(k, k, cin, cout)).astype(np.float32)
    pads, sizes = _geometries(h, w, k, s, d, padding)
    got = K.fconv(x, kernel, (s, s), (d, d), pads, sizes, threads=threads)
    _check_against_oracles(got, x, kernel, s, d, pads, sizes, 0.0, False)


@pytest.mark.parametrize("pad_value", [1.0, -0.5])
def test_padded_taps_read_the_padding_value(pad_value, mode):
    # QuantConv2D(pad_values=1) convolutions without an input quantizer.
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2, 9, 11, 5)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 5, 20)).astype(np.float32)
    pads, sizes = _geometries(9, 11, 3, 1, 1, "SAME")
    got = K.fconv(x, kernel, (1, 1), (1, 1), pads, sizes, pad_value=pad_value)
    _check_against_oracles(got, x, kernel, 1, 1, pads, sizes, pad_value, False)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("rows, cin, cout", [(1, 40, 45), (1, 300, 1000), (3, 33, 70)])
def test_single_pixel_conv_is_the_reference_chain(rows, cin, cout, threads, mode):
    # Dense layers run as 1x1 convolutions of (rows, 1, 1, cin) images.
    rng = np.random.default_rng(cin)
    x = rng.normal(size=(rows, 1, 1, cin)).astype(np.float32)
    kernel = rng.normal(size=(1, 1, cin, cout)).astype(np.float32)
    got = K.fconv(x, kernel, (1, 1), (1, 1), (0, 0), (1, 1), threads=threads)
    _check_against_oracles(got, x, kernel, 1, 1, (0, 0), (1, 1), 0.0, False)


# (n, h, w, cin, multiplier, k, stride, dilation, padding)
DEPTHWISE_SHAPES = [
    (1, 112, 112, 16, 1, 3, 2, 1, "SAME"),  # QuickNet's stem
    (1, 55, 55, 64, 1, 3, 2, 1, "SAME"),  # blur pools
    (1, 13, 13, 256, 1, 3, 2, 1, "SAME"),
    (2, 30, 37, 5, 1, 3, 1, 1, "SAME"),  # 8-pixel tiles, masked vector
    (2, 30, 37, 13, 1, 3, 1, 1, "VALID"),  # 4-pixel tiles
    (2, 17, 40, 44, 1, 3, 2, 1, "SAME"),  # 2-pixel tiles, 32 + 8 + 4
    (2, 9, 11, 3, 1, 3, 2, 1, "VALID"),  # rows too short for row runs
    (1, 12, 26, 6, 1, 3, 1, 2, "SAME"),  # dilated
    (2, 10, 11, 3, 2, 3, 1, 1, "SAME"),  # multiplier 2: scalar
    (2, 10, 30, 3, 8, 3, 2, 1, "SAME"),  # multiplier 8: broadcast vectors
    (1, 9, 10, 5, 16, 2, 1, 1, "VALID"),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", DEPTHWISE_SHAPES, ids=str)
def test_depthwise_is_the_reference_order(shape, threads, mode):
    n, h, w, cin, mult, k, s, d, padding = shape
    rng = np.random.default_rng(sum(shape[:8]))
    x = rng.normal(size=(n, h, w, cin)).astype(np.float32)
    kernel = rng.normal(size=(k, k, cin, mult)).astype(np.float32)
    pads, sizes = _geometries(h, w, k, s, d, padding)
    got = K.fconv(
        x, kernel, (s, s), (d, d), pads, sizes, depthwise=True, threads=threads
    )
    _check_against_oracles(got, x, kernel, s, d, pads, sizes, 0.0, True)


def reference_max_pool(x, pool, s, pads, sizes):
    """Max over each window's positions inside the input (padding ignored)."""
    lowest = np.float32(-np.inf)
    out = np.full((x.shape[0], *sizes, x.shape[3]), lowest, np.float32)
    for _, _, window in _windows(x, (pool, pool), (s, s), (1, 1), pads, sizes, lowest):
        out = np.maximum(out, window)
    return out


# (n, h, w, c, pool, stride, padding)
POOL_SHAPES = [
    (1, 56, 56, 64, 2, 1, "VALID"),  # QuickNet's transitions
    (1, 14, 14, 256, 2, 1, "VALID"),
    (2, 15, 17, 13, 3, 2, "SAME"),  # partial windows, channel tail
    (2, 16, 9, 70, 3, 1, "SAME"),
    (3, 7, 8, 5, 2, 2, "VALID"),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", POOL_SHAPES, ids=str)
def test_max_pool_is_the_window_maximum(shape, threads, mode):
    n, h, w, c, pool, s, padding = shape
    rng = np.random.default_rng(sum(shape[:6]))
    # Quarter steps: many equal values in a window (ties), no negative zeros.
    x = (rng.integers(-40, 40, size=(n, h, w, c)) / 4).astype(np.float32)
    pads, sizes = _geometries(h, w, pool, s, 1, padding)
    got = K.fmaxpool(x, (pool, pool), (s, s), pads, sizes, threads=threads)
    assert np.array_equal(got, reference_max_pool(x, pool, s, pads, sizes))

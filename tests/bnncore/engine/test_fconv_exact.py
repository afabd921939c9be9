"""The core's float convolutions and max pooling, bit for bit against TensorFlow.

``kernels.fconv`` promises TensorFlow's CPU rounding: each convolution output
is one chain of fused multiply-adds (taps row-major, then input channels),
each depthwise output a product-then-add per tap. The shapes below hit every
code path of ``csrc/fconv.c``: runs of register tiles along output rows and
over contiguous pixels, tiles with padded or partly padded windows, tail
tiles of fewer pixels, channel tails (masked vectors), packed kernel panels
(>= 512 channels), channel blocks, dilation, depth multipliers, batches, one
and two threads, and the portable scalar path (``set_kernel("generic")``).

TensorFlow's own kernel rounds its channel tails (the last ``cout % 16``
channels) and, for some shapes, a few tail pixels differently; the oracle
therefore pads the kernel to a multiple of 16 output channels (outputs do not
depend on other channels) and the shapes are ones where TensorFlow is one
chain everywhere. Single-pixel convolutions (dense layers) take another
TensorFlow path; they are checked against an exact emulation of the FMA chain
in float64 (itself checked against TensorFlow).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from bnncore.engine import kernels as K

MODES = ["auto", "generic"]


@pytest.fixture(params=MODES)
def mode(request):
    K.set_kernel(request.param)
    yield request.param
    K.set_kernel("auto")


def _geometry(size, k, s, d, padding):
    """TensorFlow's padding before and output size along one axis."""
    if padding == "SAME":
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        return total // 2, out
    return 0, (size - (k - 1) * d - 1) // s + 1


def _geometries(h, w, k, s, d, padding):
    (pt, oh), (pl, ow) = (_geometry(n, k, s, d, padding) for n in (h, w))
    return (pt, pl), (oh, ow)


def _tf_conv(x, kernel, s, d, padding, rng):
    cout = kernel.shape[3]
    extra = -cout % 16
    padded = np.concatenate(
        [kernel, rng.normal(size=(*kernel.shape[:3], extra)).astype(np.float32)],
        axis=3,
    )
    y = tf.nn.conv2d(x, padded, s, padding, dilations=d)
    return np.asarray(y)[..., :cout]


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
def test_conv_matches_tensorflow_bit_for_bit(shape, threads, mode):
    n, h, w, cin, cout, k, s, d, padding = shape
    if mode == "generic" and h * w * cin * cout * k * k > 3_000_000:
        pytest.skip("the scalar path is slow; smaller shapes cover it")
    rng = np.random.default_rng(sum(shape[:8]))
    x = rng.normal(size=(n, h, w, cin)).astype(np.float32)
    kernel = rng.normal(size=(k, k, cin, cout)).astype(np.float32)
    pads, sizes = _geometries(h, w, k, s, d, padding)
    got = K.fconv(x, kernel, (s, s), (d, d), pads, sizes, threads=threads)
    assert np.array_equal(got, _tf_conv(x, kernel, s, d, padding, rng))


def _fma32(a, b, c):
    """fmaf on float32 arrays: one rounding of a * b + c (normal range)."""
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


def _chain_1x1(x, kernel):
    """(rows, cin) x (cin, cout) as FMA chains over the input channels."""
    acc = np.zeros((x.shape[0], kernel.shape[1]), np.float32)
    for ci in range(x.shape[1]):
        acc = _fma32(x[:, ci : ci + 1], kernel[ci][None, :], acc)
    return acc


def test_fma_emulation_matches_tensorflow():
    # A shape where TensorFlow is one chain per output (see CONV_SHAPES).
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1, 7, 7, 256)).astype(np.float32)
    kernel = rng.normal(size=(1, 1, 256, 128)).astype(np.float32)
    tf_y = np.asarray(tf.nn.conv2d(x, kernel, 1, "VALID")).reshape(49, 128)
    assert np.array_equal(_chain_1x1(x.reshape(49, 256), kernel[0, 0]), tf_y)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("rows, cin, cout", [(1, 40, 45), (1, 300, 1000), (3, 33, 70)])
def test_single_pixel_conv_is_the_fma_chain(rows, cin, cout, threads, mode):
    # Dense layers run as 1x1 convolutions of (rows, 1, 1, cin) images.
    rng = np.random.default_rng(cin)
    x = rng.normal(size=(rows, 1, 1, cin)).astype(np.float32)
    kernel = rng.normal(size=(1, 1, cin, cout)).astype(np.float32)
    got = K.fconv(x, kernel, (1, 1), (1, 1), (0, 0), (1, 1), threads=threads)
    expected = _chain_1x1(x.reshape(rows, cin), kernel[0, 0])
    assert np.array_equal(got.reshape(rows, cout), expected)


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
def test_depthwise_matches_tensorflow_bit_for_bit(shape, threads, mode):
    n, h, w, cin, mult, k, s, d, padding = shape
    rng = np.random.default_rng(sum(shape[:8]))
    x = rng.normal(size=(n, h, w, cin)).astype(np.float32)
    kernel = rng.normal(size=(k, k, cin, mult)).astype(np.float32)
    pads, sizes = _geometries(h, w, k, s, d, padding)
    got = K.fconv(
        x, kernel, (s, s), (d, d), pads, sizes, depthwise=True, threads=threads
    )
    dilations = [d, d] if d > 1 else None
    y = tf.nn.depthwise_conv2d(x, kernel, [1, s, s, 1], padding, dilations=dilations)
    assert np.array_equal(got, np.asarray(y))


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
def test_max_pool_matches_tensorflow_bit_for_bit(shape, threads, mode):
    n, h, w, c, pool, s, padding = shape
    rng = np.random.default_rng(sum(shape[:6]))
    # Quarter steps: many equal values in a window (ties), no negative zeros.
    x = (rng.integers(-40, 40, size=(n, h, w, c)) / 4).astype(np.float32)
    pads, sizes = _geometries(h, w, pool, s, 1, padding)
    got = K.fmaxpool(x, (pool, pool), (s, s), pads, sizes, threads=threads)
    assert np.array_equal(got, np.asarray(tf.nn.max_pool2d(x, pool, s, padding)))

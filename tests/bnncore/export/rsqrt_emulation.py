"""An emulation of TensorFlow's CPU ``rsqrt`` on another CPU (imported as
``rsqrt_emulation`` by the batch-norm export tests).

TensorFlow's ``Rsqrt`` runs Eigen's element-wise executor on the flattened
tensor: whole 8-lane AVX packets first, with the CPU's approximate
``rsqrtps`` refined by one Newton step, then the ``size mod 8`` leftover lanes
with ``1 / sqrt`` (float32 ``sqrt``, then a float32 division). The Newton step
is Eigen's ``generic_rsqrt_newton_step`` without FMA (TensorFlow's wheel is
built for AVX)::

    r2 = x * y;  half = y * -0.5;  h = r2 * y - 1;  out = half * h + y

Measured on the AMD EPYC that wrote these tests (a compiled probe of its
``_mm256_rsqrt_ps`` on 80,000 values, with this step in NumPy): 100 % equal to
``tf.math.rsqrt``; the FMA form 85 %. Its ``rsqrtps(1.0)`` is ``0x3F7FF800``,
refined to exactly 1.0.

What differs between CPUs is ``rsqrtps``'s table: only its error bound
(1.5·2^-12) is architectural. ``other_cpu_rsqrtps`` is a table of that
precision whose ``rsqrtps(1.0)`` is ``0x3F7FF000`` (as reported for Intel
CPUs): the Newton step then gives ``rsqrt(1) = 1 − 2^-23``, not 1.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

F32 = np.float32
LANES = 8


def model_rsqrtps(bias: float) -> Callable[[np.ndarray], np.ndarray]:
    """A model ``rsqrtps`` table: ``1/√x · (1 + bias)`` rounded to 12
    significant bits (relative error within ``|bias| + 2^-13``)."""

    def rsqrtps(x: np.ndarray) -> np.ndarray:
        exact = 1.0 / np.sqrt(np.asarray(x, np.float64)) * (1.0 + bias)
        mantissa, exponent = np.frexp(exact)
        rounded = np.ldexp(np.round(mantissa * 2.0**12) / 2.0**12, exponent)
        return rounded.astype(F32)

    return rsqrtps


other_cpu_rsqrtps = model_rsqrtps(-(2.0**-12))
"""Error within 1.5·2^-12, and ``rsqrtps(1.0) = 0x3F7FF000``."""

unbiased_rsqrtps = model_rsqrtps(0.0)
"""Another CPU's table: ``rsqrtps(1.0) = 1.0``."""


def eigen_rsqrt(
    x: np.ndarray, rsqrtps: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """TensorFlow's CPU ``rsqrt`` of the 1-D float32 ``x`` on a CPU whose
    ``rsqrtps`` is ``rsqrtps``: the lane's path depends on its position."""
    x = np.asarray(x, F32)
    packed = x.size // LANES * LANES
    head = x[:packed]
    with np.errstate(all="ignore"):
        y = rsqrtps(head)
        r2 = head * y
        half = y * F32(-0.5)
        h = r2 * y - F32(1)
        refined = half * h + y
        tail = F32(1) / np.sqrt(x[packed:])
    return np.concatenate([refined, tail]).astype(F32)


def emulated_layer_inv(
    rsqrtps: Callable[[np.ndarray], np.ndarray],
) -> Callable[[np.ndarray, np.ndarray | None, float], np.ndarray]:
    """A ``bnncore.export.batchnorm.LayerInv`` for a CPU with this ``rsqrtps``:
    the layer's ``rsqrt(moving_variance + ε) · gamma`` on its ``(C,)`` vector."""

    def inv(
        variance: np.ndarray, gamma: np.ndarray | None, epsilon: float
    ) -> np.ndarray:
        out = eigen_rsqrt(np.asarray(variance, F32) + F32(epsilon), rsqrtps)
        return out if gamma is None else out * np.asarray(gamma, F32)

    return inv

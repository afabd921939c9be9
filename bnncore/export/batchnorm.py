"""BatchNormalization folded to a per-channel scale and offset, and back.

At inference a BatchNormalization layer computes (Keras's
``ops.batch_normalization``, on TensorFlow ``tf.nn.batch_normalization``)::

    inv    = rsqrt(moving_variance + epsilon) * gamma        # gamma if scale=True
    y      = x * inv + (beta - moving_mean * inv)            # beta if center=True

so it is the affine map ``y = x * s + o`` with ``s = inv`` and
``o = beta - moving_mean * inv`` (``-moving_mean * inv`` without beta). The
file stores ``s`` and ``o``; :func:`unfold` gives back variables for which the
layer computes the same ``s`` and ``o``, bit for bit, on the machine that
loads them.

Everything but ``rsqrt`` is IEEE float32 arithmetic, rounded the same way on
every CPU. TensorFlow's CPU ``rsqrt`` is not: Eigen runs whole 8-lane packets
with the CPU's approximate ``rsqrtps`` and one Newton step (whose last bits
differ between CPU vendors) and the leftover lanes (``C mod 8``) with
``1 / sqrt``, so a channel's ``inv`` depends on the CPU and on its position in
the ``(C,)`` vector. The searches therefore evaluate ``inv`` with
:func:`layer_inv` — the layer's own ``ops.batch_normalization`` on its own
``(C,)`` variables, one candidate per channel per evaluation — so every lane
takes the Eigen path it takes in the layer:

* ``scale=False``: the sum ``moving_variance + epsilon`` starts at ``1/s²`` and
  moves by ulps until the layer's ``inv == s``;
* ``scale=True``: ``moving_variance`` makes the sum exactly 1 and
  ``gamma = s``; where the layer's ``rsqrt(1) · s`` is not ``s`` (``rsqrt(1)``
  is 1.0 on some CPUs, a little less on others), ``gamma`` starts at
  ``s / rsqrt(1)`` and moves by ulps until the layer's ``inv == s``
  (``rsqrt(1) ≤ 1`` makes every finite ``s`` reachable);
* ``center=True``: ``beta = o`` and ``moving_mean = ±0`` (the sign of ``inv``,
  so that ``beta - moving_mean * inv`` keeps the sign of a zero ``o``);
* ``center=False``: ``moving_mean`` starts at ``−o / inv`` and moves by ulps
  until ``−moving_mean · inv == o``.

Where no value within :data:`SEARCH_ULPS` ulps gives the stored value exactly
(a ``scale=False`` layer exported on a CPU whose ``rsqrt`` reaches an ``s``
this CPU's cannot), the candidate whose result is nearest is kept: an ulp or
two from ``s``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from bnncore_runtime.codec import BATCHNORM_VARIABLES

__all__ = [
    "SEARCH_ULPS",
    "VARIABLES",
    "LayerInv",
    "fold",
    "foldable",
    "layer_inv",
    "unfold",
]

VARIABLES = BATCHNORM_VARIABLES
"""The variables of a BatchNormalization layer, in the order they are recorded."""

SEARCH_ULPS = 12
"""How far (in ulps, each way) the searches of :func:`unfold` move a value."""

LayerInv = Callable[[np.ndarray, "np.ndarray | None", float], np.ndarray]
"""``(moving_variance, gamma or None, epsilon) → inv``: the per-channel ``inv``
a BatchNormalization with these ``(C,)`` float32 variables computes."""


def foldable(layer: Any) -> bool:
    """Whether ``layer`` is a built BatchNormalization with only the variables
    its inference map uses (no renorm statistics), all float32."""
    if not isinstance(layer, keras.layers.BatchNormalization) or not layer.built:
        return False
    expected = {id(v) for v in layer_variables(layer).values() if v is not None}
    own = {id(v) for v in layer.weights}
    return (
        own == expected
        and not getattr(layer, "renorm", False)
        and all(str(v.dtype) == "float32" for v in layer.weights)
    )


def layer_variables(layer: Any) -> dict[str, Any]:
    """``{"gamma", "beta", "moving_mean", "moving_variance"}`` → variable or None."""
    return {
        "gamma": layer.gamma if layer.scale else None,
        "beta": layer.beta if layer.center else None,
        "moving_mean": layer.moving_mean,
        "moving_variance": layer.moving_variance,
    }


def _f32(x: Any) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float32)


def layer_inv(
    variance: np.ndarray, gamma: np.ndarray | None, epsilon: float
) -> np.ndarray:
    """The ``inv`` a BatchNormalization with these variables computes, by its
    own operation on its own channel shape.

    ``ops.batch_normalization`` of one row of ones with ``moving_mean = −0`` and
    no ``beta`` is ``1 · inv + (+0 · inv) = inv`` exactly (signed zeros too).

    Args:
        variance: ``moving_variance``, float32 of shape ``(C,)``.
        gamma: ``gamma`` of shape ``(C,)``, or None (``scale=False``).
        epsilon: The layer's ``epsilon``.
    """
    variance = np.asarray(variance, dtype=np.float32)
    ones = np.ones((1, *variance.shape), dtype=np.float32)
    out = ops.batch_normalization(
        ones,
        mean=np.full(variance.shape, -0.0, dtype=np.float32),
        variance=variance,
        axis=-1,
        offset=None,
        scale=None if gamma is None else np.asarray(gamma, dtype=np.float32),
        epsilon=epsilon,
    )
    return _f32(out)[0]


def _offset(beta: np.ndarray | None, mean: np.ndarray, inv: np.ndarray) -> np.ndarray:
    """The layer's ``beta − mean · inv`` (``−mean · inv`` without beta): IEEE
    float32 operations, the same bits in NumPy as in TensorFlow on any CPU."""
    if beta is None:
        return (-mean) * inv
    return beta - mean * inv


def fold(
    values: dict[str, np.ndarray | None],
    epsilon: float,
    inv_of: LayerInv = layer_inv,
) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel ``(scale, offset)`` of a BatchNormalization at inference:
    ``x * scale + offset`` is what the layer returns.

    Args:
        values: ``gamma`` and ``beta`` (``None`` when absent), ``moving_mean``
            and ``moving_variance``, as float32 arrays.
        epsilon: The layer's ``epsilon``.
        inv_of: How the layer's ``inv`` is computed (:func:`layer_inv`, the
            layer's own operation, unless a test emulates another CPU).
    """
    gamma, beta = values["gamma"], values["beta"]
    inv = inv_of(
        np.asarray(values["moving_variance"], dtype=np.float32),
        None if gamma is None else np.asarray(gamma, dtype=np.float32),
        epsilon,
    )
    mean = np.asarray(values["moving_mean"], dtype=np.float32)
    offset = _offset(None if beta is None else np.asarray(beta, np.float32), mean, inv)
    return inv, offset.astype(np.float32)


def _same_bits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float32).view(np.uint32) == np.asarray(b, np.float32).view(
        np.uint32
    )


_TOP = np.int64(np.float32(np.finfo(np.float32).max).view(np.int32))


def _move(x: np.ndarray, ulps: np.ndarray) -> np.ndarray:
    """``x`` moved by ``ulps`` float32 steps (signed, per element), staying
    finite; the two zeros count as one value."""
    bits = x.astype(np.float32).view(np.int32).astype(np.int64)
    key = np.where(bits < 0, -(bits & 0x7FFFFFFF), bits) + ulps
    key = np.clip(key, -_TOP, _TOP)
    out = np.where(key < 0, (-key) | 0x80000000, key).astype(np.uint32)
    return out.view(np.float32)


def _search(
    start: np.ndarray,
    evaluate: Callable[[np.ndarray], np.ndarray],
    target: np.ndarray,
    increasing: np.ndarray,
    active: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, a float32 value near ``start`` whose ``evaluate`` result
    equals ``target`` bit for bit.

    ``evaluate`` maps a whole ``(C,)`` vector of candidates (one per channel)
    to the results the layer computes. Unresolved channels first walk away
    from ``start`` in the direction their first result points to (by the
    function's trend ``increasing``), then the other way, each up to
    :data:`SEARCH_ULPS` ulps; a channel keeps the first value that hits and
    stops moving. Where none hits, the candidate whose result was nearest the
    target (the first seen among equals). Channels not ``active`` keep
    ``start``.

    Returns:
        ``(values, results)``: the chosen values and what ``evaluate`` gave
        for them.
    """
    best = start.astype(np.float32)
    result = best_result = evaluate(best)
    found = ~active | _same_bits(result, target)

    def error(r: np.ndarray) -> np.ndarray:
        e = np.abs(r.astype(np.float64) - target.astype(np.float64))
        return np.where(np.isnan(e), np.inf, e)

    best_error = error(result)
    toward = np.where((result < target) == increasing, 1, -1)
    for side in (1, -1):
        for n in range(1, SEARCH_ULPS + 1):
            if found.all():
                return best, best_result
            moving = ~found
            trial = np.where(moving, _move(start, side * n * toward), best)
            result = evaluate(trial)
            hit = moving & _same_bits(result, target)
            trial_error = error(result)
            better = moving & (hit | (trial_error < best_error))
            best = np.where(better, trial, best)
            best_result = np.where(better, result, best_result)
            best_error = np.where(better, trial_error, best_error)
            found |= hit
    return best, best_result


def _variance_for(sums: np.ndarray, epsilon: np.float32) -> np.ndarray:
    """Non-negative float32 variances ``v`` with ``float32(v + ε) == sums``
    where one exists (else the nearest found)."""
    v = np.maximum(sums - epsilon, np.float32(0))
    for step in (1, -1):
        near = np.maximum(_move(v, np.full(v.shape, step)), np.float32(0))
        miss = ~_same_bits(v + epsilon, sums)
        v = np.where(miss & _same_bits(near + epsilon, sums), near, v)
    return v.astype(np.float32)


def unfold(
    scale: np.ndarray,
    offset: np.ndarray,
    epsilon: float,
    has_gamma: bool,
    has_beta: bool,
    inv_of: LayerInv = layer_inv,
) -> dict[str, np.ndarray]:
    """Variables for which a BatchNormalization computes ``x * scale + offset``.

    The searches (see the module docstring) evaluate the layer's own ``inv``
    with ``inv_of`` on the ``(C,)`` vectors the layer holds, so the result is
    bit-exact on the machine that runs them.

    Args:
        scale, offset: The folded per-channel float32 arrays.
        epsilon: The layer's ``epsilon`` (positive).
        has_gamma: The layer has ``gamma`` (``scale=True``).
        has_beta: The layer has ``beta`` (``center=True``).
        inv_of: The layer's ``inv`` (:func:`layer_inv`; tests pass an emulation
            of another CPU's ``rsqrt``).

    Returns:
        ``moving_mean`` and ``moving_variance``, plus ``gamma`` / ``beta`` when
        the layer has them; float32 arrays of the channel shape.

    Raises:
        ValueError: without gamma, when a scale is not positive and finite (no
            variance gives it).
    """
    scale = np.asarray(scale, dtype=np.float32)
    offset = np.asarray(offset, dtype=np.float32)
    eps = np.float32(epsilon)
    everywhere = np.ones(scale.shape, dtype=bool)
    out: dict[str, np.ndarray] = {}
    if has_gamma:
        variance = _variance_for(np.ones(scale.shape, np.float32), eps)
        # gamma = s is exact where this CPU's rsqrt(1) is 1; elsewhere the
        # result r·s gives r, and the search starts from s / r.
        inv = inv_of(variance, scale, epsilon)
        finite = np.isfinite(scale) & np.isfinite(inv) & (inv != 0)
        missed = finite & ~_same_bits(inv, scale)
        gamma = scale.copy()
        if missed.any():
            with np.errstate(all="ignore"):
                start = np.where(
                    missed, np.square(scale, dtype=np.float64) / inv, scale
                )
            gamma, inv = _search(
                start.astype(np.float32),
                lambda g: inv_of(variance, g, epsilon),
                scale,
                increasing=everywhere,
                active=missed,
            )
        out["gamma"] = gamma
        out["moving_variance"] = variance
    else:
        bad = ~(np.isfinite(scale) & (scale > 0))
        if bad.any():
            raise ValueError(
                "scale: a BatchNormalization without gamma needs positive finite "
                f"scales (rsqrt(variance + epsilon)); received {scale[bad][:4]}"
            )
        with np.errstate(all="ignore"):
            sums = (1.0 / np.square(scale.astype(np.float64))).astype(np.float32)
        sums, inv = _search(
            np.maximum(sums, eps),
            lambda x: inv_of(_variance_for(x, eps), None, epsilon),
            scale,
            increasing=~everywhere,
            active=everywhere,
        )
        out["moving_variance"] = _variance_for(sums, eps)
    if has_beta:
        out["beta"] = offset.copy()
        out["moving_mean"] = np.copysign(np.zeros_like(inv), inv)
    else:
        with np.errstate(all="ignore"):
            start = np.where(inv == 0, 0.0, -offset.astype(np.float64) / inv)
        out["moving_mean"], _ = _search(
            np.nan_to_num(start).astype(np.float32),
            lambda m: _offset(None, m, inv),
            offset,
            increasing=inv < 0,
            active=np.isfinite(offset),
        )
    return out

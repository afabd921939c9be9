"""BatchNormalization folded to a per-channel scale and offset, and back.

At inference a BatchNormalization layer computes (TensorFlow's
``tf.nn.batch_normalization``, which Keras calls)::

    inv    = rsqrt(moving_variance + epsilon) * gamma        # gamma if scale=True
    y      = x * inv + (beta - moving_mean * inv)            # beta if center=True

so it is the affine map ``y = x * s + o`` with ``s = inv`` and
``o = beta - moving_mean * inv`` (``-moving_mean * inv`` without beta). The
file stores ``s`` and ``o``; :func:`unfold` gives back variables for which the
layer computes the same ``s`` and ``o``:

* ``scale=True``: ``gamma = s`` and ``moving_variance = v`` with
  ``float32(v + epsilon) == 1``, so ``inv = rsqrt(1) · s = s``;
* ``scale=False``: ``moving_variance = 1/s² − epsilon``, moved by a few ulps
  until ``rsqrt(moving_variance + epsilon) == s`` where such a value exists;
* ``center=True``: ``moving_mean = 0`` and ``beta = o``;
* ``center=False``: ``moving_mean = −o / s``, moved by a few ulps until
  ``−moving_mean · s == o`` where such a value exists.

The ulp searches use ``keras.ops.rsqrt``, the operation the layer itself runs,
so on the TensorFlow backend the reloaded layer is bit-exact in the cases
above; where no exact value exists the result is within float32 rounding.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from bnncore_runtime.codec import BATCHNORM_VARIABLES

__all__ = ["VARIABLES", "fold", "foldable", "unfold"]

VARIABLES = BATCHNORM_VARIABLES
"""The variables of a BatchNormalization layer, in the order they are recorded."""

_SEARCH_ULPS = 8


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


def fold(
    values: dict[str, np.ndarray | None], epsilon: float
) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel ``(scale, offset)`` of a BatchNormalization at inference.

    Computed with the operations TensorFlow's batch normalization runs, so that
    ``x * scale + offset`` is what the layer returns.

    Args:
        values: ``gamma`` and ``beta`` (``None`` when absent), ``moving_mean``
            and ``moving_variance``, as float32 arrays.
        epsilon: The layer's ``epsilon``.
    """
    variance = ops.convert_to_tensor(values["moving_variance"], dtype="float32")
    inv = ops.rsqrt(variance + epsilon)
    if values["gamma"] is not None:
        inv = inv * ops.convert_to_tensor(values["gamma"], dtype="float32")
    inv = _f32(inv)
    mean = np.asarray(values["moving_mean"], dtype=np.float32)
    if values["beta"] is not None:
        offset = np.asarray(values["beta"], dtype=np.float32) - mean * inv
    else:
        offset = -mean * inv
    return inv, offset.astype(np.float32)


def _neighbours(start: np.ndarray) -> np.ndarray:
    """``start`` and the float32 values up to :data:`_SEARCH_ULPS` ulps away,
    nearest first: shape ``(2·ulps + 1, *start.shape)``."""
    rows = [start]
    up, down = start.copy(), start.copy()
    for _ in range(_SEARCH_ULPS):
        up = np.nextafter(up, np.float32(np.inf))
        down = np.nextafter(down, np.float32(-np.inf))
        rows += [up, down]
    return np.stack(rows)


def _first_exact(candidates: np.ndarray, results: np.ndarray, target: np.ndarray):
    """Per channel, the first candidate whose result equals ``target`` (else the
    first candidate)."""
    hits = results == target[None]
    index = np.where(hits.any(axis=0), hits.argmax(axis=0), 0)
    return np.take_along_axis(candidates, index[None], axis=0)[0]


def _unit_variance(epsilon: float, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 ``v`` with ``float32(v + epsilon) == 1`` (nearest to ``1 − ε``)."""
    start = np.full(shape, 1.0 - epsilon, dtype=np.float32)
    candidates = _neighbours(start)
    results = candidates + np.float32(epsilon)
    return _first_exact(candidates, results, np.ones(shape, np.float32))


def unfold(
    scale: np.ndarray,
    offset: np.ndarray,
    epsilon: float,
    has_gamma: bool,
    has_beta: bool,
) -> dict[str, np.ndarray]:
    """Variables for which a BatchNormalization computes ``x * scale + offset``.

    Args:
        scale, offset: The folded per-channel float32 arrays.
        epsilon: The layer's ``epsilon`` (positive).
        has_gamma: The layer has ``gamma`` (``scale=True``).
        has_beta: The layer has ``beta`` (``center=True``).

    Returns:
        ``moving_mean`` and ``moving_variance``, plus ``gamma`` / ``beta`` when
        the layer has them; float32 arrays of the channel shape.

    Raises:
        ValueError: without gamma, when a scale is not positive and finite (no
            variance gives it).
    """
    scale = np.asarray(scale, dtype=np.float32)
    offset = np.asarray(offset, dtype=np.float32)
    out: dict[str, np.ndarray] = {}
    if has_gamma:
        out["gamma"] = scale.copy()
        out["moving_variance"] = _unit_variance(epsilon, scale.shape)
    else:
        bad = ~(np.isfinite(scale) & (scale > 0))
        if bad.any():
            raise ValueError(
                "scale: a BatchNormalization without gamma needs positive finite "
                f"scales (rsqrt(variance + epsilon)); received {scale[bad][:4]}"
            )
        start = (1.0 / np.square(scale.astype(np.float64)) - epsilon).astype(np.float32)
        candidates = _neighbours(np.maximum(start, np.float32(0.0)))
        results = _f32(ops.rsqrt(ops.convert_to_tensor(candidates) + epsilon))
        out["moving_variance"] = _first_exact(candidates, results, scale)
    if has_beta:
        out["beta"] = offset.copy()
        out["moving_mean"] = np.zeros_like(offset)
    else:
        safe = np.where(scale == 0, np.float32(1), scale)
        start = np.where(scale == 0, np.float32(0), -offset / safe).astype(np.float32)
        candidates = _neighbours(start)
        results = -candidates * scale[None]
        out["moving_mean"] = _first_exact(candidates, results, offset)
    return out

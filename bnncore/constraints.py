"""Weight constraints, and lookup of constraints by name.

Importing :mod:`bnncore` makes ``"weight_clip"`` (and ``"WeightClip"``) known to
``keras.constraints.get``, so plain Keras layers accept
``kernel_constraint="weight_clip"`` as they do under Larq.
"""

from __future__ import annotations

import warnings
from typing import Any

import keras
from keras import ops

__all__ = ["WeightClip", "get", "serialize", "weight_clip"]


@keras.saving.register_keras_serializable(package="bnncore")
class WeightClip(keras.constraints.Constraint):
    """Clips weights to ``[-clip_value, clip_value]`` after each update.

    Latent weights of binary kernels drift away from zero where the
    straight-through estimator no longer passes a gradient; clipping keeps them
    in reach of a sign flip.

    Args:
        clip_value: A positive number.
    """

    def __init__(self, clip_value: float = 1.0) -> None:
        if isinstance(clip_value, bool) or not isinstance(clip_value, int | float):
            raise ValueError(
                f"Expected a positive number. Received: clip_value={clip_value!r}"
            )
        if clip_value <= 0:
            raise ValueError(
                f"Expected a positive number. Received: clip_value={clip_value!r}"
            )
        self.clip_value = clip_value

    def __call__(self, w: Any) -> Any:
        return ops.clip(w, -self.clip_value, self.clip_value)

    def get_config(self) -> dict[str, Any]:
        return {"clip_value": self.clip_value}


weight_clip = WeightClip
"""Larq's snake_case name of :class:`WeightClip` (``weight_clip(clip_value=0.5)``)."""


_CONSTRAINTS: dict[str, type[keras.constraints.Constraint]] = {
    "WeightClip": WeightClip,
    "weight_clip": WeightClip,
}


def get(identifier: Any) -> Any:
    """Resolves a constraint: bnncore names first, then ``keras.constraints.get``."""
    if isinstance(identifier, str) and identifier in _CONSTRAINTS:
        return _CONSTRAINTS[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _CONSTRAINTS:
        return _CONSTRAINTS[identifier["class_name"]].from_config(
            dict(identifier.get("config") or {})
        )
    return keras.constraints.get(identifier)


def serialize(constraint: Any) -> Any:
    """Serializes a constraint the way Keras layers do."""
    return keras.constraints.serialize(constraint)


def _register_with_keras() -> None:
    """Makes ``"weight_clip"`` resolvable by ``keras.constraints.get``.

    Keras 3 resolves constraint *strings* only from its own table and offers no
    public way to extend it, so, as for activations (see
    :func:`bnncore.activations._register_with_keras`), the names are added to
    the table ``keras.constraints.get`` reads; guarded: if a future Keras
    changes it, strings in plain Keras layers stop resolving (with a warning)
    while bnncore layers keep accepting them. Config dicts naming
    ``"weight_clip"`` resolve through ``keras.saving.get_custom_objects()``.
    """
    custom = keras.saving.get_custom_objects()
    for name, cls in _CONSTRAINTS.items():
        custom.setdefault(name, cls)
    table = getattr(keras.constraints.get, "__globals__", {}).get("ALL_OBJECTS_DICT")
    if not isinstance(table, dict):
        warnings.warn(
            "bnncore could not register 'weight_clip' with Keras; pass "
            "bnncore.constraints.WeightClip() to plain Keras layers instead.",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    for name, cls in _CONSTRAINTS.items():
        table.setdefault(name, cls)


_register_with_keras()

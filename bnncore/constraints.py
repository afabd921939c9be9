"""Weight constraints, and lookup of constraints by name."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

__all__ = ["WeightClip", "get", "serialize"]


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

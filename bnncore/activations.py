"""Activations used in BNNs, and lookup of activations by name.

Besides Keras's own activations, every quantizer function is an activation
(``activation="ste_sign"``), and so are :func:`hard_tanh` and :func:`leaky_tanh`.
Importing :mod:`bnncore` also makes these names known to
``keras.layers.Activation`` and to the ``activation`` argument of Keras layers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from bnncore import quantizers

__all__ = ["get", "hard_tanh", "leaky_tanh", "names", "serialize"]


@keras.saving.register_keras_serializable(package="bnncore", name="hard_tanh")
def _hard_tanh(x: Any) -> Any:
    """Hard tanh: ``clip(x, -1, 1)``.

    Args:
        x: Input tensor.

    Returns:
        The clipped tensor.
    """
    return ops.clip(x, -1.0, 1.0)


# Keras 3 has its own ``hard_tanh`` (the same clip, the same gradient), and
# ``keras.activations.get("hard_tanh")`` returns it; bnncore's name is that
# function, so the two compare equal and serialize as the built-in name, as in
# Larq. The registered ``bnncore>hard_tanh`` still loads files saved before.
hard_tanh: Callable[[Any], Any] = getattr(keras.activations, "hard_tanh", _hard_tanh)


@keras.saving.register_keras_serializable(package="bnncore")
def leaky_tanh(x: Any, alpha: float = 0.2) -> Any:
    """Leaky hard tanh: ``x`` inside ``[-1, 1]``, slope ``alpha`` outside.

    ``leaky_tanh(x) = clip(x, -1, 1) + alpha·(max(x, 1) - 1) + alpha·(min(x, -1) + 1)``.

    Args:
        x: Input tensor.
        alpha: Slope outside ``[-1, 1]``.

    Returns:
        The activated tensor.
    """
    x = ops.convert_to_tensor(x)
    return (
        ops.clip(x, -1.0, 1.0)
        + (ops.maximum(x, 1.0) - 1.0) * alpha
        + (ops.minimum(x, -1.0) + 1.0) * alpha
    )


_ACTIVATIONS: dict[str, Callable[..., Any]] = {
    "hard_tanh": hard_tanh,
    "leaky_tanh": leaky_tanh,
    **quantizers.function_aliases(),
}


def names() -> list[str]:
    """The activation names bnncore adds to Keras's."""
    return sorted(_ACTIVATIONS)


def get(identifier: Any) -> Callable[..., Any]:
    """Resolves an activation: bnncore names first, then ``keras.activations.get``.

    Args:
        identifier: None, a name, a config dict, a quantizer or any callable.

    Returns:
        A callable activation (``keras.activations.linear`` for None).
    """
    if isinstance(identifier, str) and identifier in _ACTIVATIONS:
        return _ACTIVATIONS[identifier]
    if isinstance(identifier, str) and identifier in quantizers.names():
        return quantizers.get(identifier)
    if (
        isinstance(identifier, dict)
        and identifier.get("class_name") in quantizers.names()
    ):
        return quantizers.deserialize(identifier)
    return keras.activations.get(identifier)


def serialize(activation: Any) -> Any:
    """Serializes an activation the way Keras layers do."""
    return keras.activations.serialize(activation)


def _register_with_keras() -> None:
    """Makes bnncore's activation names resolvable by ``keras.activations.get``.

    Keras 3 resolves activation *strings* only from its own table (custom
    objects are consulted for config dicts, not for strings), and offers no
    public way to extend it. ``keras.layers.Activation("ste_sign")`` must work,
    so we add our names to the table that ``keras.activations.get`` reads. This
    is the project's single use of a Keras-private structure; it is guarded: if
    a future Keras changes it, strings in plain Keras layers stop resolving with
    a warning, while bnncore layers and callables keep working.
    """
    table = getattr(keras.activations.get, "__globals__", {}).get("ALL_OBJECTS_DICT")
    if not isinstance(table, dict):
        warnings.warn(
            "bnncore could not register its activation names with Keras; pass "
            "callables (bnncore.quantizers.ste_sign) to plain Keras layers instead "
            "of strings.",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    for name, fn in _ACTIVATIONS.items():
        table.setdefault(name, fn)


_register_with_keras()

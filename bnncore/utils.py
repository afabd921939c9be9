"""Small helpers with Larq's names (``larq.utils``).

``import bnncore as lq`` gives ``lq.utils.memory_as_readable_str``,
``lq.utils.set_precision``, ``lq.utils.register_alias``,
``lq.utils.register_keras_custom_object`` and ``lq.utils.patch_object``, with
Larq's behaviour.

Registration goes to Keras's global custom objects
(``keras.saving.get_custom_objects()``), as in Larq, so that
``keras.saving.load_model`` and config lookups (``{"class_name": name, ...}``)
find the object by that name. Keras 3's ``keras.constraints.get("name")`` and
friends look plain strings up among Keras's built-ins only. For new code,
``keras.saving.register_keras_serializable(package=...)`` is the namespaced way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import keras

__all__ = [
    "memory_as_readable_str",
    "patch_object",
    "register_alias",
    "register_keras_custom_object",
    "set_precision",
]

T = TypeVar("T")

_BINARY_UNITS = ("B", "KiB", "MiB", "GiB")


def memory_as_readable_str(num_bits: int | float) -> str:
    """A memory size in binary units, from a number of bits.

    The unit is the largest of B, KiB, MiB, GiB (1 KiB = 1024 B) that keeps the
    number below 1024; beyond 1024 GiB the number grows (``"1,024.00 GiB"``).
    Two decimals, thousands separated by commas.

    Example:
        >>> memory_as_readable_str(8 * 1024)
        '1.00 KiB'
        >>> memory_as_readable_str(1)
        '0.12 B'

    Args:
        num_bits: Size in bits.

    Returns:
        The size as text, e.g. ``"13.19 KiB"``.
    """
    value = num_bits / 8
    step = 0
    while value >= 1024 and step < len(_BINARY_UNITS) - 1:
        value /= 1024
        step += 1
    return f"{value:,.2f} {_BINARY_UNITS[step]}"


def register_keras_custom_object(cls: T) -> T:
    """Class decorator: registers ``cls`` under its class name with Keras.

    Example:
        >>> @register_keras_custom_object
        ... class MyQuantizer(bnncore.quantizers.Quantizer): ...
        >>> keras.saving.get_custom_objects()["MyQuantizer"] is MyQuantizer
        True

    Args:
        cls: The class (or function) to register.

    Returns:
        ``cls`` unchanged.
    """
    keras.saving.get_custom_objects()[cls.__name__] = cls  # type: ignore[attr-defined]
    return cls


def register_alias(name: str) -> Callable[[T], T]:
    """Decorator factory: registers an object with Keras under the alias ``name``.

    Example:
        >>> @register_alias("degeneration")
        ... class Degeneration(keras.metrics.Metric): ...
        >>> keras.saving.get_custom_objects()["degeneration"] is Degeneration
        True

    Args:
        name: The alias.

    Returns:
        A decorator that registers its argument and returns it unchanged.

    Raises:
        TypeError: if ``name`` is not a non-empty string.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"Expected a non-empty string. Received: name={name!r}")

    def register(obj: T) -> T:
        keras.saving.get_custom_objects()[name] = obj
        return obj

    return register


def set_precision(precision: int = 32) -> Callable[[T], T]:
    """Decorator factory: declares the bit width of a quantizer function.

    The profile (``bnncore.models.profile``/``summary``) and ``Bop`` read the
    ``precision`` attribute this sets.

    Example:
        >>> @set_precision(8)
        ... def my_quantizer(x):
        ...     return x
        >>> my_quantizer.precision
        8

    Args:
        precision: The bit width of the function's outputs.

    Returns:
        A decorator that sets ``precision`` on its argument and returns it.
    """

    def decorate(function: T) -> T:
        function.precision = precision  # type: ignore[attr-defined]
        return function

    return decorate


@contextlib.contextmanager
def patch_object(obj: Any, name: str, value: Any) -> Iterator[None]:
    """Sets ``obj.name`` to ``value`` inside the ``with`` block, then restores it.

    The old value comes back also when the block raises.

    Example:
        >>> with patch_object(layer, "trainable", False):
        ...     ...

    Args:
        obj: The object to patch.
        name: The attribute; it must exist.
        value: The temporary value.

    Raises:
        AttributeError: if ``obj`` has no attribute ``name``.
    """
    previous = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, previous)

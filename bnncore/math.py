"""Element-wise functions used by the quantizers.

Both functions return values of the input's dtype and never have a gradient of
their own; the quantizers in :mod:`bnncore.quantizers` attach pseudo-gradients.
"""

from __future__ import annotations

from typing import Any

from keras import ops

__all__ = ["heaviside", "sign"]


def sign(x: Any) -> Any:
    """Sign that is never zero: ``-1`` if ``x < 0`` else ``+1``.

    ``sign(0) == sign(-0.0) == +1``, unlike ``keras.ops.sign`` which returns 0.

    Args:
        x: Input tensor.

    Returns:
        A tensor of the same shape and dtype with values in ``{-1, +1}``.
    """
    x = ops.convert_to_tensor(x)
    one = ops.ones_like(x)
    return ops.where(ops.less(x, 0), -one, one)


def heaviside(x: Any) -> Any:
    """Heaviside step: ``1`` if ``x > 0`` else ``0`` (so ``heaviside(0) == 0``).

    Args:
        x: Input tensor.

    Returns:
        A tensor of the same shape and dtype with values in ``{0, 1}``.
    """
    x = ops.convert_to_tensor(x)
    return ops.where(ops.greater(x, 0), ops.ones_like(x), ops.zeros_like(x))

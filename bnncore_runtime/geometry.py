"""Window geometry of convolutions and poolings along one spatial axis."""

from __future__ import annotations

__all__ = ["axis_geometry", "same_padding", "transpose_length", "window"]


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """``(before, after)`` padding of one spatial axis under ``padding="same"``:
    Keras's (and TensorFlow's) amounts, the smaller half before."""
    out = (size + stride - 1) // stride
    effective = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + effective - size, 0)
    before = total // 2
    return before, total - before


def window(size: int, k: int, s: int, d: int, padding: str) -> tuple[int, int]:
    """``(pad before, output size)`` of one spatial axis of a convolution or
    pooling window (``"valid"`` or ``"same"``)."""
    if padding == "same":
        return same_padding(size, k, s, d)[0], -(-size // s)
    return 0, (size - (k - 1) * d - 1) // s + 1


def axis_geometry(size: int, k: int, s: int, d: int, padding: str) -> tuple[int, int]:
    """``(pad before, output size)`` of one axis, ``"causal"`` padding included."""
    effective = (k - 1) * d + 1
    if padding == "valid":
        return 0, (size - effective) // s + 1
    if padding == "causal":
        return d * (k - 1), (size - 1) // s + 1
    before, _ = same_padding(size, k, s, d)
    return before, -(-size // s)


def transpose_length(size: int, k: int, s: int, d: int, padding: str) -> int:
    """Output size of one spatial axis of a transposed convolution (no
    ``output_padding``): ``size × s`` under ``"same"``, plus what the dilated
    kernel reaches beyond the last stride under ``"valid"``."""
    extent = (k - 1) * d + 1
    return size * s + max(extent - s, 0) if padding == "valid" else size * s

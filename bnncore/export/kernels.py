"""Encoding of quantized kernels: sign bits, k-bit level codes, scaled signs.

A kernel is stored as what its quantizer makes of it (``layer.quantized_weights``),
packed at the quantizer's precision. Loading assigns the *latent* variable a
value whose quantization gives back the stored one: ±1 for signs, the level
itself for ternary and DoReFa-activation levels, ``atanh(level / 2)`` for
DoReFa-weight levels (the level itself is not stable there from 4 bits up:
``tanh`` and the rescaling move it to a neighbouring level), ``±scale`` for the
magnitude-aware sign. Every kernel is checked when it is written: its decoded
latent is quantized again with the layer's own quantizer and compared with the
quantized kernel; a kernel that fails is written as its float32 latent instead
(and a warning is logged), so a reloaded model always predicts the same.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from keras import ops

from bnncore import quantizers
from bnncore.export import packing
from bnncore_runtime.codec import MAX_LEVEL_BITS, decode_kernel

__all__ = ["MAX_LEVEL_BITS", "canonical_levels", "decode_kernel", "encode_kernel"]

log = logging.getLogger("bnncore")

# A magnitude-aware scale is the mean of |latent| over a channel; loading the
# latent ±s recomputes that mean, which float32 summation can move by a few
# ulps. Relative tolerance accepted for it (everything else must be exact).
MAGNITUDE_RTOL = 1e-5


def _is(quantizer: Any, cls: type, function: Any) -> bool:
    return isinstance(quantizer, cls) or quantizer is function


def canonical_levels(quantizer: Any) -> tuple[list[float], list[float] | None] | None:
    """The fixed level set of a known quantizer, and latent values that
    re-quantize to each level (``None`` when the levels themselves do).

    Returns ``None`` for quantizers whose levels are not fixed in advance.
    """
    if _is(quantizer, quantizers.SteTern, quantizers.ste_tern):
        return [-1.0, 0.0, 1.0], None
    if _is(quantizer, quantizers.SteHeaviside, quantizers.ste_heaviside):
        return [0.0, 1.0], None
    if isinstance(quantizer, quantizers.DoReFa) and quantizer.k_bit <= MAX_LEVEL_BITS:
        n = np.float32(2**quantizer.k_bit - 1)
        steps = np.arange(2**quantizer.k_bit, dtype=np.float32) / n  # i / n
        if quantizer.mode == "activations":
            return [float(v) for v in steps], None
        levels = np.float32(2.0) * steps - np.float32(1.0)
        latent = np.arctanh(np.float32(0.5) * levels).astype(np.float32)
        return [float(v) for v in levels], [float(v) for v in latent]
    return None


def _level_codes(values: np.ndarray, levels: list[float]) -> np.ndarray | None:
    """Index of each value in ``levels`` (sorted); ``None`` if one is missing."""
    table = np.asarray(levels, dtype=np.float32)
    flat = values.reshape(-1)
    index = np.clip(np.searchsorted(table, flat), 0, len(table) - 1)
    if not np.array_equal(table[index], flat):
        return None
    return index.astype(np.uint8)


def encode_kernel(
    name: str, quantizer: Any, latent: np.ndarray, quantized: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]] | None:
    """The tensors and encodings storing one quantized kernel.

    Args:
        name: The kernel's weights-file name.
        quantizer: The layer's quantizer for it.
        latent: The latent kernel (the variable's value).
        quantized: ``quantizer(latent)``.

    Returns:
        ``(tensors, encodings)``, or ``None`` when the kernel has to be stored
        as its float32 latent (no declared precision, wider than
        :data:`MAX_LEVEL_BITS`, more distinct values than its precision allows,
        or a decoded latent that does not quantize back to ``quantized``).
    """
    bits = quantizers.get_precision(quantizer)
    if bits is None or bits > MAX_LEVEL_BITS:
        return None
    shape = [int(d) for d in quantized.shape]
    encoded = _encode(name, quantizer, bits, shape, latent, quantized)
    if encoded is None:
        return None
    tensors, encodings = encoded
    decoded = decode_kernel(
        encodings[name], tensors[name], tensors.get(f"{name}:scale")
    )
    again = np.asarray(ops.convert_to_numpy(quantizer(decoded)), dtype=np.float32)
    magnitude = _is(
        quantizer, quantizers.MagnitudeAwareSign, quantizers.magnitude_aware_sign
    )
    same = (
        np.allclose(again, quantized, rtol=MAGNITUDE_RTOL, atol=0.0)
        and np.array_equal(again > 0, quantized > 0)
        if magnitude
        else np.array_equal(again, quantized)
    )
    if not same:
        log.warning(
            "bnncore.export: kernel %r: its packed form does not quantize back to "
            "the same values with %r; it is stored as float32.",
            name,
            quantizer,
        )
        return None
    return tensors, encodings


def _encode(
    name: str,
    quantizer: Any,
    bits: int,
    shape: list[int],
    latent: np.ndarray,
    quantized: np.ndarray,
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]] | None:
    sign_entry = {"encoding": "sign_bits", "shape": shape, "bit_order": "little"}
    if _is(quantizer, quantizers.MagnitudeAwareSign, quantizers.magnitude_aware_sign):
        if not shape:
            return None
        scale_name = f"{name}:scale"
        axes = tuple(range(len(shape) - 1))
        magnitude = np.abs(quantized)
        scale = magnitude.max(axis=axes) if axes else magnitude
        if not np.all(magnitude == scale):  # not one scale per output channel
            return None
        return (
            {
                name: packing.pack_signs(latent < 0),  # sign(0) = +1: bit 0
                scale_name: np.ascontiguousarray(scale, dtype=np.float32),
            },
            {
                name: {**sign_entry, "scale": scale_name},
                scale_name: {"encoding": "channel_scale", "of": name},
            },
        )
    if bits == 1 and np.all(np.abs(quantized) == 1):
        return {name: packing.pack_signs(quantized < 0)}, {name: sign_entry}
    known = canonical_levels(quantizer)
    latent_levels = None
    codes = None
    if known is not None:
        levels, latent_levels = known
        codes = _level_codes(quantized, levels)
    if codes is None:  # unknown quantizer, or values off its canonical levels
        observed = np.unique(quantized)
        if observed.size > 2**bits or not np.all(np.isfinite(observed)):
            return None
        levels, latent_levels = [float(v) for v in observed], None
        codes = _level_codes(quantized, levels)
        if codes is None:  # values that float32 levels cannot hold (float64 input)
            return None
    entry: dict[str, Any] = {
        "encoding": "levels",
        "bits": bits,
        "levels": levels,
        "shape": shape,
        "bit_order": "little",
    }
    if latent_levels is not None:
        entry["latent_levels"] = latent_levels
    return {name: packing.pack_codes(codes, bits)}, {name: entry}

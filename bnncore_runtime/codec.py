"""The bnncore weights format (version 2): metadata, encodings, strict decoding.

The one decoder of the format, used by :mod:`bnncore.export` (which turns a
file into the latent variables a Keras model is assigned) and by the
TensorFlow-free runtime (which reads the forward values: the kernels as the
layers use them and each BatchNormalization's folded scale and offset).

Metadata (all values are strings, as safetensors requires)::

    {"format": "bnncore.weights", "format_version": "2", "encodings": "<JSON>"}

Version 2 stores a sign as the float's sign bit (set = −1), the convention of
``bnncore.engine`` and Larq Compute Engine; version 1 files (set = +1) are
still read.

``encodings`` maps every tensor of the file to an object saying how to decode
it; see ``docs/export.md`` for each encoding. Decoding checks every field and
every cross-reference and raises :class:`WeightsFileError` at the first problem.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bnncore_runtime import packing
from bnncore_runtime.container import (
    TensorEntry,
    WeightsFileError,
    _short,
    check_shape,
    load_json,
)

__all__ = [
    "BATCHNORM_VARIABLES",
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_ELEMENTS",
    "MAX_LEVEL_BITS",
    "READABLE_VERSIONS",
    "Decoded",
    "SignBits",
    "decode",
    "decode_kernel",
    "metadata_for",
]

FORMAT = "bnncore.weights"
FORMAT_VERSION = "2"
READABLE_VERSIONS = ("1", "2")  # 1: a set sign bit meant +1
MAX_ELEMENTS = 2**30
"""Default limit on the values a file decodes to (4 GiB of float32)."""
MAX_LEVEL_BITS = 8
"""Widest code of a ``levels`` encoding."""
BATCHNORM_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")
"""The variables a ``batchnorm_folded`` scale entry names."""

# unfold(scale, offset, epsilon, has_gamma=..., has_beta=...) -> {variable: array}
Unfold = Callable[..., dict[str, np.ndarray]]

_KEYS: dict[str, tuple[set[str], set[str]]] = {  # encoding → (required, optional)
    "float32": ({"encoding"}, set()),
    "sign_bits": ({"encoding", "shape", "bit_order"}, {"scale"}),
    "channel_scale": ({"encoding", "of"}, set()),
    "levels": ({"encoding", "bits", "levels", "shape", "bit_order"}, {"latent_levels"}),
    "batchnorm_folded": (
        {"encoding", "role"},
        {"offset", "scale", "epsilon", "variables"},
    ),
}
_BN_KEYS = {
    "scale": {"encoding", "role", "offset", "epsilon", "variables"},
    "offset": {"encoding", "role", "scale"},
}


def metadata_for(encodings: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The safetensors metadata of a file with these encodings."""
    text = json.dumps(encodings, separators=(",", ":"), sort_keys=True)
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "encodings": text}


def _fail(where: str, message: str) -> WeightsFileError:
    return WeightsFileError(f"{where}: {message}")


def _read_encodings(metadata: dict[str, str]) -> tuple[dict[str, Any], str]:
    if metadata.get("format") != FORMAT:
        raise _fail(
            "metadata.format",
            f"received {_short(metadata.get('format'))}, expected {FORMAT!r} "
            "(not a bnncore weights file)",
        )
    version = metadata.get("format_version")
    if version not in READABLE_VERSIONS:
        raise _fail(
            "metadata.format_version",
            f"received {_short(version)}, supported: "
            + ", ".join(repr(v) for v in READABLE_VERSIONS),
        )
    extra = set(metadata) - {"format", "format_version", "encodings"}
    if extra:
        raise _fail("metadata", f"unexpected keys {sorted(extra)[:5]}")
    encodings = load_json("metadata.encodings", metadata.get("encodings", "null"))
    if not isinstance(encodings, dict):
        raise _fail(
            "metadata.encodings",
            f"expected an object of tensor name → encoding, received "
            f"{_short(encodings)}",
        )
    return encodings, str(version)


def _number_list(where: str, value: Any, low: int, high: int) -> list[float]:
    if (
        not isinstance(value, list)
        or not low <= len(value) <= high
        or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in value
        )
    ):
        raise _fail(
            where, f"expected {low} to {high} finite numbers, received {_short(value)}"
        )
    return [float(v) for v in value]


def _check_packed(
    where: str, entry: TensorEntry, array: np.ndarray, used_bits: int
) -> None:
    expected = packing.packed_size(used_bits, 1)
    if entry.shape != (expected,):
        raise _fail(
            where,
            f"packed tensor has shape {list(entry.shape)}, expected [{expected}] "
            f"for {used_bits:,} bits",
        )
    spare = used_bits % 8
    if spare and int(array[-1]) >> spare:
        raise _fail(where, "unused bits of the last byte must be zero")


def _check_keys(where: str, spec: dict[str, Any]) -> None:
    kind = spec["encoding"]
    required, optional = _KEYS[kind]
    if kind == "batchnorm_folded":
        role = spec.get("role")
        if role not in _BN_KEYS:
            raise _fail(
                f"{where}.role", f"received {_short(role)}, allowed: {sorted(_BN_KEYS)}"
            )
        required, optional = _BN_KEYS[role], set()
    if not required <= set(spec) <= required | optional:
        allowed = f" (optional {sorted(optional)})" if optional else ""
        raise _fail(
            where,
            f"{kind} needs keys {sorted(required)}{allowed}, received {sorted(spec)}",
        )


def _bad_reference(where: str, kind: str, received: Any) -> WeightsFileError:
    return _fail(
        where,
        f"must name the {kind} that refers back to it, received {_short(received)}",
    )


class _Decoder:
    """Decodes the entries of one file, keeping count of the values produced."""

    def __init__(
        self,
        encodings: dict[str, Any],
        entries: dict[str, TensorEntry],
        arrays: dict[str, np.ndarray],
        max_elements: int,
        version: str = FORMAT_VERSION,
        unfold: Unfold | None = None,
    ) -> None:
        self.set_bit_is_negative = version != "1"
        self.unfold = unfold
        self.forward = unfold is None
        self.batchnorms: dict[str, tuple[str, str]] = {}
        self.kinds: dict[str, str] = {}  # variable -> its encoding
        self.encodings = encodings
        self.entries = entries
        self.arrays = arrays
        self.max_elements = max_elements
        self.budget = max_elements
        self.out: dict[str, np.ndarray] = {}

    def put(self, where: str, name: str, value: Any) -> None:
        if name in self.out:
            raise _fail(where, f"variable {_short(name)} is decoded twice")
        self.budget -= value.size
        if self.budget < 0:
            raise _fail(
                where, f"the file decodes to more than {self.max_elements:,} values"
            )
        self.out[name] = value

    def tensor(self, where: str, name: str, dtype: str, rank1: bool) -> TensorEntry:
        entry = self.entries[name]
        if entry.dtype != dtype:
            raise _fail(where, f"tensor dtype {entry.dtype} received, expected {dtype}")
        if rank1 and len(entry.shape) != 1:
            raise _fail(
                where, f"tensor shape {list(entry.shape)} received, expected 1-D"
            )
        return entry

    def shape(self, where: str, value: Any) -> tuple[int, ...]:
        return check_shape(
            where,
            value,
            max(self.budget, 0),
            f"max_elements={self.max_elements:,} for the whole file",
        )

    def refers_back(self, name: Any, key: str, target: str) -> bool:
        spec = self.encodings.get(name) if isinstance(name, str) else None
        return isinstance(spec, dict) and spec.get(key) == target

    def decode(self, name: str, spec: Any) -> None:
        where = f"encodings[{_short(name)}]"
        if not isinstance(spec, dict) or spec.get("encoding") not in _KEYS:
            raise _fail(
                where,
                f"expected an object whose encoding is one of {sorted(_KEYS)}, "
                f"received {_short(spec)}",
            )
        _check_keys(where, spec)
        kind = spec["encoding"]
        if kind in ("float32", "sign_bits", "levels"):
            self.kinds[name] = kind
        if kind == "float32":
            self.tensor(where, name, "F32", rank1=False)
            self.put(where, name, np.array(self.arrays[name], dtype=np.float32))
        elif kind == "sign_bits":
            self.put(where, name, self.sign_bits(where, name, spec))
        elif kind == "levels":
            self.put(where, name, self.levels(where, name, spec))
        elif kind == "channel_scale":
            if not self.refers_back(spec["of"], "scale", name):
                raise _bad_reference(f"{where}.of", "sign_bits tensor", spec["of"])
        elif spec["role"] == "offset":
            if not self.refers_back(spec["scale"], "offset", name):
                raise _bad_reference(f"{where}.scale", "folded scale", spec["scale"])
        else:
            for variable, value in self.batchnorm(where, name, spec).items():
                self.put(where, variable, value)
            if self.forward:
                layer = spec["variables"]["moving_mean"].rpartition("/")[0]
                self.batchnorms[layer] = (name, spec["offset"])

    def bit_order(self, where: str, spec: dict[str, Any]) -> None:
        if spec["bit_order"] != "little":
            raise _fail(
                f"{where}.bit_order",
                f"received {_short(spec['bit_order'])}, allowed: 'little'",
            )

    def sign_bits(self, where: str, name: str, spec: dict[str, Any]) -> Any:
        self.bit_order(where, spec)
        shape = self.shape(f"{where}.shape", spec["shape"])
        entry = self.tensor(where, name, "U8", rank1=True)
        _check_packed(where, entry, self.arrays[name], math.prod(shape))
        scale = None
        if "scale" in spec:
            scale_name = spec["scale"]
            if not self.refers_back(scale_name, "of", name):
                raise _bad_reference(
                    f"{where}.scale", "channel_scale tensor", scale_name
                )
            scale_entry = self.tensor(f"{where}.scale", scale_name, "F32", rank1=True)
            channels = shape[-1] if shape else None
            if scale_entry.shape != (channels,):
                raise _fail(
                    f"{where}.scale",
                    f"scale shape {list(scale_entry.shape)} received, expected "
                    f"[{channels}] (one per output channel)",
                )
            scale = self.arrays[scale_name]
        if self.forward:  # unpacked when the layer is planned, one at a time
            return SignBits(self.arrays[name], shape, scale, self.set_bit_is_negative)
        spec = {**spec, "shape": list(shape)}
        return decode_kernel(spec, self.arrays[name], scale, self.set_bit_is_negative)

    def levels(self, where: str, name: str, spec: dict[str, Any]) -> np.ndarray:
        bits = spec["bits"]
        top = MAX_LEVEL_BITS
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= top:
            raise _fail(
                f"{where}.bits", f"received {_short(bits)}, allowed: 1 to {top}"
            )
        self.bit_order(where, spec)
        levels = _number_list(f"{where}.levels", spec["levels"], 1, 2**bits)
        if "latent_levels" in spec:
            count = len(levels)
            _number_list(f"{where}.latent_levels", spec["latent_levels"], count, count)
        shape = self.shape(f"{where}.shape", spec["shape"])
        count = math.prod(shape)
        entry = self.tensor(where, name, "U8", rank1=True)
        _check_packed(where, entry, self.arrays[name], count * bits)
        codes = packing.unpack_codes(self.arrays[name], bits, count)
        if count and int(codes.max()) >= len(levels):
            raise _fail(
                where,
                f"code {int(codes.max())} is out of range for {len(levels)} levels",
            )
        return decode_kernel(
            {**spec, "shape": list(shape)}, self.arrays[name], forward=self.forward
        )

    def batchnorm(
        self, where: str, name: str, spec: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        epsilon = spec["epsilon"]
        if (
            isinstance(epsilon, bool)
            or not isinstance(epsilon, int | float)
            or not 0 < epsilon < math.inf
        ):
            raise _fail(
                f"{where}.epsilon",
                f"received {_short(epsilon)}, allowed: a positive finite number",
            )
        variables = spec["variables"]
        keys = list(BATCHNORM_VARIABLES)
        if not isinstance(variables, dict) or set(variables) != set(keys):
            raise _fail(
                f"{where}.variables",
                f"expected an object with keys {keys}, received {_short(variables)}",
            )
        for key, target in variables.items():
            optional = key in ("gamma", "beta")
            if not (isinstance(target, str) and target) and not (
                optional and target is None
            ):
                allowed = "a variable name" + (" or null" if optional else "")
                raise _fail(
                    f"{where}.variables.{key}",
                    f"expected {allowed}, received {_short(target)}",
                )
        offset_name = spec["offset"]
        if not self.refers_back(offset_name, "scale", name):
            raise _bad_reference(f"{where}.offset", "folded offset", offset_name)
        scale_entry = self.tensor(where, name, "F32", rank1=True)
        offset_entry = self.tensor(f"{where}.offset", offset_name, "F32", rank1=True)
        if offset_entry.shape != scale_entry.shape:
            raise _fail(
                f"{where}.offset",
                f"shape {list(offset_entry.shape)} received, expected "
                f"{list(scale_entry.shape)} (the scale's)",
            )
        if self.unfold is None:  # forward values: the folded scale and offset
            # Counted against max_elements as the variables they stand for.
            stored = sum(target is not None for target in variables.values())
            self.budget -= (stored - 2) * scale_entry.shape[0]
            return {
                name: np.array(self.arrays[name], dtype=np.float32),
                offset_name: np.array(self.arrays[offset_name], dtype=np.float32),
            }
        try:
            values = self.unfold(
                self.arrays[name],
                self.arrays[offset_name],
                float(epsilon),
                has_gamma=variables["gamma"] is not None,
                has_beta=variables["beta"] is not None,
            )
        except ValueError as error:
            raise _fail(where, str(error)) from None
        return {variables[key]: value for key, value in values.items()}


class SignBits:
    """A validated ``sign_bits`` kernel kept packed until it is used.

    Attributes:
        shape: The kernel's shape.
        size: Its number of values.
        scale: The per-output-channel scale, or None (1).
    """

    def __init__(
        self,
        packed: np.ndarray,
        shape: tuple[int, ...],
        scale: np.ndarray | None,
        set_bit_is_negative: bool = True,
    ) -> None:
        self.packed = packed
        self.shape = tuple(shape)
        self.size = math.prod(self.shape)
        self.scale = None if scale is None else np.asarray(scale, dtype=np.float32)
        self.set_bit_is_negative = set_bit_is_negative

    def negative(self) -> np.ndarray:
        """Booleans, True where the value is negative, in the kernel's shape."""
        bits = packing.unpack_signs(self.packed, self.size).reshape(self.shape)
        return bits if self.set_bit_is_negative else ~bits

    def values(self) -> np.ndarray:
        """The float32 values: ``±1``, times the scale when there is one."""
        values = np.where(self.negative(), np.float32(-1), np.float32(1))
        if self.scale is not None:
            values = values * self.scale
        return values.astype(np.float32)


@dataclass
class Decoded:
    """A file's forward values (:func:`decode` without ``unfold``).

    Attributes:
        values: Each stored variable's value as the forward pass uses it
            (packed kernels decoded to ``±1``, ``±scale`` or their level),
            and each folded BatchNormalization's scale and offset tensors.
        batchnorms: Layer path → ``(scale tensor, offset tensor)`` names.
        encodings: Each stored variable's encoding (``float32``,
            ``sign_bits``, ``levels``).
    """

    values: dict[str, Any]  # np.ndarray, or SignBits for sign_bits kernels
    batchnorms: dict[str, tuple[str, str]]
    encodings: dict[str, str]


def decode(
    metadata: dict[str, str],
    entries: dict[str, TensorEntry],
    arrays: dict[str, np.ndarray],
    *,
    max_elements: int = MAX_ELEMENTS,
    unfold: Unfold | None = None,
) -> Decoded:
    """Decodes a validated container.

    Args:
        metadata: The file's ``__metadata__``.
        entries: The header entry of each tensor.
        arrays: Each tensor's data.
        max_elements: Most values the decoded arrays may hold together.
        unfold: Turns a folded BatchNormalization back into its variables
            (:func:`bnncore.export.batchnorm.unfold`); None: keep the forward
            values (folded scale and offset, levels rather than latent levels).

    Raises:
        WeightsFileError: a missing, unknown or inconsistent encoding.
    """
    encodings, version = _read_encodings(metadata)
    missing = sorted(set(entries) - set(encodings))
    unknown = sorted(set(encodings) - set(entries))
    if missing:
        raise _fail("metadata.encodings", f"no encoding for tensors {missing[:5]}")
    if unknown:
        raise _fail("metadata.encodings", f"encodings for absent tensors {unknown[:5]}")
    decoder = _Decoder(encodings, entries, arrays, max_elements, version, unfold)
    for name, spec in encodings.items():
        decoder.decode(name, spec)
    return Decoded(decoder.out, decoder.batchnorms, decoder.kinds)


def decode_kernel(
    entry: dict[str, Any],
    packed: np.ndarray,
    scale: np.ndarray | None = None,
    set_bit_is_negative: bool = True,
    *,
    forward: bool = False,
) -> np.ndarray:
    """The float32 kernel of a validated ``sign_bits``/``levels`` entry.

    ``forward=False``: the latent value to assign (``latent_levels`` when the
    entry has them); ``forward=True``: the value the layer computes with.
    ``set_bit_is_negative=False`` reads format version 1, where a set bit
    meant +1.
    """
    shape = tuple(entry["shape"])
    count = math.prod(shape)
    if entry["encoding"] == "sign_bits":
        negative = packing.unpack_signs(packed, count).reshape(shape)
        if not set_bit_is_negative:
            negative = ~negative
        values = np.where(negative, np.float32(-1), np.float32(1))
        if scale is not None:
            values = values * np.asarray(scale, dtype=np.float32)
        return values.astype(np.float32)
    codes = packing.unpack_codes(packed, entry["bits"], count)
    latent = None if forward else entry.get("latent_levels")
    table = np.asarray(latent or entry["levels"], np.float32)
    return table[codes].reshape(shape)

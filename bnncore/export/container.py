"""The safetensors container: writing here, reading in
:mod:`bnncore_runtime.container` (the one strict reader, shared with the
TensorFlow-free runtime)."""

from __future__ import annotations

import json

import numpy as np
import safetensors.numpy

from bnncore_runtime.container import (
    DTYPES,
    MAX_HEADER_BYTES,
    MAX_NAME_LENGTH,
    MAX_RANK,
    MAX_TENSORS,
    TensorEntry,
    WeightsFileError,
    _short,
    check_shape,
    load_json,
    parse,
)

__all__ = [
    "DTYPES",
    "MAX_HEADER_BYTES",
    "MAX_NAME_LENGTH",
    "MAX_RANK",
    "MAX_TENSORS",
    "TensorEntry",
    "WeightsFileError",
    "_short",
    "check_shape",
    "dump",
    "load_json",
    "parse",
]


def dump(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """Serializes tensors and metadata to safetensors bytes, reproducibly.

    ``safetensors`` writes the ``__metadata__`` entries in hash-map order, which
    changes from call to call; the same weights would then hash differently.
    The header is rewritten with the metadata keys sorted (tensor entries keep
    their order), padded with spaces to its original length as the format
    allows, so offsets and the data section are untouched.
    """
    raw = safetensors.numpy.save(tensors, metadata=metadata)
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    ordered = {"__metadata__": dict(sorted(header.pop("__metadata__", {}).items()))}
    ordered.update(header)
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > n:  # never expected: same content, compact separators
        return raw
    return raw[:8] + text + b" " * (n - len(text)) + raw[8 + n :]

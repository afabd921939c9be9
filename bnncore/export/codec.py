"""The bnncore weights format (version 2): :mod:`bnncore_runtime.codec` holds
the metadata, the encodings and the one strict decoder; here a file decodes to
the latent variables a Keras model is assigned. See ``docs/export.md``."""

from __future__ import annotations

from typing import Any

import numpy as np

from bnncore.export import batchnorm
from bnncore.export.container import TensorEntry
from bnncore_runtime import codec
from bnncore_runtime.codec import (
    FORMAT,
    FORMAT_VERSION,
    MAX_ELEMENTS,
    READABLE_VERSIONS,
    metadata_for,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_ELEMENTS",
    "READABLE_VERSIONS",
    "decode",
    "metadata_for",
]


def decode(
    metadata: dict[str, str],
    entries: dict[str, TensorEntry],
    arrays: dict[str, np.ndarray],
    *,
    max_elements: int = MAX_ELEMENTS,
) -> dict[str, Any]:
    """Decodes a validated container into float32 arrays keyed by variable name
    (the latent values to assign; BatchNormalizations unfolded).

    Raises:
        WeightsFileError: a missing, unknown or inconsistent encoding.
    """
    return codec.decode(
        metadata, entries, arrays, max_elements=max_elements, unfold=batchnorm.unfold
    ).values

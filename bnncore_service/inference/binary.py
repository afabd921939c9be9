"""Framing of the binary tensor data extension (Triton's, which
``tritonclient`` uses by default) on ``POST /v2/models/.../infer``.

A request may carry the header ``Inference-Header-Content-Length: N``: its
first ``N`` bytes are the JSON inference request, the rest are the elements of
the inputs that have ``parameters.binary_data_size``, one after the other in
the order of ``inputs`` (little-endian, row-major; decoded by
:func:`bnncore_service.inference.oip.decode_oip`).

A response with outputs in binary (``parameters.binary_data`` of a requested
output, or ``parameters.binary_data_output`` of the request for the outputs
not listed) is framed the same way: the JSON response, whose binary outputs
have ``parameters.binary_data_size`` instead of ``data``, then their bytes, and
the header ``Inference-Header-Content-Length`` with the JSON's length.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bnncore_service.inference.tensors import InferenceError, to_json

__all__ = ["HEADER", "MEDIA_TYPE", "encode_body", "split_body"]

HEADER = "Inference-Header-Content-Length"
"""The header giving the byte length of the JSON part of a body."""

MEDIA_TYPE = "application/octet-stream"
"""Content type of a response with binary outputs."""


def split_body(raw: bytes, header: str | None) -> tuple[bytes, memoryview | None]:
    """The JSON part of a request body and the binary part after it.

    Args:
        raw: The body.
        header: The ``Inference-Header-Content-Length`` value (``None``: the
            body is JSON only).

    Returns:
        The JSON bytes and a view of the bytes after them (no copy), or
        ``None`` without the header.

    Raises:
        InferenceError: 400 for a header that is not a length within the body.
    """
    if header is None:
        return raw, None
    text = header.strip()
    if not (text.isascii() and text.isdigit()):
        raise InferenceError(
            400,
            f"{HEADER}: received {header[:40]!r}; allowed: the byte length of the "
            "JSON part of the body, a non-negative integer",
        )
    length = int(text)
    if length > len(raw):
        raise InferenceError(
            400,
            f"{HEADER}: received {length:,}, beyond the body's {len(raw):,} bytes; "
            "it gives the length of the JSON part at the start of the body",
        )
    return raw[:length], memoryview(raw)[length:]


def encode_body(
    content: dict[str, Any], buffers: list[np.ndarray]
) -> tuple[bytes, int]:
    """The body of a response with binary outputs: the JSON ``content`` then
    each buffer's bytes; and the JSON's length (the header's value)."""
    header = to_json(content)
    parts = [header, *(b.reshape(-1).view(np.uint8).data for b in buffers)]
    return b"".join(parts), len(header)

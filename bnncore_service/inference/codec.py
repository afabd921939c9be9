"""The request decoders and answer encoders, one module per protocol:
``oip`` (Open Inference Protocol V2), ``tfserving`` (TensorFlow Serving REST)
and what they share, ``tensors``. Their names stay importable from here."""

from __future__ import annotations

from bnncore_service.inference.oip import (
    decode_oip,
    encode_oip,
    encode_oip_binary,
    parse_oip,
)
from bnncore_service.inference.tensors import (
    BINARY_BYTES_PER_VALUE,
    DATATYPES,
    ENGINES,
    MODEL_DTYPE,
    Decoded,
    InferenceError,
    Limits,
    to_json,
)
from bnncore_service.inference.tfserving import decode_tfs, encode_tfs

__all__ = [
    "BINARY_BYTES_PER_VALUE",
    "DATATYPES",
    "ENGINES",
    "MODEL_DTYPE",
    "Decoded",
    "InferenceError",
    "Limits",
    "decode_oip",
    "decode_tfs",
    "encode_oip",
    "encode_oip_binary",
    "encode_tfs",
    "parse_oip",
    "to_json",
]

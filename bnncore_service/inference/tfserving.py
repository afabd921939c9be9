"""TensorFlow Serving REST model status and metadata bodies.

``GET /v1/models/{name}[/versions/{version}]`` answers a
``GetModelStatusResponse`` and ``.../metadata`` a ``GetModelMetadataResponse``,
in the JSON TF Serving writes for these protobufs: int64 fields (versions,
dimension sizes) as strings, default fields present (``"name": ""`` of a
dimension, ``"unknown_rank": false``, an empty ``error_message``).
"""

from __future__ import annotations

from typing import Any

from bnncore_service.store import VersionRecord

__all__ = [
    "METHOD_NAME",
    "SIGNATURE_NAME",
    "TF_DTYPE",
    "model_metadata",
    "model_status",
]

SIGNATURE_NAME = "serving_default"
"""The models' one signature (``:predict`` accepts only this name)."""

METHOD_NAME = "tensorflow/serving/predict"

TF_DTYPE = "DT_FLOAT"
"""Inputs and outputs are float32 (``codec.MODEL_DTYPE``; the OIP metadata
says FP32), TensorFlow's ``DT_FLOAT``."""


def model_status(versions: list[int]) -> dict[str, Any]:
    """``GetModelStatusResponse`` of registered versions, the latest first (as
    TF Serving orders them). Every registered version is ``AVAILABLE``: the
    service loads a version on its first request."""
    return {
        "model_version_status": [
            {
                "version": str(version),
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
            for version in sorted(versions, reverse=True)
        ]
    }


def _tensor_info(tensor: dict[str, Any]) -> dict[str, Any]:
    return {
        "dtype": TF_DTYPE,
        "tensor_shape": {
            "dim": [{"size": str(size), "name": ""} for size in tensor["shape"]],
            "unknown_rank": False,
        },
        "name": f"{tensor['name']}:0",
    }


def model_metadata(record: VersionRecord) -> dict[str, Any]:
    """``GetModelMetadataResponse`` of a version: its ``serving_default``
    signature, one entry per model input and output (keyed by name, shapes
    with ``-1`` for the batch and any other free dimension)."""
    return {
        "model_spec": {
            "name": record.name,
            "signature_name": "",
            "version": str(record.version),
        },
        "metadata": {
            "signature_def": {
                "signature_def": {
                    SIGNATURE_NAME: {
                        "inputs": {t["name"]: _tensor_info(t) for t in record.inputs},
                        "outputs": {t["name"]: _tensor_info(t) for t in record.outputs},
                        "method_name": METHOD_NAME,
                    }
                }
            }
        },
    }

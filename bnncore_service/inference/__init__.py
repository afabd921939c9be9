"""Inference: Open Inference Protocol V2 and TensorFlow Serving REST requests
decoded and checked (``oip``, ``tfserving``), run off the event loop with bounded
concurrency and optional dynamic batching (``scheduler``) on the Keras model or
its packed-engine twin (``serving``). See docs/inference.md."""

from bnncore_service.inference.serving import InferenceService, Served
from bnncore_service.inference.tensors import InferenceError

__all__ = ["InferenceError", "InferenceService", "Served"]

"""Independent arithmetic for the zoo tests: counts walked from the layer weights.

This oracle does not use :mod:`bnncore.analysis`; it applies the counting rules
of the issue directly to ``layer.weights``:

* Keras parameters: every weight element (what ``count_params`` reports);
* inference parameters: a BatchNorm counts 2 per channel (its folded scale and
  offset) whatever it stores; every other weight element counts 1;
* memory: 1 bit per element of a kernel whose quantizer declares 1 bit,
  2 float32 per BatchNorm channel, 32 bits for every other element.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from bnncore import quantizers


@dataclass(frozen=True)
class Counts:
    keras_params: int
    inference_params: int
    memory_bits: int

    @property
    def memory_bytes(self) -> int:
        assert self.memory_bits % 8 == 0
        return self.memory_bits // 8


def _size(weight) -> int:
    return int(np.prod(weight.shape))


def _kernel_bits(layer, weight) -> int:
    for attribute, quantizer in getattr(layer, "kernel_quantizers", {}).items():
        if getattr(layer, attribute) is weight and quantizer is not None:
            bits = quantizers.get_precision(quantizer)
            return 32 if bits is None else bits
    return 32


def count(model: keras.Model) -> Counts:
    keras_params = inference = bits = 0
    for layer in model.layers:
        keras_params += sum(_size(w) for w in layer.weights)
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.moving_mean.shape[0]
            inference += 2 * channels
            bits += 2 * 32 * channels
            continue
        for weight in layer.weights:
            inference += _size(weight)
            bits += _kernel_bits(layer, weight) * _size(weight)
    return Counts(keras_params, inference, bits)


def binary_layers(model: keras.Model) -> list:
    """The layers with at least one 1-bit kernel quantizer, in model order."""
    return [
        layer
        for layer in model.layers
        if any(
            quantizers.get_precision(q) == 1
            for q in getattr(layer, "kernel_quantizers", {}).values()
        )
    ]

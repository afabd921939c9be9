"""Zoo models compile exactly, with every binary layer on packed bits."""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import assert_matches, keras_forward, randomize

import bnncore
from bnncore import engine, zoo

# Binary layers (sign input and sign kernel) per architecture, counted from the
# Larq Zoo definitions: QuickNet/BiRealNet/ResNetE18/RealToBinaryNet have 4
# stages of 4 binary 3x3 convolutions; BinaryAlexNet quantizes 5 convolutions and
# 3 dense layers, the first with a float input; BinaryDenseNet28 has 6+6+6+5
# binary dense-block convolutions.
CASES = [
    ("QuickNet", 32, 16),
    ("BinaryAlexNet", 64, 7),
    ("BiRealNet", 32, 16),
    ("BinaryResNetE18", 32, 16),
    ("BinaryDenseNet28", 32, 23),
    ("RealToBinaryNet", 32, 16),
]


@pytest.mark.parametrize(("name", "size", "binary"), CASES)
def test_zoo_model_equals_keras_and_keeps_weights_packed(name, size, binary):
    model = randomize(zoo.get(name)(input_shape=(size, size, 3), num_classes=10))
    x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
    packed = engine.compile(model, threads=2)
    assert len(packed.binary_layers) == binary
    assert_matches(packed.predict(x), keras_forward(model, x))
    assert (
        packed.weight_bytes <= 1.1 * bnncore.models.profile(model).totals.memory_bytes
    )

"""Zoo models and the MNIST BNN: every binary layer on packed bits, and the
exactness contract (docs/engine.md) layer by layer and end to end.

The contract holds on any CPU: each step, fed Keras's values, agrees with Keras
within a bound derived from its summation length, and its binarization
decisions are Keras's except where Keras's own value lies within that bound of
the threshold. End to end, on the samples without such a decision, the
probabilities agree to float32 rounding and the top-1 class is identical
wherever Keras's two best classes are further apart than that.
"""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import assert_matches, keras_forward, randomize

import bnncore
from bench.engine import mnist_bnn
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


def check_contract(model, x, packed):
    """Layer by layer, then end to end on the samples away from the threshold."""
    report = engine.verify(model, x, packed=packed)
    assert report.ok, str(report)
    keep = [i for i in range(len(x)) if i not in report.samples_near_threshold]
    assert len(keep) >= len(x) // 2, str(report)  # the exception stays rare
    got, (ref,) = packed.predict(x)[keep], keras_forward(model, x)
    ref = ref[keep]
    assert_matches(got, [ref])
    # Same top-1 class wherever Keras's two best are further apart than the
    # float32 tolerance (on another CPU TensorFlow rounds otherwise; within it,
    # either class is a correct rounding and assert_matches bounds both).
    atol = 1e-5 * max(1.0, float(np.max(np.abs(ref))))
    best = np.sort(ref, axis=-1)
    clear = best[:, -1] - best[:, -2] > 2 * atol
    assert clear.any(), best[:, -2:]
    np.testing.assert_array_equal(np.argmax(got, -1)[clear], np.argmax(ref, -1)[clear])
    return report


@pytest.mark.parametrize(("name", "size", "binary"), CASES)
def test_zoo_model_keeps_the_contract_and_its_weights_packed(
    name, size, binary, engine_isa
):
    model = randomize(zoo.get(name)(input_shape=(size, size, 3), num_classes=10))
    x = np.random.default_rng(0).normal(size=(4, size, size, 3)).astype(np.float32)
    packed = engine.compile(model, threads=2)
    assert packed.isa == engine_isa
    assert len(packed.binary_layers) == binary
    # No layer is handed back to Keras for its rounding: every float
    # convolution runs in the core.
    assert not any(s.describe().startswith("keras") and "conv" in s.describe()
                   for s in packed.steps)  # fmt: skip
    check_contract(model, x, packed)
    assert (
        packed.weight_bytes <= 1.1 * bnncore.models.profile(model).totals.memory_bytes
    )


def test_mnist_bnn_runs_whole_in_the_core_and_keeps_the_contract(engine_isa):
    model = randomize(mnist_bnn())
    x = np.random.default_rng(3).normal(size=(8, 28, 28, 1)).astype(np.float32)
    packed = engine.compile(model, threads=2)
    kinds = [s.describe().split()[0] for s in packed.steps]
    assert "keras" not in kinds, packed.describe()
    assert len(packed.binary_layers) == 4
    report = check_contract(model, x, packed)
    first = report.steps[0]
    assert first.step.startswith("native conv") and first.values == 8 * 26 * 26 * 32

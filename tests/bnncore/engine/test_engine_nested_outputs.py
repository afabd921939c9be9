"""A model's outputs taken straight from a nested Functional model's calls.

Keras numbers a nested Functional model's calls from 1 in ``output_layers``
(0 is the call that built it) and from 0 in ``inbound_nodes``; the engine's
graph reads both through the one Keras-config reader, which renumbers the
former. Before, such a model compiled to a plan that failed at its first
prediction (``KeyError`` on an output no step makes) or, with a second call,
returned the wrong call's output. Oracle: the Keras model's own forward pass.
"""

from __future__ import annotations

import keras
import numpy as np
from engine_helpers import (
    BINARY,
    assert_matches,
    binary_steps,
    keras_forward,
    randomize,
)

from bnncore import engine
from bnncore.layers import QuantDense


def _x(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(3, 8)).astype(np.float32)


def test_outputs_of_a_nested_functional_model_called_twice() -> None:
    inner_in = keras.Input((8,))
    inner = keras.Model(
        inner_in,
        [QuantDense(6, **BINARY)(inner_in), keras.layers.Dense(4)(inner_in)],
        name="inner",
    )
    a, b = keras.Input((8,), name="a"), keras.Input((8,), name="b")
    shared = keras.layers.Dense(8, name="shared")
    first = inner(shared(a))
    second = inner(shared(b))
    # The second call's first output, the first call's second output.
    model = keras.Model([a, b], [second[0], first[1]], name="outer")
    randomize(model)
    randomize(inner, seed=1)
    assert model.get_config()["output_layers"] == [["inner", 2, 0], ["inner", 1, 1]]
    packed = engine.compile(model)
    # One binary step: the second call's QuantDense (the first call's is unused).
    assert len(binary_steps(packed)) == 1
    x = [_x(1), _x(2)]
    got = packed.predict(x)
    expected = keras_forward(model, x)
    assert not np.allclose(expected[0][:, :4], expected[1])  # the calls differ
    assert_matches(got, expected)

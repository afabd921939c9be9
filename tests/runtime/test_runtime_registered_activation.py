"""A binary layer whose activation is a bnncore function: Keras 3 writes it by
its registered name (``"bnncore>ste_sign"``); the runtime reads it as the
engine does.

Oracle: ``bnncore.engine.compile(model).predict`` on the exported Keras model
(same planner and core), bit for bit, and the engine's plan description.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from runtime_models import export, randomize

import bnncore as lq
import bnncore_runtime
from bnncore_runtime.layers import _function_name

S = {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign"}


def _model(activation: str) -> keras.Model:
    inputs = keras.Input((12,), name="x")
    hidden = lq.layers.QuantDense(
        16, activation=activation, kernel_constraint="weight_clip", **S
    )(inputs)
    outputs = lq.layers.QuantDense(
        4, kernel_constraint="weight_clip", **S, name="head"
    )(hidden)
    return randomize(keras.Model(inputs, outputs), seed=5)


@pytest.mark.parametrize("activation", ["ste_sign", "approx_sign", "swish_sign"])
def test_a_registered_bnncore_activation_runs_as_in_the_engine(
    activation: str, tmp_path
) -> None:
    model = _model(activation)
    directory = export(model, tmp_path / activation)
    definition = json.loads((directory / "definition.json").read_text())
    written = next(
        layer["config"]["activation"]
        for layer in definition["config"]["layers"]
        if layer["class_name"] == "QuantDense"
    )
    assert written["config"] == f"bnncore>{activation}"  # what is being read
    packed = lq.engine.compile(model)
    loaded = bnncore_runtime.load(directory)
    assert loaded.describe() == packed.describe()
    x = np.random.default_rng(2).normal(size=(3, 12)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), packed.predict(x))


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("bnncore>ste_sign", "ste_sign"),
        ({"class_name": "function", "config": "bnncore>swish_sign"}, "swish_sign"),
        # Another package's function is not bnncore's, whatever its name.
        ("mypackage>relu", "mypackage>relu"),
        ("relu", "relu"),
    ],
    ids=["string", "function-dict", "other-package", "plain"],
)
def test_only_the_bnncore_prefix_is_stripped(value, name) -> None:
    assert _function_name(value) == name

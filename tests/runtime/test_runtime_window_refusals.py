"""A window larger than its input is refused by the runtime with its own
message (the table's refusal is translated), naming the layer, the input and
the window. Oracle: the sizes written here; Keras builds each layer on a
larger input, then the definition's input is shrunk."""

from __future__ import annotations

import json
from typing import Any

import keras
import pytest

from bnncore import layers as bl
from bnncore_runtime.definition import DefinitionError, parse_definition
from bnncore_runtime.layers import infer_shapes

CASES: dict[str, tuple[Any, tuple[int, ...], list[int | None], str]] = {
    "Conv2D": (lambda: keras.layers.Conv2D(2, 5), (8, 8, 1), [None, 3, 3, 1],
               "(Conv2D): input [3, 3] is smaller than the window [5, 5] with "
               "padding='valid'"),
    "DepthwiseConv2D": (lambda: keras.layers.DepthwiseConv2D((4, 2)), (8, 8, 1),
                        [None, 3, 9, 1],
                        "(DepthwiseConv2D): input [3, 9] is smaller than the "
                        "window [4, 2] with padding='valid'"),
    "QuantConv1D": (lambda: bl.QuantConv1D(2, 5), (8, 1), [None, 3, 1],
                    "(QuantConv1D): input of 3 steps is shorter than the window "
                    "5 with padding='valid'"),
    "MaxPooling2D": (lambda: keras.layers.MaxPooling2D(4), (8, 8, 1),
                     [None, 3, 3, 1], "(MaxPooling2D): input smaller than the pool"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_window_larger_than_the_input_is_refused(case: str) -> None:
    make, built, small, message = CASES[case]
    inputs = keras.Input(built)
    definition = json.loads(keras.Model(inputs, make()(inputs)).to_json())
    infer_shapes(parse_definition(json.dumps(definition))[1])  # fits as built
    definition["config"]["layers"][0]["config"]["batch_shape"] = small
    with pytest.raises(DefinitionError) as caught:
        infer_shapes(parse_definition(json.dumps(definition))[1])
    assert message in str(caught.value)

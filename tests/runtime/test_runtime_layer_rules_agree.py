"""The runtime's own shape and weight rules (``bnncore_runtime.layers``) agree
with the table of layer rules (``bnncore_runtime.layer_rules``) for every
layer class the runtime reads.

The runtime reads output and weight shapes from the table
(``infer_shapes``, ``weight_shapes``) after its own checks of an export's
configs; this test holds the whole path, config reading included. Oracle:
Keras itself, for each case's built layer (its output shape and variables),
so a disagreement names which side is wrong.
"""

from __future__ import annotations

import json
from typing import Any

import keras
import pytest

from bnncore import layers as bl
from bnncore_runtime.definition import parse_definition
from bnncore_runtime.layer_rules import rule_of
from bnncore_runtime.layers import SUPPORTED_LAYERS, infer_shapes, weight_shapes

S = {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign"}

CASES: dict[str, tuple[Any, dict[str, Any], tuple[int, ...]]] = {
    "Conv2D-same-stride": (keras.layers.Conv2D,
                           {"filters": 4, "kernel_size": 3, "strides": 2,
                            "padding": "same"}, (7, 6, 3)),
    "Conv2D-groups-dilated": (keras.layers.Conv2D,
                              {"filters": 4, "kernel_size": (3, 2), "groups": 2,
                               "dilation_rate": 2, "use_bias": False}, (9, 8, 4)),
    "QuantConv2D": (bl.QuantConv2D, {"filters": 5, "kernel_size": 3, **S},
                    (6, 6, 2)),
    "QuantConv1D-causal": (bl.QuantConv1D,
                           {"filters": 3, "kernel_size": 3, "padding": "causal",
                            "dilation_rate": 2, **S}, (10, 2)),
    "QuantConv1D-same-stride": (bl.QuantConv1D,
                                {"filters": 3, "kernel_size": 4, "strides": 3,
                                 "padding": "same", **S}, (10, 2)),
    "DepthwiseConv2D": (keras.layers.DepthwiseConv2D,
                        {"kernel_size": 3, "depth_multiplier": 2}, (5, 5, 3)),
    "Dense": (keras.layers.Dense, {"units": 4}, (6,)),
    "Dense-rank3": (keras.layers.Dense, {"units": 4, "use_bias": False}, (2, 6)),
    "QuantDense": (bl.QuantDense, {"units": 3, **S}, (5,)),
    "BatchNormalization": (keras.layers.BatchNormalization, {}, (4, 4, 3)),
    "Activation": (keras.layers.Activation, {"activation": "relu"}, (4,)),
    "ReLU": (keras.layers.ReLU, {}, (3, 4)),
    "Softmax": (keras.layers.Softmax, {}, (4,)),
    "Dropout": (keras.layers.Dropout, {"rate": 0.5}, (4,)),
    "GaussianNoise": (keras.layers.GaussianNoise, {"stddev": 0.1}, (3, 4)),
    "GaussianDropout": (keras.layers.GaussianDropout, {"rate": 0.2}, (4,)),
    "AlphaDropout": (keras.layers.AlphaDropout, {"rate": 0.2}, (2, 3)),
    "SpatialDropout2D": (keras.layers.SpatialDropout2D, {"rate": 0.5}, (3, 3, 2)),
    "MaxPooling2D": (keras.layers.MaxPooling2D, {"pool_size": 2}, (5, 5, 3)),
    "MaxPooling2D-same": (keras.layers.MaxPooling2D,
                          {"pool_size": 3, "strides": 2, "padding": "same"},
                          (5, 4, 1)),
    "GlobalAveragePooling2D": (keras.layers.GlobalAveragePooling2D, {}, (3, 3, 2)),
    "GlobalAveragePooling2D-keepdims": (keras.layers.GlobalAveragePooling2D,
                                        {"keepdims": True}, (3, 3, 2)),
    "Flatten": (keras.layers.Flatten, {}, (2, 3, 4)),
}  # fmt: skip


def _one_layer_definition(layer: Any, shape: tuple[int, ...]) -> str:
    inputs = keras.Input(shape, name="x")
    model = keras.Model(inputs, layer(inputs), name="one")
    return json.dumps(json.loads(model.to_json()))


@pytest.mark.parametrize("case", sorted(CASES))
def test_runtime_shapes_equal_the_table_and_keras(case: str) -> None:
    make, kwargs, shape = CASES[case]
    layer = make(**kwargs)
    _, graph = parse_definition(_one_layer_definition(layer, shape))
    (node,) = graph.nodes
    runtime_out = infer_shapes(graph)[graph.outputs[0]].shape
    keras_out = tuple(layer.compute_output_shape((None, *shape)))
    rule = rule_of(layer)
    assert rule is not None
    table_out = rule.output_shape(layer, [shape])
    assert runtime_out == keras_out
    assert (None, *table_out) == keras_out
    keras_weights = {w.path.split("/")[-1]: tuple(w.shape) for w in layer.weights}
    table_weights = {
        w.name: w.shape
        for w in (rule.weights(layer, [shape], table_out) if rule.weights else ())
    }
    assert table_weights == keras_weights
    runtime_weights = weight_shapes(node.op, (None, *shape))
    # The runtime checks the file's kernel and bias only (a batch norm's
    # statistics are folded when read).
    assert runtime_weights == {
        name: s for name, s in keras_weights.items() if name in ("kernel", "bias")
    }


UNCOVERED = {"MaxPool2D", "SpatialDropout1D", "SpatialDropout3D", "Add", "Concatenate"}
"""Keras's alias of MaxPooling2D; Dropout subclasses like SpatialDropout2D;
the merges, with two inputs."""


def test_every_layer_class_the_runtime_reads_has_a_case() -> None:
    covered = {CASES[case][0].__name__ for case in CASES}
    assert set(SUPPORTED_LAYERS) == covered | UNCOVERED

"""The Keras-JSON translator returns plain data, read from what real Keras
writes; a refusal names the field where the document states it.

Oracles: the models are built here, so each layer's inputs are known from the
construction; the validated form is the service's own ``KerasJSON``
definition of the same document.
"""

from __future__ import annotations

import json
from typing import Any

import keras
import pytest

from bnncore_service import keras_json
from bnncore_service.schemas.definitions import Graph, KerasJSON
from bnncore_service.schemas.from_keras import TranslationError, translate


def _nested() -> keras.Model:
    image = keras.Input((6, 6, 2), name="image")
    block = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(2, 3, padding="same", name="inner_conv"),
            keras.layers.ReLU(name="inner_relu"),
        ],
        name="block",
    )
    x = block(image)
    x = keras.layers.Add(name="plus")([x, image])
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(image, keras.layers.Dense(3, name="head")(x), name="outer")


def _sequential() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(4, name="d1"),
            keras.layers.Dense(2, name="d2"),
        ],
        name="seq",
    )


@pytest.mark.parametrize(
    ("make", "inputs", "outputs"),
    [
        (
            _nested,
            {
                "inner_conv": ["image"],  # the nested model's input is its caller's
                "inner_relu": ["inner_conv"],
                "plus": ["inner_relu", "image"],  # the nested model's last layer
                "pool": ["plus"],
                "head": ["pool"],
            },
            ["head"],
        ),
        (_sequential, {"d1": ["input_layer"], "d2": ["d1"]}, ["d2"]),
    ],
    ids=["functional-nested", "sequential"],
)
def test_translation_is_plain_data_with_keras_structure(
    make: Any, inputs: dict[str, list[str]], outputs: list[str]
) -> None:
    model = make()
    document = json.loads(model.to_json())
    translation = translate(document)
    graph = translation.graph
    # Plain JSON data: it survives a JSON round trip unchanged.
    assert json.loads(json.dumps(graph)) == graph
    assert graph["name"] == model.name and graph["outputs"] == outputs
    layers = {layer["name"]: layer for layer in graph["layers"]}
    first = graph["layers"][0]
    assert first["type"] == "Input"
    expected = {
        name: [first["name"] if n == "input_layer" else n for n in sources]
        for name, sources in inputs.items()
    }
    assert {n: layers[n]["inputs"] for n in expected} == expected
    assert list(layers) == [first["name"], *inputs]
    # The definitions validate exactly this data.
    validated = KerasJSON.model_validate(document).graph()
    assert validated == Graph.model_validate(graph)
    assert keras_json.translate(document) == validated


def _edit_nested(edit: Any) -> dict[str, Any]:
    document = json.loads(_nested().to_json())
    edit(document["config"]["layers"])
    return document


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (
            lambda layers: layers[1]["config"]["layers"][1]["config"].update(filters=0),
            "config.layers[1].config.layers[1].config.filters: Input should be "
            "greater than or equal to 1 (received 0) (layer 'inner_conv', type "
            "Conv2D)",
        ),
        (
            # The last layer: its index in the graph is past the document's
            # config.layers (the nested model's layers are inlined).
            lambda layers: layers[-1]["config"].update(units=0),
            "config.layers[4].config.units: Input should be greater than or "
            "equal to 1 (received 0) (layer 'head', type Dense)",
        ),
    ],
    ids=["inner-layer", "after-the-nested-model"],
)
def test_refusals_after_a_nested_model_name_the_documents_field(
    edit: Any, needle: str
) -> None:
    with pytest.raises(TranslationError) as caught:
        keras_json.translate(_edit_nested(edit))
    assert str(caught.value) == needle

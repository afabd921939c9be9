"""A Keras-JSON layer entry whose ``name`` differs from its ``config.name``,
or whose ``config`` is not an object, is refused at that field: for a layer
and for an operation entry (``keras.ops.add`` in a functional model) alike.

Oracle: the document real Keras writes for a model built here, translated
unchanged, then with one field edited.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import keras
import pytest

from bnncore_service.schemas.from_keras import TranslationError, translate


def _document() -> dict[str, Any]:
    inputs = keras.Input((4,), name="x")
    dense = keras.layers.Dense(4, name="d")(inputs)
    out = keras.ops.add(dense, inputs)
    return json.loads(keras.Model(inputs, out, name="m").to_json())


def _entry(document: dict[str, Any], class_name: str) -> tuple[int, dict[str, Any]]:
    layers = document["config"]["layers"]
    index = next(i for i, e in enumerate(layers) if e["class_name"] == class_name)
    return index, layers[index]


@pytest.mark.parametrize("class_name", ["Dense", "Add"], ids=["layer", "operation"])
def test_an_entry_name_other_than_config_name_is_refused(class_name: str) -> None:
    document = _document()
    translate(copy.deepcopy(document))  # what Keras wrote translates
    index, entry = _entry(document, class_name)
    config_name = entry["config"]["name"]
    assert entry["name"] == config_name
    entry["name"] = "other"
    with pytest.raises(TranslationError) as caught:
        translate(document)
    message = str(caught.value)
    assert f"config.layers[{index}].name" in message
    assert f"'other' differs from config.name {config_name!r}" in message


@pytest.mark.parametrize("class_name", ["Dense", "Add"], ids=["layer", "operation"])
def test_a_config_that_is_not_an_object_is_refused(class_name: str) -> None:
    document = _document()
    index, entry = _entry(document, class_name)
    entry["config"] = ["not", "an", "object"]
    with pytest.raises(TranslationError) as caught:
        translate(document)
    message = str(caught.value)
    assert f"config.layers[{index}].config" in message
    assert "expected an object" in message

"""Keras JSON definitions: ``model.to_json()`` of a client's model, translated by
the service's own parser; the oracle is the profile of the client's model."""

from __future__ import annotations

import json
from typing import Any

import keras
import pytest

import bnncore
from bnncore.layers import (
    QuantConv2D,
    QuantDense,
    QuantDepthwiseConv2D,
    QuantSeparableConv1D,
)
from bnncore.models import profile

Q = {"kernel_quantizer": "ste_sign", "kernel_constraint": "weight_clip"}


def sequential_model() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            keras.layers.Rescaling(1 / 255),
            QuantConv2D(
                8,
                3,
                use_bias=False,
                padding="same",
                pad_values=1.0,
                input_quantizer=bnncore.quantizers.SteSign(clip_value=0.5),
                **Q,
            ),
            keras.layers.BatchNormalization(momentum=0.9, center=False),
            keras.layers.Activation("ste_sign"),
            QuantDepthwiseConv2D(
                3,
                depthwise_quantizer="ste_tern",
                depthwise_initializer=keras.initializers.HeNormal(3),
            ),
            keras.layers.MaxPooling2D(2),
            keras.layers.Reshape((25, 8)),
            QuantSeparableConv1D(
                4,
                3,
                depthwise_quantizer="ste_sign",
                pointwise_quantizer=bnncore.quantizers.DoReFa(k_bit=4, mode="weights"),
            ),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dropout(0.2),
            QuantDense(
                10,
                kernel_regularizer=keras.regularizers.L2(1e-4),
                activation="softmax",
                input_quantizer="ste_sign",
                **Q,
            ),
        ],
        name="client_sequential",
    )


def functional_model() -> keras.Model:
    x = keras.Input((8, 8, 4), name="image")
    y = QuantConv2D(4, 3, padding="same", input_quantizer="ste_sign", **Q, name="conv")(
        x
    )
    y = keras.layers.BatchNormalization(name="bn")(y)
    y = keras.layers.Add(name="shortcut")([x, y])
    z = keras.layers.Concatenate(name="cat")([x, y])
    z = keras.layers.GlobalMaxPooling2D(name="pool")(z)
    out = keras.layers.Dense(3, activation=bnncore.quantizers.SteSign(), name="head")(z)
    return keras.Model(x, [out, y], name="client_functional")


@pytest.mark.parametrize("make", [sequential_model, functional_model])
def test_to_json_reports_equal_the_profile_of_the_client_model(
    client: Any, make: Any
) -> None:
    model = make()
    expected = profile(model).to_dict()
    response = client.post("/v2/summary", json=json.loads(model.to_json()))
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["totals"] == expected["totals"]
    assert len(report["layers"]) == len(expected["layers"])
    for mine, theirs in zip(report["layers"], expected["layers"], strict=True):
        # Keras prefixes weight paths with the model name in a Sequential model.
        for row in (mine, theirs):
            for weight in row["weights"]:
                weight["path"] = weight["path"].removeprefix(f"{model.name}/")
        assert mine == theirs


def test_registered_keras_json_is_stored_as_a_graph(client: Any) -> None:
    model = functional_model()
    created = client.post(
        "/v2/models", json={"name": "client", "definition": json.loads(model.to_json())}
    )
    assert created.status_code == 201 and created.json()["kind"] == "KerasJSON"
    definition = client.get("/v2/models/client/definition").json()
    assert definition["outputs"] == ["head", "shortcut"]
    assert [layer["type"] for layer in definition["layers"]] == [
        "Input",
        "QuantConv2D",
        "BatchNormalization",
        "Add",
        "Concatenate",
        "GlobalMaxPooling2D",
        "Dense",
    ]
    metadata = client.get("/v2/models/client").json()
    assert metadata["inputs"] == [
        {"name": "image", "datatype": "FP32", "shape": [-1, 8, 8, 4]}
    ]


def _document(edit: Any) -> dict[str, Any]:
    document = json.loads(functional_model().to_json())
    edit(document)
    return document


def _shared(document: dict[str, Any]) -> None:
    nodes = document["config"]["layers"][1]["inbound_nodes"]
    nodes.append(nodes[0])


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (_shared, "config.layers[1].inbound_nodes: expected exactly one inbound node"),
        (
            lambda d: d["config"]["layers"][1]["config"].update(dtype="float16"),
            "config.layers[1].config.dtype: only float32",
        ),
        (
            lambda d: d["config"]["layers"][2]["config"].update(renorm=True),
            "config.layers[2].config.renorm: only False",
        ),
        (
            lambda d: d["config"]["layers"][1]["config"].update(filters=0),
            "config.layers[1].config.filters: Input should be greater than or equal",
        ),
        (
            lambda d: d["config"]["layers"][1]["config"].update(
                data_format="channels_first"
            ),
            "config.layers[1].config.data_format",
        ),
        (
            lambda d: d["config"]["layers"][1]["inbound_nodes"][0]["kwargs"].update(
                training=True
            ),
            "call arguments other than inputs",
        ),
        (
            lambda d: d["config"].update(output_layers=["nowhere", 0, 0]),
            "outputs[0]: no layer named 'nowhere'",
        ),
        (lambda d: d.update(class_name="Subclassed"), "class_name: expected"),
        # Unhashable names are refused too (they used to fail a dict lookup: 500).
        (
            lambda d: d["config"]["layers"][1].update(class_name=["Conv2D"]),
            "config.layers[1].class_name: ['Conv2D'] is not an allowed layer type",
        ),
        (
            lambda d: d["config"]["layers"][1]["config"]["kernel_initializer"].update(
                module=["keras.initializers"]
            ),
            "config.layers[1].config.kernel_initializer.module: "
            "['keras.initializers'] is not allowed",
        ),
    ],
)
def test_translator_refusals_name_the_field(
    client: Any, edit: Any, needle: str
) -> None:
    response = client.post("/v2/summary", json=_document(edit))
    assert response.status_code == 422
    assert needle in response.json()["error"]

"""The one reader of Keras configs (``bnncore_runtime.keras_config``) against
configs that real Keras writes.

Oracles: the models are built here, so each layer's calls, the tensors each
call receives (which layer, which call, which output) and the model's inputs
and outputs are known from the construction; names and shapes come from the
Keras objects' public attributes (``model.operations``, ``layer.name``,
``tensor.shape``). The reader sees only ``model.get_config()`` (tuples) or
``model.to_json()`` (JSON lists), as plain data.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import pytest

from bnncore_runtime.keras_config import (
    History,
    KerasConfigError,
    KerasTensor,
    ModelConfig,
    read_model,
)

ROOT = Path(__file__).resolve().parents[2]


def _shape(tensor: Any) -> tuple[int | None, ...]:
    return tuple(tensor.shape)


def _nested_functional() -> dict[str, Any]:
    """A functional model with a shared layer (two calls), a nested
    functional model with two outputs called twice, a nested Sequential
    model, a merge layer on a list, and ops (slicing, ``+``); with the calls
    it makes, as built."""
    inner_in = keras.Input((4,), name="inner_in")
    inner_dense = keras.layers.Dense(3, name="inner_dense")
    inner_relu = keras.layers.ReLU(name="inner_relu")
    inner = keras.Model(
        inner_in, [inner_dense(inner_in), inner_relu(inner_in)], name="inner"
    )
    seq_dense = keras.layers.Dense(2, name="seq_dense")
    seq_relu = keras.layers.ReLU(name="seq_relu")
    seq = keras.Sequential([keras.Input((3,)), seq_dense, seq_relu], name="seq")

    a = keras.Input((4,), name="a")
    b = keras.Input((4,), name="b")
    shared = keras.layers.Dense(4, name="shared")
    x = shared(a)  # shared, call 0
    y = shared(b)  # shared, call 1
    p, q = inner(x)  # inner, call 0
    p2, _ = inner(y)  # inner, call 1
    z = seq(p)
    d2 = keras.layers.Dense(2, name="d2")(p2)
    plus = keras.layers.Add(name="plus")([z, d2])
    out = x[:, :2] + plus  # a GetItem op, then an Add op
    model = keras.Model([a, b], [out, q], name="outer")
    calls = {
        # layer: [[(producer, call, output), ...] per call]
        "shared": [[("a", 0, 0)], [("b", 0, 0)]],
        "inner": [[("shared", 0, 0)], [("shared", 1, 0)]],
        "seq": [[("inner", 0, 0)]],
        "d2": [[("inner", 1, 0)]],
        "plus": [[("seq", 0, 0), ("d2", 0, 0)]],
    }
    shapes = {
        ("a", 0, 0): _shape(a),
        ("b", 0, 0): _shape(b),
        ("shared", 0, 0): _shape(x),
        ("shared", 1, 0): _shape(y),
        ("inner", 0, 0): _shape(p),
        ("inner", 1, 0): _shape(p2),
        ("seq", 0, 0): _shape(z),
        ("d2", 0, 0): _shape(d2),
    }
    return {
        "model": model,
        "inner": inner,
        "seq": seq,
        "calls": calls,
        "shapes": shapes,
        "inputs": [("a", 0, 0), ("b", 0, 0)],
        # ``out`` is the op's first call; ``q`` the inner model's second output
        # of its first call.
        "outputs_from": [None, ("inner", 0, 1)],
    }


@pytest.fixture(scope="module")
def built() -> dict[str, Any]:
    return _nested_functional()


def _configs(model: keras.Model) -> list[Any]:
    """What Keras writes: get_config() (tuples) and to_json()'s config (lists)."""
    return [model.get_config(), json.loads(model.to_json())["config"]]


@pytest.mark.parametrize("source", [0, 1], ids=["get_config", "to_json"])
def test_functional_layers_calls_and_tensors_are_keras_own(
    built: dict[str, Any], source: int
) -> None:
    model = built["model"]
    read = read_model(_configs(model)[source])
    assert read.kind == "functional" and read.name == "outer"
    assert [layer.name for layer in read.layers] == [op.name for op in model.operations]
    for name, expected in built["calls"].items():
        layer = read.layer(name)
        got = [[tuple(t.history) for t in call.tensors] for call in layer.calls]
        assert got == expected, name
        for call in layer.calls:
            for tensor in call.tensors:
                assert tensor.shape == built["shapes"][tuple(tensor.history)]
    # A merge layer's call takes one argument: the list of its tensors.
    (plus_call,) = read.layer("plus").calls
    assert [type(t) for t in plus_call.args[0]] == [KerasTensor, KerasTensor]
    assert read.inputs == tuple(History(*i) for i in built["inputs"])
    assert read.outputs[1] == History(*built["outputs_from"][1])
    last = read.layer(read.outputs[0].layer)
    assert last.class_name == "Add" and len(last.calls) == 1
    # The op's inputs: the slice of the shared layer's first call, and plus.
    assert [t.history.layer for t in last.calls[0].tensors][1] == "plus"
    assert all(read.layer(h.layer).is_input for h in read.inputs)
    assert [layer.name for layer in read.layers if layer.is_model] == ["inner", "seq"]


def test_a_nested_functional_models_outputs_are_renumbered_as_its_calls(
    built: dict[str, Any],
) -> None:
    config = built["model"].get_config()
    # Keras counts the call that built the nested model in output_layers...
    assert list(config["output_layers"][1]) == ["inner", 1, 1]
    read = read_model(config)
    # ...and not in inbound_nodes; the reader gives both as call indices.
    assert read.outputs[1] == History("inner", 0, 1)
    assert read.layer("inner").is_functional and len(read.layer("inner").calls) == 2
    assert not read.layer("seq").is_functional
    config["output_layers"][1] = ["inner", 0, 1]
    with pytest.raises(KerasConfigError, match=r"output_layers\[1\]: .*'inner'"):
        read_model(config)


def test_get_config_and_to_json_read_alike(built: dict[str, Any]) -> None:
    from_config, from_json = (read_model(c) for c in _configs(built["model"]))

    def summary(model: ModelConfig) -> list[Any]:
        return [
            (
                layer.name,
                [[(t.history, t.shape) for t in c.tensors] for c in layer.calls],
            )
            for layer in model.layers
        ] + [model.inputs, model.outputs]

    assert summary(from_config) == summary(from_json)


def test_nested_functional_model_is_read_from_the_outer_config(
    built: dict[str, Any],
) -> None:
    inner = built["inner"]
    nested = read_model(built["model"].get_config()).layer("inner").as_model()
    assert nested.kind == "functional"
    assert nested.path == "config.layers[3].config"
    assert [layer.name for layer in nested.layers] == [
        op.name for op in inner.operations
    ]
    assert nested.inputs == (History("inner_in", 0, 0),)
    assert nested.outputs == (
        History("inner_dense", 0, 0),
        History("inner_relu", 0, 0),
    )
    (call,) = nested.layer("inner_dense").calls
    assert [t.history for t in call.tensors] == [History("inner_in", 0, 0)]
    assert call.tensors[0].shape == _shape(inner.inputs[0])


def test_nested_sequential_model_is_a_chain(built: dict[str, Any]) -> None:
    seq = built["seq"]
    nested = read_model(built["model"].get_config()).layer("seq").as_model()
    assert nested.kind == "sequential"
    names = [layer.name for layer in seq.layers]
    assert names == ["seq_dense", "seq_relu"]
    (first, *rest) = nested.layers
    assert first.is_input and [layer.name for layer in rest] == names
    chain = [(layer.name, applied) for layer, applied in nested.chain()]
    assert chain == [
        ("seq_dense", History(first.name, 0, 0)),
        ("seq_relu", History("seq_dense", 0, 0)),
    ]
    assert nested.inputs == (History(first.name, 0, 0),)
    assert nested.outputs == (History("seq_relu", 0, 0),)
    assert all(layer.calls == () for layer in nested.layers)


def test_built_sequential_chains_from_its_input_layer() -> None:
    model = keras.Sequential(
        [keras.layers.Dense(3, name="d1"), keras.layers.Dense(1, name="d2")],
        name="plain",
    )
    model.build((None, 5))
    for config in _configs(model):
        read = read_model(config)
        assert read.kind == "sequential" and read.name == "plain"
        first = read.layers[0]
        assert first.is_input
        assert [layer.name for layer in read.layers[1:]] == [
            layer.name for layer in model.layers
        ]
        assert read.inputs == (History(first.name, 0, 0),)
        assert [(layer.name, applied) for layer, applied in read.chain()] == [
            ("d1", History(first.name, 0, 0)),
            ("d2", History("d1", 0, 0)),
        ]
        assert read.outputs == (History("d2", 0, 0),)
        # Without its InputLayer, the first layer takes the model's input.
        headless = read_model({**config, "layers": list(config["layers"])[1:]})
        assert headless.inputs == ()
        assert [applied for _, applied in headless.chain()] == [
            None,
            History("d1", 0, 0),
        ]


def test_a_layer_entry_keeps_what_keras_wrote(built: dict[str, Any]) -> None:
    document = json.loads(built["model"].to_json())
    read = read_model(document["config"])
    shared = read.layer("shared")
    assert (shared.class_name, shared.module, shared.registered_name) == (
        "Dense",
        "keras.layers",
        None,
    )
    assert shared.config["units"] == 4
    assert shared.raw is document["config"]["layers"][2]
    assert shared.path == "config.layers[2]"
    tensor = shared.calls[1].tensors[0]
    assert tensor.path == "config.layers[2].inbound_nodes[1].args[0]"
    assert tensor.dtype == "float32"


def _edit(document: dict[str, Any], edit: Any) -> dict[str, Any]:
    document = copy.deepcopy(document)
    edit(document)
    return document


def _tensor(document: dict[str, Any]) -> dict[str, Any]:
    return document["layers"][2]["inbound_nodes"][0]["args"][0]


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (
            lambda d: _tensor(d)["config"].update(keras_history=["a", 0]),
            "config.layers[2].inbound_nodes[0].args[0].config.keras_history",
        ),
        (
            lambda d: _tensor(d)["config"].update(keras_history=["a", True, 0]),
            "config.layers[2].inbound_nodes[0].args[0].config.keras_history",
        ),
        (
            lambda d: _tensor(d)["config"].update(shape=[None, "4"]),
            "config.layers[2].inbound_nodes[0].args[0].config.shape",
        ),
        (
            lambda d: d["layers"][2]["inbound_nodes"][0].update(args={"x": 1}),
            "config.layers[2].inbound_nodes[0].args",
        ),
        (
            lambda d: d["layers"][2].update(inbound_nodes="shared"),
            "config.layers[2].inbound_nodes",
        ),
        (
            lambda d: d["layers"][2].update(config=None),
            "config.layers[2].config",
        ),
        (
            lambda d: d.update(output_layers={"out": ["add", 0, 0]}),
            "config.output_layers",
        ),
        (lambda d: d.update(layers=None), "config.layers"),
    ],
    ids=[
        "short-history",
        "bool-index",
        "shape",
        "args",
        "nodes",
        "config",
        "dict-outputs",
        "layers",
    ],
)
def test_malformed_configs_are_refused_naming_the_field(
    built: dict[str, Any], edit: Any, path: str
) -> None:
    document = json.loads(built["model"].to_json())["config"]
    with pytest.raises(KerasConfigError) as caught:
        read_model(_edit(document, edit))
    assert caught.value.path == path
    assert str(caught.value).startswith(f"{path}: expected")


def test_the_reader_imports_neither_keras_nor_numpy() -> None:
    code = (
        "import sys, bnncore_runtime.keras_config as k\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('keras', 'tensorflow', 'numpy', 'bnncore', 'pydantic')]\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert result.stdout.strip() == "[]"

"""The runtime's definition reader reads the structure with the one Keras-config
reader (``bnncore_runtime.keras_config``) and keeps its own bounds.

Oracles: the definitions are written here by hand (Keras's JSON form of a
two-layer functional model), so each graph value and each field's path is
known; the graph is compared with :func:`read_model`'s reading of the same
config, and the refusals with the paths spelled out here. No Keras is needed.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from bnncore_runtime.definition import (
    MAX_LAYERS,
    DefinitionError,
    parse_definition,
)
from bnncore_runtime.graph import TensorRef
from bnncore_runtime.keras_config import (
    MAX_ARGUMENT_DEPTH,
    KerasConfigError,
    read_call,
    read_layer,
    read_model,
)


def _tensor(layer: str, node: int = 0, index: int = 0) -> dict[str, Any]:
    return {
        "class_name": "__keras_tensor__",
        "config": {"shape": [None, 4], "dtype": "float32",
                   "keras_history": [layer, node, index]},
    }  # fmt: skip


def _entry(class_name: str, name: str, args: list, **config: Any) -> dict:
    return {
        "module": "keras.layers",
        "class_name": class_name,
        "config": {"name": name, **config},
        "name": name,
        "inbound_nodes": [{"args": args, "kwargs": {}}] if args else [],
    }


def _definition() -> dict[str, Any]:
    """x -> Dense "d" -> ReLU "r", and Add "sum" of d and r."""
    return {
        "class_name": "Functional",
        "config": {
            "name": "tiny",
            "layers": [
                _entry("InputLayer", "x", [], batch_shape=[None, 4]),
                _entry("Dense", "d", [_tensor("x")], units=4),
                _entry("ReLU", "r", [_tensor("d")]),
                _entry("Add", "sum", [[_tensor("d"), _tensor("r")]]),
            ],
            "input_layers": [["x", 0, 0]],
            "output_layers": [["sum", 0, 0]],
        },
    }


def _parse(definition: dict[str, Any]):
    return parse_definition(json.dumps(definition))


def test_the_graph_is_the_config_readers_calls() -> None:
    definition = _definition()
    name, graph = _parse(definition)
    read = read_model(definition["config"])
    expected = [
        (layer.name, [tuple(t.history) for t in call.tensors])
        for layer in read.layers
        for call in layer.calls
    ]
    assert name == "tiny"
    assert [(node.op.name, node.inputs) for node in graph.nodes] == expected
    assert graph.inputs == [tuple(h) for h in read.inputs] == [("x", 0, 0)]
    assert graph.outputs == [tuple(h) for h in read.outputs] == [("sum", 0, 0)]
    assert graph.input_shapes == [(None, 4)]
    (add,) = [node for node in graph.nodes if node.op.class_name == "Add"]
    assert add.args == [[TensorRef(("d", 0, 0), None), TensorRef(("r", 0, 0), None)]]


def _deep(depth: int) -> Any:
    value: Any = _tensor("x")
    for _ in range(depth):
        value = [value]
    return value


def test_arguments_nested_beyond_the_bound_are_refused_not_recursed() -> None:
    # Nesting far past Python's recursion limit once the JSON is read: a
    # DefinitionError naming the place, never a RecursionError.
    # (The JSON decoder refuses deeper documents itself; 600 levels pass it.)
    definition = _definition()
    definition["config"]["layers"][1]["inbound_nodes"][0]["args"] = _deep(600)
    with pytest.raises(DefinitionError) as raised:
        _parse(definition)
    message = str(raised.value)
    where = "definition.config.layers[1].inbound_nodes[0].args"
    assert message.startswith(where + "[0]" * MAX_ARGUMENT_DEPTH + ": ")
    assert f"deeper than {MAX_ARGUMENT_DEPTH} levels" in message


def test_the_argument_depth_bound_counts_levels_below_args() -> None:
    # MAX_ARGUMENT_DEPTH levels of lists, args itself the first, are read.
    node = {"args": _deep(MAX_ARGUMENT_DEPTH), "kwargs": {}}
    call = read_call(node, "n")
    assert [t.path for t in call.tensors] == ["n.args" + "[0]" * MAX_ARGUMENT_DEPTH]
    node = {"args": _deep(MAX_ARGUMENT_DEPTH + 1), "kwargs": {}}
    with pytest.raises(KerasConfigError) as raised:
        read_call(node, "n")
    assert raised.value.path == "n.args" + "[0]" * MAX_ARGUMENT_DEPTH
    deep_kwargs = {"args": [], "kwargs": {"a": _deep(MAX_ARGUMENT_DEPTH)}}
    with pytest.raises(KerasConfigError, match="deeper than"):
        read_call(deep_kwargs, "n")


def test_a_bad_entry_name_is_named_where_it_is_written() -> None:
    entry = _entry("Dense", "d", [_tensor("x")], units=4)
    entry["name"] = 3
    with pytest.raises(KerasConfigError) as raised:
        read_layer(entry, "config.layers[1]")
    assert raised.value.path == "config.layers[1].name"
    del entry["name"]
    entry["config"]["name"] = None
    with pytest.raises(KerasConfigError) as raised:
        read_layer(entry, "config.layers[1]")
    assert raised.value.path == "config.layers[1].config.name"


def _edited(change) -> dict[str, Any]:
    definition = copy.deepcopy(_definition())
    change(definition["config"])
    return definition


def _history(config: dict[str, Any], history: list) -> None:
    config["layers"][2]["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = (
        history
    )


BOUNDS = {
    # A tensor index is bounded: the graph declares every output up to it.
    "tensor index": (
        lambda c: _history(c, ["d", 0, MAX_LAYERS]),
        "definition.config.layers[2].inbound_nodes[0].args[0].config.keras_history",
        f"indexes below {MAX_LAYERS:,}",
    ),
    "call index": (
        lambda c: _history(c, ["d", 10**12, 0]),
        "definition.config.layers[2].inbound_nodes[0].args[0].config.keras_history",
        f"indexes below {MAX_LAYERS:,}",
    ),
    "output index": (
        lambda c: c.__setitem__("output_layers", [["sum", 0, 10**9]]),
        "definition.config.output_layers[0]",
        f"indexes below {MAX_LAYERS:,}",
    ),
    "layer count": (
        lambda c: c["layers"].extend(
            _entry("ReLU", f"extra{i}", []) for i in range(MAX_LAYERS)
        ),
        "definition.config.layers",
        f"{MAX_LAYERS + 4:,} layers exceed {MAX_LAYERS:,}",
    ),
    "calls": (
        lambda c: c["layers"][2].__setitem__(
            "inbound_nodes", [{"args": [_tensor("d")]}] * (MAX_LAYERS + 1)
        ),
        "definition.config.layers[2]",
        f"more than {MAX_LAYERS:,} layer calls",
    ),
    "keyword argument": (
        lambda c: c["layers"][2]["inbound_nodes"][0].__setitem__(
            "kwargs", {"training": True}
        ),
        "definition.config.layers[2].inbound_nodes[0].kwargs",
        "unsupported keyword argument training=True",
    ),
    "string argument": (
        lambda c: c["layers"][2]["inbound_nodes"][0]["args"].append("code"),
        "definition.config.layers[2].inbound_nodes[0].args[1]",
        "unsupported call argument 'code'",
    ),
    "nested model": (
        lambda c: c["layers"][2].__setitem__("class_name", "Sequential"),
        "definition layer 'r'",
        "nested models (Sequential) are not read",
    ),
    "class name": (
        lambda c: c["layers"][2].__setitem__("class_name", ["ReLU"]),
        "definition.config.layers[2].class_name",
        "received ['ReLU']",
    ),
    "duplicate name": (
        lambda c: c["layers"][2]["config"].__setitem__("name", "d"),
        "definition.config.layers",
        "two layers have the same name",
    ),
}


@pytest.mark.parametrize("case", sorted(BOUNDS))
def test_the_runtimes_own_bounds_and_refusals_name_the_field(case: str) -> None:
    change, path, message = BOUNDS[case]
    with pytest.raises(DefinitionError) as raised:
        _parse(_edited(change))
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


def test_the_weights_name_is_the_config_name() -> None:
    # The export's weights are keyed by config.name; a Functional entry's own
    # "name" (which Keras writes equal) does not rename the layer.
    definition = _edited(lambda c: c["layers"][1].__setitem__("name", "other"))
    _, graph = _parse(definition)
    assert [node.op.name for node in graph.nodes] == ["d", "r", "sum"]

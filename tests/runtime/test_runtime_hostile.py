"""Hostile export directories: the runtime refuses them as strictly as the
export reader, with the same messages, and never evaluates anything.

The corrupted weights files are the export tests' own table
(``tests/bnncore/export/test_export_errors.py``), applied to a directory
whose definition is the small model those files belong to.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import bnncore as lq
import bnncore_runtime
from bnncore_runtime import DefinitionError, UnsupportedLayerError, WeightsFileError

EXPORT_TESTS = Path(__file__).parents[1] / "bnncore" / "export"


def _export_error_cases():
    if str(EXPORT_TESTS) not in sys.path:
        sys.path.insert(0, str(EXPORT_TESTS))  # its export_models helper
    spec = importlib.util.spec_from_file_location(
        "export_error_cases", EXPORT_TESTS / "test_export_errors.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = _export_error_cases()


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory) -> tuple[dict, bytes]:
    model = CASES.randomize(CASES.tiny(), seed=2)
    return lq.export.to_definition(model), lq.export.to_bytes(model)


def _write(directory: Path, definition: dict | str, weights: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    text = definition if isinstance(definition, str) else json.dumps(definition)
    (directory / "definition.json").write_text(text)
    (directory / "weights.safetensors").write_bytes(weights)
    return directory


def test_the_untouched_export_loads(tiny_export, tmp_path):
    definition, weights = tiny_export
    model = bnncore_runtime.load(_write(tmp_path, definition, weights))
    assert model.outputs[0].shape == (None, 3)
    in_memory = bnncore_runtime.from_bytes(json.dumps(definition).encode(), weights)
    x = np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32)
    np.testing.assert_array_equal(in_memory.predict(x), model.predict(x))


@pytest.mark.parametrize("case", sorted(CASES.CORRUPTIONS))
def test_corrupted_weights_are_refused_as_the_export_reader_refuses_them(
    case, tiny_export, tmp_path
):
    mutate, message = CASES.CORRUPTIONS[case]
    definition, weights = tiny_export
    bad = mutate(weights)
    with pytest.raises(WeightsFileError) as by_export:
        lq.export.read_weights(bad)
    with pytest.raises(WeightsFileError) as by_runtime:
        bnncore_runtime.load(_write(tmp_path, definition, bad))
    assert message in str(by_runtime.value)
    assert str(by_runtime.value) == str(by_export.value)
    with pytest.raises(WeightsFileError) as from_memory:
        bnncore_runtime.from_bytes(json.dumps(definition), bad)
    assert str(from_memory.value) == str(by_export.value)


def test_limits_are_enforced(tiny_export, tmp_path):
    directory = _write(tmp_path, *tiny_export)
    with pytest.raises(WeightsFileError, match="exceeds the limit 100"):
        bnncore_runtime.load(directory, max_bytes=100)
    with pytest.raises(
        WeightsFileError, match=r"header: length .* exceeds the limit 64"
    ):
        bnncore_runtime.load(directory, max_header_bytes=64)
    with pytest.raises(WeightsFileError, match="more than 10 values"):
        bnncore_runtime.load(directory, max_elements=10)
    definition, weights = tiny_export
    with pytest.raises(WeightsFileError, match="exceeds the limit 100"):
        bnncore_runtime.from_bytes(json.dumps(definition), weights, max_bytes=100)
    with pytest.raises(TypeError, match="definition of type dict"):
        bnncore_runtime.from_bytes(definition, weights)  # type: ignore[arg-type]


def test_an_oversized_definition_is_refused_before_it_is_read(
    tiny_export, tmp_path, monkeypatch
):
    monkeypatch.setattr(bnncore_runtime.model, "MAX_DEFINITION_BYTES", 100)
    with pytest.raises(DefinitionError, match=r"definition.json: .* the limit 100"):
        bnncore_runtime.load(_write(tmp_path, *tiny_export))


def _layer(definition: dict, name: str) -> dict:
    return next(
        x for x in definition["config"]["layers"] if x["config"]["name"] == name
    )


def _edit(change):
    def apply(definition: dict) -> dict:
        edited = copy.deepcopy(definition)
        change(edited)
        return edited

    return apply


def _set(name: str, key: str, value):
    return _edit(lambda d: _layer(d, name)["config"].__setitem__(key, value))


def _history(name: str, source: str):
    def change(d: dict) -> None:
        _layer(d, name)["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = [
            source,
            0,
            0,
        ]

    return _edit(change)


def _lambda(d: dict) -> None:
    layer = _layer(d, "bn")
    layer["class_name"] = "Lambda"
    code = "4wEAAAAAAAAAAAAAAAEAAAADAAAAQwAAAHMIAAAAdACDAFMAKQFOKQHaBGV4aXQpAdoBeKkA"
    layer["config"]["function"] = {
        "class_name": "__lambda__",
        "config": {"code": code, "defaults": None, "closure": None},
    }


def _bad_input_shape(d: dict) -> None:
    (layer,) = [x for x in d["config"]["layers"] if x["class_name"] == "InputLayer"]
    layer["config"]["batch_shape"] = [None, -5]


def _drop_dense(d: dict) -> None:
    layers = d["config"]["layers"]
    layers.remove(_layer(d, "d"))
    d["config"]["output_layers"] = [["bn", 0, 0]]


DEFINITION_CASES = {
    "not JSON": (lambda d: "{oops", DefinitionError, "not valid JSON"),
    "deeply nested": (lambda d: "[" * 100_000, DefinitionError, "not valid JSON"),
    "duplicate key": (
        lambda d: json.dumps(d)[:-1] + ', "config": {}}',
        DefinitionError,
        "duplicate key",
    ),
    "NaN": (
        lambda d: json.dumps(_set("d", "units", float("nan"))(d)),
        DefinitionError,
        "NaN is not allowed",
    ),
    "subclassed model": (
        _edit(lambda d: d.__setitem__("class_name", "MyModel")),
        DefinitionError,
        "allowed: 'Sequential', 'Functional'",
    ),
    "code in a Lambda": (_edit(_lambda), UnsupportedLayerError, "'bn' (Lambda)"),
    "unknown layer class": (
        _edit(lambda d: _layer(d, "bn").__setitem__("class_name", "Evil")),
        UnsupportedLayerError,
        "layer 'bn' (Evil)",
    ),
    "units not matching the file": (
        _set("d", "units", 5),
        WeightsFileError,
        "d/kernel: shape [4, 3] in the file, [4, 5]",
    ),
    "units not an integer": (_set("d", "units", "many"), DefinitionError, "units"),
    "reads a missing layer": (
        _history("d", "nowhere"),
        DefinitionError,
        "no layer named 'nowhere'",
    ),
    "a cycle": (_history("bn", "d"), DefinitionError, "do not form a graph"),
    "bad input shape": (
        _edit(_bad_input_shape),
        DefinitionError,
        "batch_shape",
    ),
    "tensors no layer reads": (
        _edit(_drop_dense),
        WeightsFileError,
        "tensors no layer of 'tiny' reads",
    ),
    "a renamed layer still read": (
        _set("bn", "name", "bn2"),
        DefinitionError,
        "no layer named 'bn'",
    ),
}


@pytest.mark.parametrize("case", sorted(DEFINITION_CASES))
def test_hostile_definitions_are_refused_with_the_field_named(
    case, tiny_export, tmp_path
):
    change, error, message = DEFINITION_CASES[case]
    definition, weights = tiny_export
    with pytest.raises(error) as raised:
        bnncore_runtime.load(_write(tmp_path, change(definition), weights))
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_a_missing_weight_is_named(tiny_export, tmp_path):
    definition, weights = tiny_export
    renamed = copy.deepcopy(definition)
    _layer(renamed, "d")["config"]["name"] = "head"
    json_text = json.dumps(renamed).replace('["d", 0, 0]', '["head", 0, 0]')
    with pytest.raises(WeightsFileError, match="head/kernel: missing"):
        bnncore_runtime.load(_write(tmp_path, json_text, weights))

"""Malicious definitions: each gets a 4xx, nothing is deserialized, built or written.

Every payload is sent through the HTTP API while Keras's deserialization entry
points, ``pickle``/``marshal`` loading and the constructors of dangerous layers
are replaced by spies. The test then proves that no spy was called, that no
model was built, that the canary file the payloads aim at does not exist and
that no file outside the data directory changed.
"""

from __future__ import annotations

import json
import marshal
import pickle
from pathlib import Path
from typing import Any

import keras
import pytest
from service_samples import MNIST


def _keras_json_with(layer: dict[str, Any]) -> dict[str, Any]:
    """A real ``to_json`` document of a small model with one layer replaced."""
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(2, name="d")], name="m"
    )
    document = json.loads(model.to_json())
    document["config"]["layers"][1] = layer
    return document


def _payloads(canary: Path) -> list[tuple[str, str, Any]]:
    """(id, path, body) of every malicious request."""
    target = str(canary)
    # A genuine Keras Lambda serialization: its marshalled bytecode writes the
    # canary when Keras deserializes it with safe_mode=False.
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Lambda(
                lambda x: (Path(target).write_text("pwned"), x)[1], name="evil"
            ),
        ]
    )
    lambda_json = json.loads(model.to_json())
    keras_layer = {"module": "keras.layers", "registered_name": None}
    summary = "/v2/summary"
    return [
        ("keras-json-lambda-bytecode", summary, lambda_json),
        (
            "register-keras-json-lambda",
            "/v2/models",
            {"name": "x", "definition": lambda_json},
        ),
        (
            "sequential-lambda",
            summary,
            {
                "input_shape": [4],
                "layers": [{"type": "Lambda", "function": f"open('{target}', 'w')"}],
            },
        ),
        (
            "tfsm-layer",
            summary,
            _keras_json_with(
                {
                    **keras_layer,
                    "class_name": "TFSMLayer",
                    "config": {
                        "filepath": str(canary.parent),
                        "call_endpoint": "serve",
                    },
                }
            ),
        ),
        (
            "string-lookup-vocabulary-file",
            summary,
            _keras_json_with(
                {
                    **keras_layer,
                    "class_name": "StringLookup",
                    "config": {"vocabulary": target},
                }
            ),
        ),
        (
            "module-os-system",
            summary,
            _keras_json_with(
                {
                    "module": "os",
                    "class_name": "system",
                    "registered_name": "os>system",
                    "config": {"command": f"touch {target}"},
                }
            ),
        ),
        (
            "dense-claimed-by-other-module",
            summary,
            _keras_json_with(
                {
                    "module": "evil.layers",
                    "class_name": "Dense",
                    "registered_name": None,
                    "config": {"units": 2},
                }
            ),
        ),
        (
            "bnncore-layer-registered-elsewhere",
            summary,
            _keras_json_with(
                {
                    "module": "bnncore.layers.quantized",
                    "class_name": "QuantDense",
                    "registered_name": "evil>QuantDense",
                    "config": {"units": 2},
                }
            ),
        ),
        (
            "activation-function-by-dotted-path",
            summary,
            _keras_json_with(
                {
                    **keras_layer,
                    "class_name": "Dense",
                    "config": {
                        "units": 2,
                        "activation": {
                            "module": "builtins",
                            "class_name": "function",
                            "config": "os>system",
                            "registered_name": "function",
                        },
                    },
                }
            ),
        ),
        (
            "initializer-from-subprocess",
            summary,
            _keras_json_with(
                {
                    **keras_layer,
                    "class_name": "Dense",
                    "config": {
                        "units": 2,
                        "kernel_initializer": {
                            "module": "subprocess",
                            "class_name": "Popen",
                            "config": {"args": ["touch", target]},
                            "registered_name": None,
                        },
                    },
                }
            ),
        ),
        (
            "model-module-os",
            summary,
            {
                **_keras_json_with(
                    {**keras_layer, "class_name": "Dense", "config": {"units": 2}}
                ),
                "module": "os",
                "class_name": "system",
            },
        ),
        (
            "activation-dotted-string",
            summary,
            {
                "input_shape": [4],
                "layers": [{"type": "Dense", "units": 2, "activation": "os.system"}],
            },
        ),
        (
            "quantizer-with-module",
            summary,
            {
                "input_shape": [4],
                "layers": [
                    {
                        "type": "QuantDense",
                        "units": 2,
                        "kernel_quantizer": {
                            "type": "SteSign",
                            "module": "os",
                            "registered_name": "os>system",
                        },
                    }
                ],
            },
        ),
        (
            "layer-with-registered-name",
            summary,
            {
                "input_shape": [4],
                "layers": [
                    {"type": "Dense", "units": 2, "registered_name": "evil>Dense"}
                ],
            },
        ),
        ("zoo-with-weights-path", summary, {"zoo": "QuickNet", "weights": target}),
        ("dunder-keys", summary, {**MNIST, "__reduce__": ["os.system", ["id"]]}),
        (
            "name-path-traversal",
            "/v2/models",
            {"name": "../../outside", "definition": MNIST},
        ),
        ("deep-nesting", summary, b"[" * 100_000 + b"]" * 100_000),
        ("pickle-body", summary, pickle.dumps({"input_shape": [4]})),
    ]


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "canary.txt"
    path.parent.mkdir()
    (path.parent / "keep.txt").write_text("untouched")
    return path


@pytest.fixture
def payloads(canary: Path) -> list[tuple[str, str, Any]]:
    made = _payloads(canary)  # made before the spies are installed
    # Keras traced the Lambda while making its JSON, which ran it once here.
    canary.unlink(missing_ok=True)
    return made


@pytest.fixture
def spies(payloads: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def spy(name: str) -> Any:
        def called(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"{name} must never be called")

        return called

    for owner, attribute in [
        (keras.saving, "deserialize_keras_object"),
        (keras.saving, "load_model"),
        (keras.models, "model_from_json"),
        (keras.models, "load_model"),
        (keras.layers, "deserialize"),
        (pickle, "loads"),
        (pickle, "load"),
        (marshal, "loads"),
    ]:
        monkeypatch.setattr(owner, attribute, spy(f"{owner.__name__}.{attribute}"))
    for cls in (keras.Model, keras.Sequential, keras.layers.Layer):
        monkeypatch.setattr(cls, "from_config", classmethod(spy(f"{cls}.from_config")))
    for cls in (keras.layers.Lambda, keras.layers.TFSMLayer, keras.layers.StringLookup):
        monkeypatch.setattr(cls, "__init__", spy(f"{cls.__name__}.__init__"))
    return calls


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in root.rglob("*")
        if skip not in path.parents and path != skip
    }


def test_malicious_definitions_are_refused_and_nothing_runs(
    client: Any,
    settings: Any,
    tmp_path: Path,
    canary: Path,
    payloads: list[tuple[str, str, Any]],
    spies: list[str],
) -> None:
    data_dir = Path(settings.data_dir).resolve()
    before = _snapshot(tmp_path, data_dir)
    for case, path, body in payloads:
        if isinstance(body, bytes):
            response = client.post(
                path, content=body, headers={"content-type": "application/json"}
            )
        else:
            response = client.post(path, json=body)
        assert 400 <= response.status_code < 500, (case, response.text)
        assert list(response.json()) == ["error"], case
    assert spies == []
    assert client.app.state.runtime.builds == 0
    assert not canary.exists()
    assert _snapshot(tmp_path, data_dir) == before
    assert client.get("/v2/models").json()["total"] == 0


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("keras-json-lambda-bytecode", "'Lambda' is not an allowed layer type"),
        ("tfsm-layer", "config.layers[1].class_name: 'TFSMLayer' is not an allowed"),
        ("module-os-system", "config.layers[1].class_name"),
        ("dense-claimed-by-other-module", "config.layers[1].module"),
        ("bnncore-layer-registered-elsewhere", "config.layers[1].registered_name"),
        ("activation-function-by-dotted-path", "activation.config"),
        ("initializer-from-subprocess", "kernel_initializer.module"),
        ("model-module-os", "module: 'os' is not a Keras model module"),
        ("activation-dotted-string", "definition.layers[0].activation"),
        ("quantizer-with-module", "kernel_quantizer.module: Extra inputs"),
        ("zoo-with-weights-path", "definition.weights: Extra inputs"),
        ("name-path-traversal", "name: String should match pattern"),
    ],
)
def test_refusals_name_the_offending_field(
    client: Any, payloads: list[tuple[str, str, Any]], case: str, needle: str
) -> None:
    path, body = {c: (p, b) for c, p, b in payloads}[case]
    response = client.post(path, json=body)
    assert response.status_code == 422
    assert needle in response.json()["error"]


def test_the_spies_see_a_deserialization_attempt(
    payloads: list[tuple[str, str, Any]], spies: list[str]
) -> None:
    lambda_json = {c: b for c, _, b in payloads}["keras-json-lambda-bytecode"]
    with pytest.raises(AssertionError):
        keras.models.model_from_json(json.dumps(lambda_json))
    with pytest.raises(AssertionError):
        pickle.loads(pickle.dumps(1))
    assert len(spies) == 2 and spies[0].endswith("model_from_json")

"""Shared definitions and helpers of the inference tests (no tests here)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

BINARY = {
    "input_quantizer": "ste_sign",
    "kernel_quantizer": "ste_sign",
    "kernel_constraint": "weight_clip",
}

SEQ: dict[str, Any] = {
    "name": "seq",
    "input_shape": [6, 6, 2],
    "layers": [
        {"type": "QuantConv2D", "filters": 8, "kernel_size": 3, **BINARY},
        {"type": "BatchNormalization"},
        {"type": "Flatten"},
        {"type": "QuantDense", "units": 4, **BINARY},
    ],
}
"""A Sequential BNN (binary convolution and dense: qualifies for the packed
engine)."""

RES: dict[str, Any] = {
    "name": "res",
    "layers": [
        {"type": "Input", "name": "image", "shape": [6, 6, 4]},
        {"type": "Input", "name": "extra", "shape": [3]},
        {
            "type": "QuantConv2D",
            "name": "conv",
            "inputs": ["image"],
            "filters": 4,
            "kernel_size": 3,
            "padding": "same",
            **BINARY,
        },
        {"type": "BatchNormalization", "name": "bn", "inputs": ["conv"]},
        {"type": "Add", "name": "shortcut", "inputs": ["image", "bn"]},
        {"type": "GlobalAveragePooling2D", "name": "pool", "inputs": ["shortcut"]},
        {"type": "Dense", "name": "dense", "inputs": ["pool"], "units": 3},
        {"type": "Add", "name": "logits", "inputs": ["dense", "extra"]},
    ],
    "outputs": ["logits", "pool"],
}
"""A graph with a residual connection, two inputs and two outputs."""

FLOAT: dict[str, Any] = {
    "name": "float",
    "input_shape": [4],
    "layers": [{"type": "Dense", "units": 3}, {"type": "Dense", "units": 2}],
}
"""No binary layer: it does not qualify for the packed engine."""

NAN: dict[str, Any] = {
    "name": "nan",
    "layers": [
        {"type": "Input", "name": "x", "shape": [2]},
        {
            "type": "Activation",
            "name": "exp",
            "inputs": ["x"],
            "activation": "exponential",
        },
        {
            "type": "Dense",
            "name": "diff",
            "inputs": ["exp"],
            "units": 1,
            "use_bias": False,
        },
    ],
    "outputs": ["diff", "exp"],
}
"""exp overflows to inf for large inputs; diff = exp(a) - exp(b) is then NaN."""


def randomize(model: keras.Model, seed: int) -> None:
    """Random weights everywhere; batch norms get random signed gammas, random
    betas and means and positive variances (so folding is not trivial)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        new = [rng.normal(0.0, 1.0, w.shape).astype(np.float32) for w in weights]
        if isinstance(layer, keras.layers.BatchNormalization):
            new[-1] = rng.uniform(0.2, 2.0, weights[-1].shape).astype(np.float32)
        layer.set_weights(new)


def register(client: Any, name: str, definition: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v2/models", json={"name": name, "definition": definition})
    assert response.status_code in (200, 201), response.text
    return response.json()


def served_model(client: Any, content_hash: str) -> keras.Model:
    """The Keras model the service built (registration builds it), in-process."""
    built = client.app.state.runtime.cache.get(content_hash)
    assert built is not None
    return built.model


def register_with_weights(
    client: Any, name: str, definition: dict[str, Any], seed: int
) -> keras.Model:
    """Registers ``definition`` as ``name`` on a full replica, gives its
    model random weights (:func:`randomize`) and uploads them as version 1's
    bnncore weights file; the model, with those weights."""
    import bnncore as lq

    created = register(client, name, definition)
    model = served_model(client, created["content_hash"])
    randomize(model, seed)
    put = client.put(
        f"/v2/models/{name}/versions/1/weights",
        content=lq.export.to_bytes(model),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert put.status_code in (200, 201), put.text
    return model


def tensor(
    name: str, array: np.ndarray, datatype: str, nested: bool = False
) -> dict[str, Any]:
    """An OIP input tensor (flat data unless ``nested``)."""
    data = array.tolist() if nested else array.reshape(-1).tolist()
    return {
        "name": name,
        "shape": list(array.shape),
        "datatype": datatype,
        "data": data,
    }


def output(body: dict[str, Any], name: str) -> np.ndarray:
    """An OIP response output as a float32 array of its shape."""
    (item,) = [o for o in body["outputs"] if o["name"] == name]
    assert item["datatype"] == "FP32"
    return np.asarray(item["data"], dtype=np.float32).reshape(item["shape"])


def assert_engine_close(got: np.ndarray, ref: np.ndarray, engine: str) -> None:
    """Keras: bit-equal to ``model.predict`` of the same served model on the same
    rows in this process (the service runs ``predict_on_batch``: the same
    TensorFlow kernels on whatever CPU, never a value from another machine);
    packed engine: equal up to float32 accumulation as docs/engine.md states
    (|got - ref| <= 1e-5 * max(|ref|, 1))."""
    assert got.shape == ref.shape, (got.shape, ref.shape)
    if engine == "keras":
        np.testing.assert_array_equal(got, ref)
    else:
        scale = max(float(np.max(np.abs(ref))), 1.0)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * scale)

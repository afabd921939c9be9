"""bnncore.client against a real service: uvicorn on a loopback port.

The service runs as a subprocess (``uvicorn bnncore_service.main:app``, the Makefile's
entry point) with API keys set; the oracle is the trained model in this
process.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator

import keras
import numpy as np
import pytest

import bnncore as lq
from bnncore.client import Client, ClientError, push

logging.getLogger("bnncore").setLevel(logging.ERROR)

ADMIN, READER = "admin-5d1f0c2a9e", "reader-77b3a1c4d2"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, start_service) -> Iterator[str]:
    server = start_service(
        tmp_path_factory.mktemp("client") / "data",
        env={"BNN_API_KEYS": f"{ADMIN},{READER}:read"},
        command="uvicorn",
        timeout=90,
    )
    assert Client(server.base, timeout=2).live()
    yield server.base
    server.stop()


def small_bnn(seed: int) -> keras.Model:
    binary = {"kernel_quantizer": "ste_sign", "kernel_constraint": "weight_clip"}
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            lq.layers.QuantConv2D(4, 3, use_bias=False, name="conv1", **binary),
            keras.layers.BatchNormalization(name="bn1"),
            keras.layers.Flatten(name="flat"),
            lq.layers.QuantDense(3, input_quantizer="ste_sign", name="d1", **binary),
            keras.layers.Activation("softmax", name="softmax"),
        ],
        name="bnn",
    )
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        low = 0.3 if variable.path.endswith(("moving_variance", "gamma")) else -1.0
        variable.assign(rng.uniform(low, 2.0, tuple(variable.shape)).astype("f4"))
    return model


def test_push_then_infer_equals_the_trained_model(base_url: str) -> None:
    model = small_bnn(seed=1)
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 2)).astype("float32")
    version = push(model, "bnn", base_url, api_key=ADMIN)
    assert version == 1
    client = Client(base_url, api_key=ADMIN)
    meta = client.metadata("bnn", version)
    assert meta["weights"] == "uploaded"
    # (to_bytes is not byte-reproducible: safetensors orders the metadata
    # map arbitrarily, so the sha256 is checked on one upload's bytes.)
    data = lq.export.to_bytes(model)
    uploaded = client.upload_weights("bnn", version, data)
    assert uploaded["sha256"] == hashlib.sha256(data).hexdigest()
    assert client.metadata("bnn", version)["weights_sha256"] == uploaded["sha256"]
    assert client.ready("bnn") and client.ready("bnn", version)
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    result = client.infer("bnn", x, version=version)
    assert isinstance(result, np.ndarray) and result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e-7)
    input_name = meta["inputs"][0]["name"]
    by_name = client.infer("bnn", {input_name: x[:1]})
    assert list(by_name) == [meta["outputs"][0]["name"]]
    np.testing.assert_allclose(
        by_name[meta["outputs"][0]["name"]], expected[:1], rtol=1e-6, atol=1e-7
    )
    report = client.summary("bnn")
    assert report["totals"]["params"] == lq.models.profile(model).totals.params
    assert "conv1" in client.summary("bnn", version, format="text")

    # Training on and pushing again keeps the version and replaces the weights.
    for variable, new in zip(model.weights, small_bnn(seed=2).weights, strict=True):
        variable.assign(new)
    assert push(model, "bnn", base_url, api_key=ADMIN) == version
    retrained = keras.ops.convert_to_numpy(model(x, training=False))
    assert not np.allclose(retrained, expected)
    np.testing.assert_allclose(client.infer("bnn", x), retrained, rtol=1e-6, atol=1e-7)


def test_errors_carry_the_status_and_the_server_message(
    base_url: str, unused_port
) -> None:
    reader = Client(base_url, api_key=READER)
    with pytest.raises(ClientError) as caught:
        reader.register("other", {"input_shape": [2], "layers": []})
    assert caught.value.status == 403
    assert "lacks the 'admin' scope" in caught.value.message
    with pytest.raises(ClientError) as caught:
        Client(base_url, api_key="wrong").models()
    assert caught.value.status == 401 and "not valid" in str(caught.value)
    with pytest.raises(ClientError) as caught:
        Client(base_url).metadata("bnn")  # no key at all
    assert caught.value.status == 401
    admin = Client(base_url, api_key=ADMIN)
    with pytest.raises(ClientError) as caught:
        admin.register("bad", {"input_shape": [2], "layers": [{"type": "Nope"}]})
    assert caught.value.status == 422
    assert "definition.layers[0]: unknown or missing layer type" in str(caught.value)
    with pytest.raises(ClientError) as caught:
        admin.upload_weights("bnn", 1, b"not a safetensors file")
    assert caught.value.status == 400 and "weights file" in caught.value.message
    with pytest.raises(ClientError) as caught:
        admin.metadata("missing")
    assert caught.value.status == 404 and "'missing'" in caught.value.message
    with pytest.raises(ClientError) as caught:
        Client(f"http://127.0.0.1:{unused_port()}", timeout=5).models()
    assert caught.value.status is None  # nothing listens there
    with pytest.raises(ValueError, match="base_url"):
        Client("127.0.0.1:8000")

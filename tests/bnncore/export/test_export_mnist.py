"""Export of Larq's MNIST BNN: file size, sign bits, folded BatchNorm, round trip."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
import safetensors.numpy
from export_models import mnist_bnn

import bnncore as lq

KERNELS = {  # name → shape, written out from the architecture
    "conv1/kernel": (3, 3, 1, 32),
    "conv2/kernel": (3, 3, 32, 64),
    "conv3/kernel": (3, 3, 64, 64),
    "dense1/kernel": (576, 64),
    "dense2/kernel": (64, 10),
}
CHANNELS = {"bn1": 32, "bn2": 64, "bn3": 64, "bn4": 64, "bn5": 10}
HEADER_ALLOWANCE = 16 * 1024  # the documented fixed allowance for the header


def _header_length(data: bytes) -> int:
    return int.from_bytes(data[:8], "little")


def assert_reloaded_equal(
    reloaded: keras.Model, original: keras.Model, digits: np.ndarray
) -> None:
    """Bit for bit on any CPU: the file holds each batch norm's inv and offset
    as the layer computed them here (``batchnorm.fold`` runs the layer's own
    operation), and ``batchnorm.unfold`` searched variables for which the
    reloaded layer's own operation, on its own channels and this CPU, gives
    them again; every other operation is the same TensorFlow op on the same
    values in this process."""
    np.testing.assert_array_equal(
        np.asarray(reloaded(digits)), np.asarray(original(digits))
    )


def test_file_size_is_the_profile_memory(mnist_model: keras.Model) -> None:
    data = lq.export.to_bytes(mnist_model)
    payload = len(data) - 8 - _header_length(data)
    # By hand: 1 bit per kernel weight, rounded up to a byte per kernel, plus a
    # float32 scale and offset per BatchNorm channel.
    kernel_bytes = sum(math.ceil(math.prod(s) / 8) for s in KERNELS.values())
    bn_bytes = sum(2 * 4 * c for c in CHANNELS.values())
    assert kernel_bytes == 11636 and bn_bytes == 1872
    assert payload == kernel_bytes + bn_bytes
    memory = lq.models.profile(mnist_model).totals.memory_bytes
    assert abs(payload - memory) <= 0.02 * memory
    assert len(data) <= 1.02 * memory + HEADER_ALLOWANCE


def test_kernel_bytes_are_the_signs_of_the_latent_weights(
    mnist_model: keras.Model,
) -> None:
    data = lq.export.to_bytes(mnist_model)
    raw = safetensors.numpy.load(data)  # the container only: no bnncore decoding
    layers = {layer.name: layer for layer in mnist_model.layers}
    for name, shape in KERNELS.items():
        latent = keras.ops.convert_to_numpy(layers[name.split("/")[0]].kernel)
        assert latent.shape == shape
        n = latent.size
        assert raw[name].dtype == np.uint8 and raw[name].shape == (math.ceil(n / 8),)
        bits = np.unpackbits(raw[name], bitorder="little")
        expected = np.where(latent.reshape(-1) < 0, 1, 0)  # sign(0) = +1 → bit 0
        np.testing.assert_array_equal(bits[:n], expected)
        assert not bits[n:].any()  # padding bits are zero
        assert (latent == 0).any() or name == "dense2/kernel"  # zeros were covered


def test_batchnorm_is_stored_as_scale_and_offset(mnist_model: keras.Model) -> None:
    raw = safetensors.numpy.load(lq.export.to_bytes(mnist_model))
    assert not any(key.endswith(("/beta", "/moving_mean")) for key in raw)
    for layer_name, channels in CHANNELS.items():
        bn = mnist_model.get_layer(layer_name)
        beta, mean, var = (
            np.float64(keras.ops.convert_to_numpy(v))
            for v in (bn.beta, bn.moving_mean, bn.moving_variance)
        )
        scale = 1.0 / np.sqrt(var + bn.epsilon)  # no gamma: scale=False
        offset = beta - mean * scale
        assert raw[f"{layer_name}/scale"].shape == (channels,)
        np.testing.assert_allclose(raw[f"{layer_name}/scale"], scale, rtol=1e-6)
        np.testing.assert_allclose(
            raw[f"{layer_name}/offset"], offset, rtol=1e-5, atol=1e-6
        )


def test_metadata_describes_every_tensor(mnist_model: keras.Model) -> None:
    data = lq.export.to_bytes(mnist_model)
    header = json.loads(data[8 : 8 + _header_length(data)])
    metadata = header.pop("__metadata__")
    assert metadata["format"] == "bnncore.weights"
    assert metadata["format_version"] == "2"
    encodings = json.loads(metadata["encodings"])
    assert set(encodings) == set(header)
    for name, shape in KERNELS.items():
        assert encodings[name] == {
            "encoding": "sign_bits",
            "shape": list(shape),
            "bit_order": "little",
        }
    assert encodings["bn1/scale"]["variables"] == {
        "gamma": None,
        "beta": "bn1/beta",
        "moving_mean": "bn1/moving_mean",
        "moving_variance": "bn1/moving_variance",
    }
    assert encodings["bn1/scale"]["epsilon"] == pytest.approx(1e-3)


def test_round_trip_into_a_fresh_model_predicts_the_same(
    mnist_model: keras.Model, digits: np.ndarray
) -> None:
    fresh = mnist_bnn()
    lq.export.load_weights(fresh, lq.export.to_bytes(mnist_model))
    assert_reloaded_equal(fresh, mnist_model, digits)
    # The latent kernels are now exactly the signs of the original ones.
    for name in KERNELS:
        layer = name.split("/")[0]
        original = keras.ops.convert_to_numpy(mnist_model.get_layer(layer).kernel)
        loaded = keras.ops.convert_to_numpy(fresh.get_layer(layer).kernel)
        np.testing.assert_array_equal(loaded, np.where(original < 0, -1.0, 1.0))


def test_round_trip_through_the_definition(
    mnist_model: keras.Model, digits: np.ndarray, tmp_path
) -> None:
    written = lq.export.save(mnist_model, tmp_path / "out")
    assert written.weights.stat().st_size == written.weights_bytes
    definition = json.loads(written.definition.read_text())
    keras_json = json.loads(mnist_model.to_json())
    keras_json.pop("compile_config")
    assert definition == keras_json
    rebuilt = keras.models.model_from_json(json.dumps(definition))
    lq.export.load_weights(rebuilt, written.weights)
    assert_reloaded_equal(rebuilt, mnist_model, digits)
    loaded = lq.export.load(tmp_path / "out")
    assert_reloaded_equal(loaded, mnist_model, digits)


def test_the_service_accepts_the_definition_and_the_weights(
    mnist_model: keras.Model, digits: np.ndarray
) -> None:
    keras_json = pytest.importorskip("bnncore_service.keras_json")
    builder = pytest.importorskip("bnncore_service.builder")
    config = pytest.importorskip("bnncore_service.config")
    graph = keras_json.translate(lq.export.to_definition(mnist_model))
    settings = config.Settings()
    served = builder.build(builder.plan(graph, settings), settings)
    lq.export.load_weights(served, lq.export.to_bytes(mnist_model))
    assert_reloaded_equal(served, mnist_model, digits)


def test_the_same_model_gives_the_same_bytes_every_time(
    mnist_model: keras.Model,
) -> None:
    # safetensors writes its metadata map in hash order, which varies between
    # calls; the file must not (the service keys weights by their sha256).
    files = {lq.export.to_bytes(mnist_model) for _ in range(12)}
    assert len(files) == 1
    data = files.pop()
    n = _header_length(data)
    header = json.loads(data[8 : 8 + n])
    assert next(iter(header)) == "__metadata__"
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])
    # Still a safetensors file the reference reader accepts, tensors intact.
    assert set(safetensors.numpy.load(data)) == set(header) - {"__metadata__"}


def test_definition_of_a_compiled_model_leaves_the_training_configuration_out(
    tmp_path,
) -> None:
    model = mnist_bnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    keras_json = json.loads(model.to_json())
    assert keras_json["compile_config"]  # Keras writes the optimizer and loss
    definition = lq.export.to_definition(model)
    assert "compile_config" not in definition
    assert definition == {k: v for k, v in keras_json.items() if k != "compile_config"}
    lq.export.save(model, tmp_path)
    assert json.loads((tmp_path / "definition.json").read_text()) == definition


def test_definition_leaves_the_flip_ratio_metrics_out() -> None:
    """Training bookkeeping, like compile_config: the service refuses it, and
    the definition is otherwise the model's own JSON."""
    with lq.context.metrics_scope(["flip_ratio"]):
        model = mnist_bnn()
    keras_json = json.loads(model.to_json())
    keras_json.pop("compile_config", None)
    layers = keras_json["config"]["layers"]
    with_metrics = [entry for entry in layers if "flip_ratio_names" in entry["config"]]
    assert with_metrics  # the quantized layers with a kernel quantizer
    for entry in with_metrics:
        entry["config"].pop("flip_ratio_names")
        entry["config"]["kernel_quantizer"]["config"].pop("metrics")
    definition = lq.export.to_definition(model)
    assert definition == keras_json
    keras_json_module = pytest.importorskip("bnncore_service.keras_json")
    keras_json_module.translate(definition)  # accepted

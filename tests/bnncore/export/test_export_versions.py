"""Format version 2 stores a sign as the float's sign bit; version 1 files (a
set bit meant +1) still load to the same weights."""

from __future__ import annotations

import json

import keras
import numpy as np
import safetensors
import safetensors.numpy
from export_models import randomize

import bnncore as lq


def _model(seed: int) -> keras.Model:
    inputs = keras.Input((70,))
    x = lq.layers.QuantDense(
        9, kernel_quantizer="ste_sign", use_bias=False, name="plain"
    )(inputs)
    x = lq.layers.QuantDense(
        5, kernel_quantizer="magnitude_aware_sign", use_bias=False, name="scaled"
    )(x)
    return randomize(keras.Model(inputs, x), seed=seed)


def _kernels(model: keras.Model) -> dict[str, np.ndarray]:
    return {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}


def test_sign_bits_are_set_for_negative_weights():
    model = _model(1)
    raw = safetensors.numpy.load(lq.export.to_bytes(model))
    latent = keras.ops.convert_to_numpy(model.get_layer("plain").kernel).reshape(-1)
    bits = np.unpackbits(raw["plain/kernel"], bitorder="little")[: latent.size]
    np.testing.assert_array_equal(bits, (latent < 0).astype(np.uint8))


def test_a_version_1_file_loads_to_the_same_weights(tmp_path):
    model = _model(2)
    data = lq.export.to_bytes(model)
    path = tmp_path / "v2.safetensors"
    path.write_bytes(data)
    with safetensors.safe_open(str(path), "np") as handle:
        metadata = handle.metadata()
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    encodings = json.loads(metadata["encodings"])
    layers = {layer.name: layer for layer in model.layers}
    for name, spec in encodings.items():
        if spec["encoding"] != "sign_bits":
            continue
        # Version 1, written from the model itself: bit 1 = +1 (sign(0) = +1).
        latent = keras.ops.convert_to_numpy(layers[name.split("/")[0]].kernel)
        positive = ~(latent.reshape(-1) < 0)
        tensors[name] = np.packbits(positive, bitorder="little")
    old = safetensors.numpy.save(tensors, metadata={**metadata, "format_version": "1"})

    fresh_from_old, fresh_from_new = _model(7), _model(8)
    lq.export.load_weights(fresh_from_old, old)
    lq.export.load_weights(fresh_from_new, data)
    got_old, got_new = _kernels(fresh_from_old), _kernels(fresh_from_new)
    assert got_old.keys() == got_new.keys()
    for key in got_new:
        np.testing.assert_array_equal(got_old[key], got_new[key])
    quantized = np.sign(keras.ops.convert_to_numpy(model.get_layer("plain").kernel))
    quantized[quantized == 0] = 1
    loaded = keras.ops.convert_to_numpy(fresh_from_old.get_layer("plain").kernel)
    np.testing.assert_array_equal(loaded, quantized)

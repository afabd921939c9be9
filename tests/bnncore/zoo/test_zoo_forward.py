"""Every zoo model runs, has stable explicit names and round-trips its weights.

Each model is built once (a module-scoped fixture shared by the tests below)
at a small input with 10 classes: the QuickNets, RealToBinaryNet, MeliusNet22,
BiRealNet and BinaryDenseNet28 at 32×32 (DenseNet28 with Larq Zoo's
small-input stem), the other DenseNets and ResNetE18 at 64×64 (the ImageNet
stem), XNOR-Net at 217×217 and DoReFa-Net at 44×44 (the smallest sizes their
poolings allow; XNOR-Net's 6×6 "valid" conv follows three stride-2 poolings)
and Binary AlexNet at 64×64 (at its smallest, 57×57, both test images
sometimes binarise to the same features). What a model costs here is its
weights, not its input size. Its BatchNorm statistics are randomised so that
every BatchNorm layer computes something different.

The name tests compare that build with the 224×224, 1000-class build of the
same constructor made for the published figures (``zoo_builds``): building a
model twice in one process must give the same layer names, variable paths and
weights-file names whatever the input size and class count.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import keras
import numpy as np
import pytest
import zoo_builds

from bnncore import export, quantizers, zoo

SIZES = {
    "QuickNetSmall": 32,
    "QuickNet": 32,
    "QuickNetLarge": 32,
    "RealToBinaryNet": 32,
    "BinaryDenseNet28": 32,
    "BinaryDenseNet37": 64,
    "BinaryDenseNet37Dilated": 64,
    "BinaryDenseNet45": 64,
    "MeliusNet22": 32,
    "BinaryResNetE18": 64,
    "BiRealNet": 32,
    "XNORNet": 217,
    "BinaryAlexNet": 64,
    "DoReFaNet": 44,
}
CLASSES = 10
# The .keras round trip (save, load_model, same config, quantizers, names and
# weights, then the weights file loaded into the reloaded model) runs for one
# model per family: the others are made of exactly the same layer classes,
# quantizers, constraints and custom objects (QuickNet and QuickNetLarge as
# QuickNetSmall; DenseNet28, 37 and 45 as 37Dilated, which adds the dilation
# rate), and the models are what costs here (~3 s of CPU per round trip).
KERAS_FILE_MODELS = {
    "QuickNetSmall",
    "RealToBinaryNet",
    "BinaryDenseNet37Dilated",
    "MeliusNet22",
    "BinaryResNetE18",
    "BiRealNet",
    "XNORNet",
    "BinaryAlexNet",
    "DoReFaNet",
}
# At random initialisation Binary AlexNet's last max-pool leaves ~13 % of
# images with all 256 features positive, so two test images can give the same
# logits; its BatchNorms get the moving statistics of the test batch instead.
CALIBRATED = {"BinaryAlexNet"}
# Below 50 pixels BinaryDenseNet28 has a single 3×3 conv as its stem; the
# ImageNet stem's other layers are missing (and only those).
SMALL_STEM_ONLY_AT_224 = {"stem_bn", "stem_relu", "stem_max_pool"}


@dataclass
class Built:
    name: str
    model: keras.Model | None
    x: np.ndarray
    logits: np.ndarray
    y: np.ndarray


def _batch_norms(model: keras.Model) -> list:
    return [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def _randomize_batch_norms(model: keras.Model, rng: np.random.Generator) -> None:
    for layer in _batch_norms(model):
        n = layer.moving_mean.shape[0]
        layer.moving_mean.assign(rng.normal(0.0, 0.2, n).astype("float32"))
        layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
        if layer.gamma is not None:
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
        if layer.beta is not None:
            layer.beta.assign(rng.normal(0.0, 0.2, n).astype("float32"))


def _calibrate_batch_norms(model: keras.Model, x: np.ndarray) -> None:
    """Sets every moving mean and variance to its layer's statistics on ``x``.

    One training-mode call with momentum 0, as if the model had been trained
    on ``x``: the binarised activations are balanced instead of saturated.
    """
    batch_norms = _batch_norms(model)
    momenta = [layer.momentum for layer in batch_norms]
    for layer in batch_norms:
        layer.momentum = 0.0
    try:
        model(x, training=True)
    finally:
        for layer, momentum in zip(batch_norms, momenta, strict=True):
            layer.momentum = momentum


def _with_logits(model: keras.Model) -> keras.Model:
    """The same layers, returning the logits (before the softmax) and the output.

    Randomly initialised BNNs have large logits, so their softmax saturates;
    the logits show that different inputs give different answers.
    """
    head = model.layers[-1]
    assert isinstance(head, keras.layers.Activation)
    assert head.get_config()["activation"] == "softmax"
    return keras.Model(model.input, [head.input, model.output])


def _run(model: keras.Model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits, y = _with_logits(model)(x, training=False)
    return np.asarray(logits), np.asarray(y)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype("float64") - z.max(axis=1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def _signature(model: keras.Model) -> list[tuple]:
    """What a quantized layer is made of: its quantizers and pad_values."""
    rows = []
    for layer in model.layers:
        if not hasattr(layer, "kernel_quantizers"):
            continue
        rows.append(
            (
                layer.name,
                type(layer).__name__,
                quantizers.serialize(layer.input_quantizer),
                {
                    k: quantizers.serialize(q)
                    for k, q in layer.kernel_quantizers.items()
                },
                getattr(layer, "pad_values", None),
            )
        )
    return rows


def _keras_default_name(layer: keras.Layer) -> str:
    """The snake_case class name Keras gives an unnamed layer (before ``_<n>``)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", type(layer).__name__)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


@pytest.fixture(scope="module", params=list(SIZES))
def built(request):
    name = request.param
    size = SIZES[name]
    model = zoo.get(name)(input_shape=(size, size, 3), num_classes=CLASSES)
    x = np.random.default_rng(7).normal(size=(2, size, size, 3)).astype("float32")
    _randomize_batch_norms(model, np.random.default_rng(11))
    if name in CALIBRATED:
        _calibrate_batch_norms(model, x)
    logits, y = _run(model, x)
    result = Built(name, model, x, logits, y)
    yield result
    result.model = None
    del model
    keras.backend.clear_session()


def test_every_model_has_a_size():
    assert sorted(SIZES) == sorted(zoo.names())


def test_forward(built):
    assert built.y.shape == built.logits.shape == (2, CLASSES)
    assert np.all(np.isfinite(built.logits))
    assert not np.allclose(built.logits[0], built.logits[1])  # input reaches head
    np.testing.assert_allclose(built.y, _softmax(built.logits), rtol=1e-5, atol=1e-6)


def test_layer_names_are_explicit_readable_and_unique(built):
    layers = built.model.layers
    names = [layer.name for layer in layers]
    assert len(set(names)) == len(names)
    assert names[0] == "input"
    assert names[-1] == "predictions"
    for layer in layers:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", layer.name), layer.name
        # Keras's automatic names (global per-process counters) are not used.
        assert not re.fullmatch(rf"{_keras_default_name(layer)}(_\d+)?", layer.name), (
            layer.name
        )


def test_names_are_the_same_in_a_second_build(built):
    # The 224×224, 1000-class build of the same constructor, made in this
    # process for the published figures.
    other = zoo_builds.measured(built.name).names
    mine = zoo_builds.names(built.model)
    dropped = SMALL_STEM_ONLY_AT_224 if built.name == "BinaryDenseNet28" else set()
    if dropped:
        assert dropped <= set(other.layers)

    def keep(path: str) -> bool:
        return path.split("/")[0] not in dropped

    assert mine.layers == [n for n in other.layers if n not in dropped]
    assert mine.paths == [p for p in other.paths if keep(p)]
    assert mine.file_names == [p for p in other.file_names if keep(p)]
    # A functional zoo model's weights-file names are its variable paths.
    assert mine.file_names == mine.paths
    assert len(set(mine.paths)) == len(mine.paths)


def _check_keras_file(model: keras.Model, path) -> keras.Model:
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.name == model.name
    assert json.loads(loaded.to_json()) == json.loads(model.to_json())
    assert _signature(model)  # quantized layers exist and are compared
    assert _signature(loaded) == _signature(model)
    assert zoo_builds.names(loaded) == zoo_builds.names(model)
    for saved, restored in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(restored), np.asarray(saved))
    return loaded


def test_weights_file_and_keras_file_round_trips(built, tmp_path):
    model = built.model
    target = model
    if built.name in KERAS_FILE_MODELS:
        target = _check_keras_file(model, tmp_path / f"{built.name}.keras")

    # The packed weights file of the model, loaded by name into the reloaded
    # instance (or the model itself) after wiping every variable, gives back
    # the model's logits.
    weights = tmp_path / f"{built.name}.safetensors"
    export.write_weights(model, weights)
    for variable in target.weights:
        variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
    export.load_weights(target, weights)
    logits, y = _run(target, built.x)
    # Equal up to float32 rounding of the BatchNorms refolded from the file.
    scale = np.abs(built.logits).max()
    np.testing.assert_allclose(logits, built.logits, rtol=1e-6, atol=1e-6 * scale)
    np.testing.assert_allclose(y, built.y, rtol=1e-5, atol=1e-6)

"""Every zoo model runs, saves to ``.keras``, loads back and predicts the same.

Each model is built at a small input where the architecture allows (XNOR-Net
needs at least 217×217: a 6×6 "valid" conv follows three stride-2 poolings),
with 10 classes, called eagerly on a fixed batch, saved, loaded and run with
``predict``. DenseNet28 runs at 32×32 (Larq Zoo's small-input stem); the other
DenseNets and ResNetE18 at 64×64 (the ImageNet stem).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from bnncore import quantizers, zoo

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
    "XNORNet": 224,
    "BinaryAlexNet": 64,
    "DoReFaNet": 64,
}
CLASSES = 10


def _signature(model: keras.Model) -> list[tuple]:
    """What a quantized layer is made of: its quantizers and pad_values."""
    rows = []
    for layer in model.layers:
        if not hasattr(layer, "kernel_quantizers"):
            continue
        rows.append(
            (
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


def _with_logits(model: keras.Model) -> keras.Model:
    """The same layers, returning the logits (before the softmax) and the output.

    Randomly initialised BNNs have large logits, so their softmax saturates;
    the logits show that different inputs give different answers.
    """
    head = model.layers[-1]
    assert isinstance(head, keras.layers.Activation)
    assert head.get_config()["activation"] == "softmax"
    return keras.Model(model.input, [head.input, model.output])


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype("float64") - z.max(axis=1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def test_every_model_has_a_size():
    assert sorted(SIZES) == sorted(zoo.names())


@pytest.mark.parametrize("name", list(SIZES))
def test_forward_save_load_predict(name, tmp_path):
    size = SIZES[name]
    model = zoo.get(name)(input_shape=(size, size, 3), num_classes=CLASSES)
    x = np.random.default_rng(7).normal(size=(2, size, size, 3)).astype("float32")
    logits, y = (np.asarray(t) for t in _with_logits(model)(x, training=False))

    assert y.shape == logits.shape == (2, CLASSES)
    assert np.all(np.isfinite(logits))
    assert not np.allclose(logits[0], logits[1])  # the input reaches the head
    np.testing.assert_allclose(y, _softmax(logits), rtol=1e-5, atol=1e-6)

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.name == model.name
    assert _signature(model)  # quantized layers exist and are compared
    assert _signature(loaded) == _signature(model)
    assert [w.shape for w in loaded.weights] == [w.shape for w in model.weights]
    for saved, restored in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(restored), np.asarray(saved))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), y, rtol=1e-5, atol=1e-6)
    del model, loaded
    keras.backend.clear_session()

"""Models shared by the export tests (imported as ``export_models``)."""

from __future__ import annotations

import logging

import keras
import numpy as np

import bnncore as lq
import bnncore.export

# The starved-weights advice of bnncore layers is noise in these tests.
logging.getLogger("bnncore").setLevel(logging.ERROR)


def mnist_bnn(name: str = "mnist_bnn") -> keras.Model:
    """Larq's MNIST tutorial BNN, with explicit layer names.

    Explicit names make two builds name their variables alike, which is what
    matching a weights file against a fresh model needs.
    """
    binary = {
        "input_quantizer": "ste_sign",
        "kernel_quantizer": "ste_sign",
        "kernel_constraint": "weight_clip",
        "use_bias": False,
    }
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            lq.layers.QuantConv2D(
                32,
                3,
                kernel_quantizer="ste_sign",
                kernel_constraint="weight_clip",
                use_bias=False,
                name="conv1",
            ),
            layers.MaxPooling2D(2, name="pool1"),
            layers.BatchNormalization(scale=False, name="bn1"),
            lq.layers.QuantConv2D(64, 3, name="conv2", **binary),
            layers.MaxPooling2D(2, name="pool2"),
            layers.BatchNormalization(scale=False, name="bn2"),
            lq.layers.QuantConv2D(64, 3, name="conv3", **binary),
            layers.BatchNormalization(scale=False, name="bn3"),
            layers.Flatten(name="flatten"),
            lq.layers.QuantDense(64, name="dense1", **binary),
            layers.BatchNormalization(scale=False, name="bn4"),
            lq.layers.QuantDense(10, name="dense2", **binary),
            layers.BatchNormalization(scale=False, name="bn5"),
            layers.Activation("softmax", name="softmax"),
        ],
        name=name,
    )


def randomize(model: keras.Model, seed: int = 0) -> keras.Model:
    """Gives every variable random values, as training would.

    Latent kernels get values of both signs (some exactly 0, where sign is
    +1), BatchNorm statistics get non-trivial means and variances.
    """
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        name = variable.path.rpartition("/")[2]
        if name == "moving_variance":
            value = rng.uniform(0.2, 4.0, shape)
        elif name == "gamma":
            value = rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape)
        else:
            value = rng.normal(0.0, 0.6, shape)
            value[rng.random(shape) < 0.02] = 0.0
        variable.assign(value.astype("float32"))
    return model

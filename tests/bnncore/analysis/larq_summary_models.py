"""Models whose ``summary`` text real Larq printed (the fixtures in larq_summaries/).

Each builder takes the library as ``lq`` and its Keras as ``keras`` so that the
same definition builds a Larq model (``larq`` with tf-keras, in the peer
environment, by ``make_larq_summaries.py``) and a bnncore model (``bnncore``
with Keras 3, in the tests). Layer and model names are explicit: auto-generated
names depend on what else the process built.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BIN = {
    "input_quantizer": "ste_sign",
    "kernel_quantizer": "ste_sign",
    "kernel_constraint": "weight_clip",
}


def mnist_tutorial(lq: Any, keras: Any) -> Any:
    """The BNN of Larq's MNIST tutorial (docs: "Introduction to BNNs with Larq")."""
    layers = keras.layers
    bn = {"scale": False}
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            lq.layers.QuantConv2D(
                32,
                (3, 3),
                kernel_quantizer="ste_sign",
                kernel_constraint="weight_clip",
                use_bias=False,
                name="quant_conv2d",
            ),
            layers.MaxPooling2D((2, 2), name="max_pooling2d"),
            layers.BatchNormalization(**bn, name="batch_normalization"),
            lq.layers.QuantConv2D(
                64, (3, 3), use_bias=False, **BIN, name="quant_conv2d_1"
            ),
            layers.MaxPooling2D((2, 2), name="max_pooling2d_1"),
            layers.BatchNormalization(**bn, name="batch_normalization_1"),
            lq.layers.QuantConv2D(
                64, (3, 3), use_bias=False, **BIN, name="quant_conv2d_2"
            ),
            layers.BatchNormalization(**bn, name="batch_normalization_2"),
            layers.Flatten(name="flatten"),
            lq.layers.QuantDense(64, use_bias=False, **BIN, name="quant_dense"),
            layers.BatchNormalization(**bn, name="batch_normalization_3"),
            lq.layers.QuantDense(10, use_bias=False, **BIN, name="quant_dense_1"),
            layers.BatchNormalization(**bn, name="batch_normalization_4"),
            layers.Activation("softmax", name="activation"),
        ],
        name="sequential",
    )


def _profile_layers(lq: Any, keras: Any) -> list[Any]:
    """1-, 2- and 32-bit weights and MACs, a frozen layer, BatchNorm(scale=False)."""
    layers = keras.layers
    return [
        lq.layers.QuantConv2D(
            32,
            (3, 3),
            kernel_quantizer="ste_sign",
            padding="same",
            name="quant_conv2d",
        ),
        layers.MaxPooling2D((2, 2), name="max_pooling2d"),
        lq.layers.QuantDepthwiseConv2D(
            3,
            strides=(3, 3),
            input_quantizer=lq.quantizers.SteTern(),
            depthwise_quantizer=lq.quantizers.SteTern(),
            padding="same",
            pad_values=1.0,
            use_bias=False,
            name="quant_depthwise_conv2d",
        ),
        layers.BatchNormalization(scale=False, name="batch_normalization"),
        lq.layers.QuantSeparableConv2D(
            32,
            (3, 3),
            input_quantizer="ste_sign",
            depthwise_quantizer="ste_sign",
            pointwise_quantizer="ste_sign",
            padding="same",
            name="quant_separable_conv2d",
        ),
        layers.Flatten(name="flatten"),
        layers.Dense(10, trainable=False, name="dense"),
    ]


def mixed_precision(lq: Any, keras: Any) -> Any:
    """The model of Larq's profile tests: MACs at 1, 2 and 32 bits."""
    return keras.Sequential(
        [keras.Input((64, 64, 1)), *_profile_layers(lq, keras)], name="mixed"
    )


def nested(lq: Any, keras: Any) -> Any:
    """``mixed_precision`` with its middle three layers in an inner Sequential."""
    first, pool, depthwise, norm, separable, flatten, dense = _profile_layers(lq, keras)
    inner = keras.Sequential([depthwise, norm, separable], name="inner")
    return keras.Sequential(
        [keras.Input((64, 64, 1)), first, pool, inner, flatten, dense],
        name="outer",
    )


def functional(lq: Any, keras: Any) -> Any:
    """A functional model: an input row, a 1D binary stack, a Dense over time."""
    layers = keras.layers
    inputs = keras.Input((64, 6), name="signal")
    x = lq.layers.QuantConv1D(
        32,
        3,
        kernel_quantizer="ste_sign",
        kernel_constraint="weight_clip",
        padding="same",
        name="quant_conv1d",
    )(inputs)
    x = layers.MaxPooling1D(2, name="max_pooling1d")(x)
    x = lq.layers.QuantSeparableConv1D(
        16,
        3,
        input_quantizer="ste_sign",
        depthwise_quantizer="ste_sign",
        pointwise_quantizer="ste_sign",
        padding="same",
        name="quant_separable_conv1d",
    )(x)
    x = layers.BatchNormalization(name="batch_normalization")(x)
    x = lq.layers.QuantDense(8, **BIN, name="quant_dense")(x)
    x = layers.GlobalAveragePooling1D(name="global_average_pooling1d")(x)
    outputs = layers.Dense(4, activation="softmax", name="dense")(x)
    return keras.Model(inputs, outputs, name="functional_1d")


def subclassed(lq: Any, keras: Any) -> Any:
    """A subclassed model (Larq prints 'multiple' for its output shapes)."""

    class ToyModel(keras.Model):
        def __init__(self) -> None:
            super().__init__(name="toy_model")
            self.conv = lq.layers.QuantConv2D(
                32,
                (3, 3),
                kernel_quantizer="ste_sign",
                padding="same",
                name="quant_conv2d",
            )
            self.pool = keras.layers.GlobalAveragePooling2D(name="pool")
            self.dense = keras.layers.Dense(10, activation="softmax", name="dense")

        def call(self, inputs: Any) -> Any:
            return self.dense(self.pool(self.conv(inputs)))

    model = ToyModel()
    # An eager call builds every layer in both libraries and records no shapes
    # (Keras 3's model.build(shape) leaves a subclassed model's layers unbuilt).
    model(np.zeros((1, 32, 32, 3), "float32"))
    return model


def no_weights(lq: Any, keras: Any) -> Any:
    """A model without weights (Larq's table then has no bit-width columns)."""
    del lq
    return keras.Sequential(
        [
            keras.Input((32, 32)),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Activation("relu", name="activation"),
        ],
        name="weightless",
    )


def long_title(lq: Any, keras: Any) -> Any:
    """A name longer than the tables are wide: Larq leaves the titles out."""
    del lq
    return keras.Sequential(
        [keras.Input((3,)), keras.layers.Activation("relu", name="relu")],
        name="a_model_whose_name_is_longer_than_its_summary_tables_are_wide",
    )


MODELS = {
    "mnist_tutorial": mnist_tutorial,
    "mixed_precision": mixed_precision,
    "nested": nested,
    "functional": functional,
    "subclassed": subclassed,
    "no_weights": no_weights,
    "long_title": long_title,
}
"""Fixture name → builder."""

CASES = {
    # fixture file stem: (model, include_macs)
    "mnist_tutorial": ("mnist_tutorial", True),
    "mnist_tutorial_no_macs": ("mnist_tutorial", False),
    "mixed_precision": ("mixed_precision", True),
    "nested": ("nested", True),
    "functional": ("functional", True),
    "subclassed": ("subclassed", True),
    "no_weights": ("no_weights", True),
    "long_title": ("long_title", True),
}
"""Each fixture text: which model, and the ``include_macs`` it was printed with."""

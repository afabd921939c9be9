"""get_config/from_config round trips and ``.keras`` save -> load."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_helpers import KERNEL_QUANTIZER_ARGS, random_array, set_random_weights

import bnncore.layers as bl
from bnncore import quantizers

KL = keras.layers


@keras.saving.register_keras_serializable(package="bnncore_tests")
@quantizers.set_precision(1)
def sign_with_identity_gradient(x):
    """A user's custom quantizer: forward sign, backward identity."""

    @tf.custom_gradient
    def _sign(x):
        return tf.where(x < 0, -1.0, 1.0), lambda dy: dy

    return _sign(x)


# (class, constructor kwargs, input shape): rich, non-default configurations.
LAYERS = [
    pytest.param(
        bl.QuantDense,
        {"units": 3, "activation": "ste_sign", "kernel_constraint": "weight_clip"},
        (2, 4),
        id="dense",
    ),
    pytest.param(
        bl.QuantConv1D,
        {"filters": 2, "kernel_size": 3, "padding": "causal", "dilation_rate": 2},
        (2, 5, 2),
        id="conv1d",
    ),
    pytest.param(
        bl.QuantConv2D,
        {
            "filters": 2,
            "kernel_size": 3,
            "padding": "same",
            "pad_values": 1.0,
            "strides": 2,
            "activation": "hard_tanh",
        },
        (1, 5, 5, 2),
        id="conv2d",
    ),
    pytest.param(
        bl.QuantConv3D,
        {"filters": 2, "kernel_size": 2, "groups": 2},
        (1, 3, 3, 3, 2),
        id="conv3d",
    ),
    pytest.param(
        bl.QuantDepthwiseConv1D,
        {
            "kernel_size": 2,
            "depth_multiplier": 2,
            "padding": "same",
            "pad_values": -1.0,
        },
        (1, 4, 2),
        id="depthwise1d",
    ),
    pytest.param(
        bl.QuantDepthwiseConv2D,
        {"kernel_size": 2, "depthwise_constraint": "weight_clip"},
        (1, 4, 4, 2),
        id="depthwise2d",
    ),
    pytest.param(
        bl.QuantSeparableConv1D,
        {"filters": 2, "kernel_size": 2, "padding": "same", "pad_values": 1.0},
        (1, 5, 2),
        id="separable1d",
    ),
    pytest.param(
        bl.QuantSeparableConv2D,
        {"filters": 2, "kernel_size": 2, "depth_multiplier": 2},
        (1, 4, 4, 2),
        id="separable2d",
    ),
    pytest.param(
        bl.QuantConv1DTranspose,
        {"filters": 2, "kernel_size": 2, "strides": 2},
        (1, 3, 2),
        id="conv1dT",
    ),
    pytest.param(
        bl.QuantConv2DTranspose,
        {"filters": 2, "kernel_size": 3, "padding": "same"},
        (1, 3, 3, 2),
        id="conv2dT",
    ),
    pytest.param(
        bl.QuantConv3DTranspose,
        {"filters": 2, "kernel_size": 2},
        (1, 2, 2, 2, 2),
        id="conv3dT",
    ),
    pytest.param(
        bl.QuantLocallyConnected1D,
        {"filters": 2, "kernel_size": 2, "strides": 2},
        (1, 5, 2),
        id="local1d",
    ),
    pytest.param(
        bl.QuantLocallyConnected2D,
        {"filters": 2, "kernel_size": 2, "data_format": "channels_first"},
        (1, 2, 3, 4),
        id="local2d",
    ),
]

# Quantizers given in every form a user may pass them.
QUANTIZER_FORMS = [
    "ste_sign",
    quantizers.SteSign(clip_value=0.5),
    {"class_name": "DoReFa", "config": {"k_bit": 3, "mode": "weights"}},
    sign_with_identity_gradient,
]


@pytest.mark.parametrize(("cls", "kwargs", "shape"), LAYERS)
def test_config_round_trip_and_same_outputs(cls, kwargs, shape):
    rng = np.random.default_rng(10)
    quantizer_args = dict(
        zip(KERNEL_QUANTIZER_ARGS[cls], QUANTIZER_FORMS[1:], strict=False)
    )
    layer = cls(**kwargs, input_quantizer="ste_sign", **quantizer_args)
    config = layer.get_config()
    clone = cls.from_config(config)
    assert clone.get_config() == config
    # The config names what was asked for, readably.
    assert config["input_quantizer"]["class_name"] == "SteSign"
    for arg, given in quantizer_args.items():
        restored = getattr(clone, arg)
        if isinstance(given, quantizers.Quantizer):
            assert type(restored) is type(given)
            assert restored.get_config() == given.get_config()
        elif isinstance(given, dict):
            assert type(restored).__name__ == given["class_name"]
            for key, value in given["config"].items():
                assert restored.get_config()[key] == value
        else:
            assert restored is given
    for key in ("pad_values", "kernel_constraint", "depthwise_constraint"):
        if key in kwargs:
            assert config[key] == layer.get_config()[key]
    layer.build(shape)
    clone.build(shape)
    set_random_weights([layer, clone], rng)
    x = random_array(shape, rng)
    # Exact: the same TensorFlow ops on the same values and shapes, in this process.
    np.testing.assert_array_equal(clone(x), layer(x))


def _sequential_2d():
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            bl.QuantConv2D(
                4,
                3,
                padding="same",
                pad_values=1.0,
                kernel_quantizer="ste_sign",
                kernel_constraint="weight_clip",
                use_bias=False,
            ),
            KL.BatchNormalization(),
            KL.Activation("ste_sign"),
            bl.QuantDepthwiseConv2D(
                3,
                input_quantizer="ste_sign",
                depthwise_quantizer="ste_sign",
                depthwise_constraint="weight_clip",
            ),
            bl.QuantSeparableConv2D(
                4,
                2,
                input_quantizer="ste_sign",
                depthwise_quantizer="ste_sign",
                pointwise_quantizer=quantizers.SteSign(clip_value=0.5),
            ),
            bl.QuantConv2DTranspose(2, 2, strides=2, kernel_quantizer="ste_sign"),
            bl.QuantLocallyConnected2D(
                2, 3, input_quantizer="approx_sign", kernel_quantizer="swish_sign"
            ),
            KL.Flatten(),
            bl.QuantDense(3, input_quantizer="ste_sign", kernel_quantizer="ste_sign"),
        ]
    )


def _functional_residual():
    inputs = keras.Input((8, 3))
    x = bl.QuantConv1D(3, 3, padding="causal", kernel_quantizer="ste_sign")(inputs)
    x = KL.Add()([x, inputs])  # residual connection
    shortcut = x
    x = bl.QuantDepthwiseConv1D(
        2,
        padding="same",
        input_quantizer=sign_with_identity_gradient,
        depthwise_quantizer=sign_with_identity_gradient,
    )(x)
    x = bl.QuantSeparableConv1D(
        3,
        3,
        padding="same",
        pad_values=1.0,
        input_quantizer="ste_sign",
        depthwise_quantizer="ste_tern",
        pointwise_quantizer="dorefa_quantizer",
    )(x)
    x = KL.Add()([x, shortcut])
    x = bl.QuantConv1DTranspose(2, 2, strides=2, kernel_quantizer="ste_sign")(x)
    x = bl.QuantLocallyConnected1D(2, 3, strides=2, kernel_quantizer="ste_sign")(x)
    x = KL.Reshape((7, 2, 1))(x)
    x = bl.QuantConv2D(2, 2, kernel_quantizer="magnitude_aware_sign")(x)
    x = KL.Reshape((6, 1, 1, 2))(x)
    x = bl.QuantConv3D(2, (2, 1, 1), kernel_quantizer="ste_heaviside")(x)
    x = bl.QuantConv3DTranspose(1, (2, 1, 1), kernel_quantizer="ste_sign")(x)
    x = KL.Flatten()(x)
    outputs = bl.QuantDense(2, kernel_quantizer="ste_sign")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(
    "make_model",
    [
        pytest.param(_sequential_2d, id="sequential-2d"),
        pytest.param(_functional_residual, id="functional-residual-1d-2d-3d"),
    ],
)
def test_keras_file_save_load_gives_identical_predictions(make_model, tmp_path):
    rng = np.random.default_rng(11)
    model = make_model()
    set_random_weights_everywhere(model, rng)
    x = random_array((4, *model.input_shape[1:]), rng)
    expected = model.predict(x, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    # Exact: both sides are predict() of the same graph on the same 4 rows, in
    # this process, so the same TensorFlow kernels on whatever CPU runs it.
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    assert [type(layer) for layer in loaded.layers] == [
        type(layer) for layer in model.layers
    ]
    for ours, theirs in zip(model.layers, loaded.layers, strict=True):
        assert theirs.get_config() == ours.get_config()
    for ours, theirs in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(theirs.numpy(), ours.numpy())


def set_random_weights_everywhere(model, rng):
    for layer in model.layers:
        if layer.weights and not isinstance(layer, KL.BatchNormalization):
            set_random_weights([layer], rng)


def test_quantizer_as_activation_and_activation_layer_save_and_load(tmp_path):
    rng = np.random.default_rng(12)
    model = keras.Sequential(
        [
            keras.Input((5,)),
            bl.QuantDense(4, activation="ste_sign"),
            KL.Dense(4),
            KL.Activation("ste_sign"),
        ]
    )
    set_random_weights_everywhere(model, rng)
    x = random_array((6, 5), rng)
    expected = model.predict(x, verbose=0)
    assert set(np.unique(expected)) <= {-1.0, 1.0}
    path = tmp_path / "activations.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    # Exact: predict() of the same graph on the same 6 rows, in this process.
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    for ours, theirs in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(theirs.numpy(), ours.numpy())
    assert loaded.layers[0].activation is quantizers.ste_sign
    assert loaded.layers[2].activation is quantizers.ste_sign

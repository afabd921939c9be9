"""``hard_tanh`` is the one Keras 3 resolves by name, as Larq's was tf.keras's."""

import keras
import numpy as np
import tensorflow as tf

import bnncore as lq

X = np.array([-2.5, -1.0, -0.3, 0.0, 0.7, 1.0, 3.0], "float32")


def test_name_lookup_and_serialization_give_bnncore_hard_tanh():
    fn = keras.activations.get("hard_tanh")
    assert fn is lq.activations.hard_tanh
    assert lq.activations.get("hard_tanh") is fn
    again = keras.activations.deserialize(keras.activations.serialize(fn))
    assert again is lq.activations.hard_tanh


def test_values_and_gradient_match_numpy_clip():
    x = tf.constant(X)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = lq.activations.hard_tanh(x)
    grad = tape.gradient(y, x).numpy()
    np.testing.assert_array_equal(y.numpy(), np.clip(X, -1, 1))
    inside = (X > -1) & (X < 1)
    np.testing.assert_array_equal(grad[inside], 1.0)
    np.testing.assert_array_equal(grad[np.abs(X) > 1], 0.0)


def test_layer_config_saved_with_the_registered_name_still_loads():
    # How bnncore serialized hard_tanh before it became Keras's function.
    old = {
        "module": "builtins",
        "class_name": "function",
        "config": "bnncore>hard_tanh",
        "registered_name": "function",
    }
    layer = keras.layers.Activation.from_config({"activation": old, "name": "a"})
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(layer(X)), np.clip(X, -1, 1)
    )

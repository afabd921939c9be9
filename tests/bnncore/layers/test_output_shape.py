"""``layer.output_shape`` of the quantized layers, with Keras 2's (and Larq's)
semantics; Keras 3 removed it from ``Layer``.

Oracles: the shape TensorFlow's "same"/"valid" rules give, computed by hand,
and the Keras parent layer's own ``compute_output_shape``.
"""

from __future__ import annotations

import io

import keras
import pytest

import bnncore.layers as bl

KL = keras.layers


def same_size(size, stride):
    return None if size is None else -(-size // stride)


@pytest.mark.parametrize(
    ("make", "parent", "input_shape", "expected"),
    [
        pytest.param(
            lambda: bl.QuantConv2D(16, 3, padding="same", pad_values=1.0),
            lambda: KL.Conv2D(16, 3, padding="same"),
            (32, 32, 3),
            (None, 32, 32, 16),
            id="conv2d-same-one",
        ),
        pytest.param(
            lambda: bl.QuantConv2D(4, 3, strides=2, padding="same", pad_values=1.0),
            lambda: KL.Conv2D(4, 3, strides=2, padding="same"),
            (7, 9, 3),
            (None, same_size(7, 2), same_size(9, 2), 4),
            id="conv2d-same-one-stride2",
        ),
        pytest.param(
            lambda: bl.QuantConv1D(
                5, 3, padding="same", pad_values=1.0, data_format="channels_first"
            ),
            lambda: KL.Conv1D(5, 3, padding="same", data_format="channels_first"),
            (3, 11),
            (None, 5, 11),
            id="conv1d-channels_first",
        ),
        pytest.param(
            lambda: bl.QuantDepthwiseConv2D(3, padding="same", pad_values=1.0),
            lambda: KL.DepthwiseConv2D(3, padding="same"),
            (None, None, 6),
            (None, None, None, 6),
            id="depthwise-unknown-spatial",
        ),
        pytest.param(
            lambda: bl.QuantSeparableConv1D(8, 3, padding="valid"),
            lambda: KL.SeparableConv1D(8, 3, padding="valid"),
            (10, 2),
            (None, 8, 8),
            id="separable1d-valid",
        ),
        pytest.param(
            lambda: bl.QuantDense(3, kernel_quantizer="ste_sign"),
            lambda: KL.Dense(3),
            (4,),
            (None, 3),
            id="dense",
        ),
    ],
)
def test_output_shape_after_a_symbolic_call(make, parent, input_shape, expected):
    layer = make()
    layer(keras.Input(input_shape))
    assert layer.output_shape == expected
    assert type(layer.output_shape) is tuple
    keras_shape = parent().compute_output_shape((None, *input_shape))
    assert layer.output_shape == tuple(keras_shape)


def test_no_output_shape_before_a_symbolic_call():
    layer = bl.QuantConv2D(2, 3, padding="same", pad_values=1.0)
    with pytest.raises(AttributeError, match=r"never been called on a symbolic input"):
        layer.output_shape  # noqa: B018
    layer(keras.ops.zeros((1, 5, 5, 2)))  # an eager call records no node
    assert not hasattr(layer, "output_shape")


def test_calls_with_different_output_shapes_make_it_ambiguous():
    layer = bl.QuantDense(3)
    layer(keras.Input((4,)))
    layer(keras.Input((4,)))  # same shape again: still defined
    assert layer.output_shape == (None, 3)
    layer(keras.Input((2, 4)))
    message = r"different output shapes.*\(None, 2, 3\)"
    with pytest.raises(AttributeError, match=message):
        layer.output_shape  # noqa: B018


def test_keras_summary_of_a_built_layer_is_unchanged():
    """Keras 3's summary asks ``hasattr(layer, "output_shape")`` for layers that
    were built but never called symbolically; it must fall back as for Keras's
    own layers."""

    class Wrapper(keras.Model):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def call(self, x):
            return self.inner(x)

    def summary(inner):
        model = Wrapper(inner)
        model(keras.ops.zeros((2, 4)))  # eager: builds, records no node
        lines = io.StringIO()
        model.summary(print_fn=lambda line, **_: lines.write(line + "\n"))
        row = next(line for line in lines.getvalue().splitlines() if "(2, " in line)
        return row.split("│")[2].strip()

    assert summary(bl.QuantDense(3)) == summary(KL.Dense(3)) == "(2, 3)"

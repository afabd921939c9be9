"""QuantizedVariable: Larq's latent/quantized views of a variable, on Keras 3.

Oracles: the latent value set by hand and the quantizer applied in NumPy; a
layer's outputs and gradients compared with themselves outside the scope.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import bnncore.layers as bl
from bnncore import context, optimizers, quantizers
from bnncore.quantized_variable import QuantizedVariable, quantize_in_place


def double(x):
    return 2 * x


def wrapped(value, quantizer=double, **kwargs):
    return QuantizedVariable.from_variable(
        keras.Variable(np.asarray(value, "float32"), name="x"), quantizer, **kwargs
    )


def read_all_ways(x):
    """Every public way of reading a variable, as NumPy arrays."""
    return {
        "value": keras.ops.convert_to_numpy(x.value),
        "read_value": keras.ops.convert_to_numpy(x.read_value()),
        "numpy": x.numpy(),
        "asarray": np.asarray(x),
        "ops": keras.ops.convert_to_numpy(keras.ops.add(x, 0.0)),
        "tf.identity": tf.identity(x).numpy(),
        "getitem": np.asarray(x[...]),
    }


def test_reads_are_latent_outside_and_quantized_inside_the_scope():
    x = wrapped([3.5, -1.0])
    for way, got in read_all_ways(x).items():
        np.testing.assert_array_equal(got, [3.5, -1.0], err_msg=way)
    with context.quantized_scope(True):
        for way, got in read_all_ways(x).items():
            np.testing.assert_array_equal(got, [7.0, -2.0], err_msg=way)
        np.testing.assert_array_equal(x.latent_variable.numpy(), [3.5, -1.0])
        with context.quantized_scope(False):
            np.testing.assert_array_equal(x.numpy(), [3.5, -1.0])
        np.testing.assert_array_equal(x.numpy(), [7.0, -2.0])


@pytest.mark.parametrize("quantized", [True, False], ids=["quantized", "latent"])
def test_operators_act_on_the_value_read(quantized):
    x = wrapped(3.5) if quantized else wrapped(7.0, quantizer=None)
    v = 7.0  # what x reads as in the scope below
    with context.quantized_scope(quantized):
        results = {
            "x+1": (x + 1, v + 1),
            "3+x": (3 + x, 3 + v),
            "x+x": (x + x, v + v),
            "x-2": (x - 2, v - 2),
            "13-x": (13 - x, 13 - v),
            "x*x": (x * x, v * v),
            "3*x": (3 * x, 3 * v),
            "x/2": (x / 2, v / 2),
            "10.5/x": (10.5 / x, 10.5 / v),
            "x//2": (x // 2, v // 2),
            "15//x": (15 // x, 15 // v),
            "x%2": (x % 2, v % 2),
            "16%x": (16 % x, 16 % v),
            "x**3": (x**3, v**3),
            "2**x": (2**x, 2**v),
            "-x": (-x, -v),
            "abs": (abs(x), abs(v)),
            "x<12": (x < 12, v < 12),
            "x>=12": (x >= 12, v >= 12),
            "12>x": (12 > x, 12 > v),  # noqa: SIM300 - the reflected operator
            "x==7": (x == 7.0, v == 7.0),
            "x!=7": (x != 7.0, v != 7.0),
        }
        for name, (got, expected) in results.items():
            assert keras.ops.convert_to_numpy(got) == pytest.approx(expected), name


def test_wrapper_shares_storage_with_the_latent_variable():
    latent = keras.Variable(np.array([1.0, -2.0], "float32"), name="w")
    x = QuantizedVariable(latent, quantizers.SteSign())
    assert x.latent_variable is latent
    assert (x.path, x.name, x.shape, x.dtype) == (
        latent.path,
        latent.name,
        latent.shape,
        latent.dtype,
    )
    latent.assign([-0.5, 0.25])
    np.testing.assert_array_equal(x.numpy(), [-0.5, 0.25])
    x.assign([3.0, -4.0])
    np.testing.assert_array_equal(latent.numpy(), [3.0, -4.0])
    assert x.precision == 1
    x.trainable = False
    assert latent.trainable is False


def test_wraps_a_tensorflow_variable():
    tf_variable = tf.Variable([1.5, -0.5])
    x = QuantizedVariable.from_variable(tf_variable, double, precision=3)
    assert x.precision == 3
    with context.quantized_scope(True):
        np.testing.assert_array_equal(x.numpy(), [3.0, -1.0])
    tf_variable.assign([0.0, 1.0])
    np.testing.assert_array_equal(x.numpy(), [0.0, 1.0])


@pytest.mark.parametrize("quantized", [True, False], ids=["quantized", "latent"])
def test_assignments_change_the_latent_value(quantized):
    x = wrapped(0.0)
    factor = 2.0 if quantized else 1.0
    with context.quantized_scope(quantized):
        assert float(x.assign(3.0).numpy()) == pytest.approx(3.0 * factor)
        assert float(x.assign_add(1.5).numpy()) == pytest.approx(4.5 * factor)
        assert float(x.assign_sub(0.5).numpy()) == pytest.approx(4.0 * factor)
        assert float(x.latent_variable.numpy()) == pytest.approx(4.0)
        assert float(x.numpy()) == pytest.approx(4.0 * factor)
        # Calls chain (Larq, tf.Variable); read_value=False returns None.
        chained = x.assign(1.0).assign_add(3.0).assign_add(3.0).assign_sub(2.0)
        assert chained is x
        assert float(x.numpy()) == pytest.approx(5.0 * factor)
        assert x.assign(0.5, read_value=False) is None
        assert x.assign_add(0.5, read_value=False) is None
        assert x.assign_sub(0.25, read_value=False) is None
        assert float(x.latent_variable.numpy()) == pytest.approx(0.75)
    assert x.initializer is None  # Keras 3 variables are initialized eagerly


def test_invalid_arguments_are_refused_with_larqs_messages():
    with pytest.raises(ValueError, match="`variable` must be of type"):
        QuantizedVariable.from_variable(tf.constant([1.0]))
    with pytest.raises(ValueError, match="`quantizer` must be `callable` or `None`"):
        QuantizedVariable.from_variable(keras.Variable([1.0]), 1)
    with pytest.raises(ValueError, match="`precision` must be of type `int` or `None`"):
        QuantizedVariable.from_variable(keras.Variable([1.0]), precision=1.0)
    with pytest.raises(ValueError, match="`variable` must be of type"):
        quantize_in_place(np.zeros(2), double)


def test_repr_names_quantizer_precision_and_the_value_read():
    x = wrapped(0.5, quantizer=quantizers.SteSign())
    # Larq's (tf.Variable's) layout, so Larq users' snapshots still match.
    assert repr(x) == (
        "<QuantizedVariable 'x:0' shape=() dtype=float32 quantizer=SteSign "
        "precision=1 numpy=0.5>"
    )
    with context.quantized_scope(True):
        assert repr(x).endswith(" numpy=1.0>")
    vector = wrapped([0.5, -2.0], quantizer=quantizers.SteSign())
    assert repr(vector).endswith(
        f"shape=(2,) dtype=float32 quantizer=SteSign precision=1 "
        f"numpy={np.array([0.5, -2.0], 'float32')!r}>"
    )
    assert "quantizer=<lambda>" in repr(wrapped(0.0, quantizer=lambda v: v))
    plain = repr(wrapped(0.0, quantizer=None, precision=2))
    assert "quantizer=" not in plain and "precision=2" in plain


def test_checkpoint_holds_the_latent_value_in_either_scope(tmp_path):
    x = wrapped(123.0)
    checkpoint = tf.train.Checkpoint(x=x)
    with context.quantized_scope(True):
        path = checkpoint.save(str(tmp_path / "ckpt"))
    x.assign(234.0)
    with context.quantized_scope(True):
        checkpoint.restore(path).assert_consumed()
        assert float(x.numpy()) == 246.0
    assert float(x.numpy()) == 123.0
    # Identical to a checkpoint of a plain variable: it restores into one.
    plain = keras.Variable(0.0)
    tf.train.Checkpoint(x=plain).restore(path).assert_consumed()
    assert float(plain.numpy()) == 123.0


@pytest.mark.parametrize("quantize", [True, False])
def test_gradients_flow_through_the_quantized_read(quantize):
    x = wrapped(1.0, quantizer=lambda v: -v)
    sgd = keras.optimizers.SGD(1.0)
    with tf.GradientTape() as tape, context.quantized_scope(quantize):
        loss = x + 1.0
    (grad,) = tape.gradient(loss, [x])
    sgd.apply_gradients([(grad, x)])
    assert float(x.latent_variable.numpy()) == (2.0 if quantize else 0.0)


# --------------------------------------------------------------------------
# Quantized layers
# --------------------------------------------------------------------------

LAYERS = [
    pytest.param(bl.QuantDense(3, kernel_quantizer="ste_sign"), (2, 4), id="dense"),
    pytest.param(
        bl.QuantConv2D(2, 3, kernel_quantizer="ste_tern", padding="same"),
        (1, 5, 5, 2),
        id="conv2d",
    ),
    pytest.param(
        bl.QuantDepthwiseConv2D(3, depthwise_quantizer="magnitude_aware_sign"),
        (1, 5, 5, 2),
        id="depthwise",
    ),
    pytest.param(
        bl.QuantSeparableConv1D(
            2, 3, depthwise_quantizer="ste_sign", pointwise_quantizer="dorefa"
        ),
        (1, 6, 2),
        id="separable",
    ),
    pytest.param(
        bl.QuantConv2DTranspose(2, 2, kernel_quantizer="approx_sign"),
        (1, 3, 3, 2),
        id="transpose",
    ),
    pytest.param(
        bl.QuantLocallyConnected1D(2, 2, kernel_quantizer="swish_sign"),
        (1, 5, 2),
        id="local",
    ),
]


@pytest.mark.parametrize(("layer", "shape"), LAYERS)
def test_quantized_kernels_are_the_tracked_variables(layer, shape):
    layer.build(shape)
    for attribute, quantizer in layer.kernel_quantizers.items():
        kernel = getattr(layer, attribute)
        assert isinstance(kernel, QuantizedVariable), attribute
        assert isinstance(kernel, keras.Variable)
        assert kernel.quantizer is quantizer
        assert kernel.precision == quantizers.get_precision(quantizer)
        assert any(kernel is w for w in layer.weights)
        latent = kernel.latent_variable
        assert not isinstance(latent, QuantizedVariable)
        np.testing.assert_array_equal(latent.numpy(), kernel.numpy())
        with context.quantized_scope(True):
            expected = keras.ops.convert_to_numpy(quantizer(latent.numpy()))
            np.testing.assert_array_equal(kernel.numpy(), expected)
        new = np.random.default_rng(0).normal(size=kernel.shape).astype("float32")
        latent.assign(new)  # the view writes the kernel's own storage
        np.testing.assert_array_equal(kernel.numpy(), new)
    if getattr(layer, "use_bias", False):
        assert not isinstance(layer.bias, QuantizedVariable)


def test_kernels_without_a_quantizer_stay_plain_variables():
    layer = bl.QuantDense(3, input_quantizer="ste_sign")
    layer.build((None, 4))
    assert type(layer.kernel) is keras.Variable
    with pytest.raises(AttributeError):
        layer.kernel.precision  # noqa: B018 - Larq: a plain variable


def shrink(w):
    """A kernel quantizer that is not idempotent: applying it twice would show."""
    return 0.5 * w + 0.25


def test_forward_and_gradient_are_the_same_inside_the_scope():
    keras.utils.set_random_seed(4)
    layer = bl.QuantConv1D(
        3, 3, padding="same", input_quantizer="ste_sign", kernel_quantizer=shrink
    )
    x = np.random.default_rng(1).normal(size=(2, 7, 2)).astype("float32")
    layer.build(x.shape)
    with context.quantized_scope(True):
        np.testing.assert_allclose(
            layer.kernel.numpy(), shrink(layer.kernel.latent_variable.numpy())
        )

    def run():
        with tf.GradientTape() as tape:
            out = layer(x)
            loss = keras.ops.sum(out * out)
        grads = tape.gradient(loss, layer.trainable_weights)
        return out.numpy(), [g.numpy() for g in grads]

    out, grads = run()
    with context.quantized_scope(True):
        out_q, grads_q = run()
    np.testing.assert_array_equal(out_q, out)
    for g, g_q in zip(grads, grads_q, strict=True):
        np.testing.assert_array_equal(g_q, g)


def mnist_like_model():
    keras.utils.set_random_seed(2)
    return keras.Sequential(
        [
            keras.Input((6,)),
            bl.QuantDense(
                5, kernel_quantizer="ste_sign", kernel_constraint="weight_clip"
            ),
            keras.layers.BatchNormalization(),
            bl.QuantDense(3, input_quantizer="ste_sign", kernel_quantizer="ste_tern"),
        ]
    )


def test_model_weights_and_saves_are_quantized_in_the_scope(tmp_path):
    model = mnist_like_model()
    latent = model.get_weights()
    with context.quantized_scope(True):
        quantized = model.get_weights()
        model.save(tmp_path / "bits.keras")
        model.save(tmp_path / "bits.h5")  # Larq's guide saves .h5 in the scope
    for variable, before, got in zip(model.weights, latent, quantized, strict=True):
        if isinstance(variable, QuantizedVariable):
            expected = keras.ops.convert_to_numpy(variable.quantizer(before))
            np.testing.assert_array_equal(got, expected)
            assert set(np.unique(got)) <= {-1.0, 0.0, 1.0}
        else:
            np.testing.assert_array_equal(got, before)
    np.testing.assert_array_equal(model.get_weights()[0], latent[0])
    for name in ("bits.keras", "bits.h5"):
        loaded = keras.saving.load_model(tmp_path / name)
        assert isinstance(loaded.layers[0].kernel, QuantizedVariable)
        for got, expected in zip(loaded.get_weights(), quantized, strict=True):
            np.testing.assert_array_equal(got, expected)


def test_larq_style_precision_predicate_routes_binary_kernels():
    model = mnist_like_model()
    bop = optimizers.Bop()
    case = optimizers.CaseOptimizer(
        (lambda v: getattr(v, "precision", 32) == 1, bop),  # Larq's idiom
        default_optimizer=keras.optimizers.Adam(),
    )
    case.build(model.trainable_variables)
    routed = [v.path for v in model.trainable_variables if case.optimizer_for(v) is bop]
    assert routed == [model.layers[0].kernel.path]

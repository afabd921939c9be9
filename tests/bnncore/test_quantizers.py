"""Quantizers against NumPy references of their forward rule and pseudo-gradient."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import bnncore as lq
from bnncore import quantizers

# A grid with the interesting points: zeros of both signs, ±clip values, ±1,
# values just inside and outside the clip range, and a random tail.
_RNG = np.random.default_rng(0)
# ruff: noqa: RUF005
GRID = np.concatenate(
    [
        np.array(
            [-3, -1.5, -1, -0.7, -0.5, -0.05, -1e-7, -0.0, 0.0, 1e-7, 0.05, 0.5]
            + [0.7, 1, 1.5, 3, -0.25, 0.25, -2, 2],
            dtype=np.float32,
        ),
        _RNG.uniform(-2.5, 2.5, 44).astype(np.float32),
    ]
)
UPSTREAM = _RNG.uniform(0.5, 1.5, GRID.shape).astype(np.float32)


def np_sign(x):
    return np.where(x < 0, -1.0, 1.0).astype(np.float32)


def mask(x, clip):
    if clip is None:
        return np.ones_like(x)
    return (np.abs(x) <= clip).astype(np.float32)


def forward_and_grad(fn, x=GRID, dy=UPSTREAM):
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = fn(xt)
    grad = tape.gradient(y, xt, output_gradients=tf.constant(dy))
    return np.asarray(y), np.asarray(grad)


def swish_grad(x, beta):
    bx = beta * x
    return beta * (2 - bx * np.tanh(bx / 2)) / (1 + np.cosh(bx))


def tern_forward(x, delta):
    out = np.where(x >= delta, 1.0, np.where(x <= -delta, -1.0, 0.0))
    return np.where(x == 0, 0.0, out).astype(np.float32)


def dorefa_act(x, k):
    n = 2**k - 1
    return (np.round(np.clip(x, 0, 1) * n) / n).astype(np.float32)


# (id, function under test, numpy forward, numpy pseudo-gradient factor)
CASES = [
    ("ste_sign", lambda x: quantizers.ste_sign(x), np_sign, lambda x: mask(x, 1.0)),
    (
        "ste_sign_clip_0.5",
        lambda x: quantizers.ste_sign(x, clip_value=0.5),
        np_sign,
        lambda x: mask(x, 0.5),
    ),
    (
        "ste_sign_no_clip",
        lambda x: quantizers.ste_sign(x, clip_value=None),
        np_sign,
        lambda x: mask(x, None),
    ),
    (
        "approx_sign",
        quantizers.approx_sign,
        np_sign,
        lambda x: (2 - 2 * np.abs(x)) * mask(x, 1.0),
    ),
    ("swish_sign", quantizers.swish_sign, np_sign, lambda x: swish_grad(x, 5.0)),
    (
        "swish_sign_beta_2",
        lambda x: quantizers.swish_sign(x, beta=2.0),
        np_sign,
        lambda x: swish_grad(x, 2.0),
    ),
    (
        "ste_heaviside",
        quantizers.ste_heaviside,
        lambda x: (x > 0).astype(np.float32),
        lambda x: mask(x, 1.0),
    ),
    (
        "ste_heaviside_clip_1.5",
        lambda x: quantizers.ste_heaviside(x, clip_value=1.5),
        lambda x: (x > 0).astype(np.float32),
        lambda x: mask(x, 1.5),
    ),
    (
        "ste_tern",
        quantizers.ste_tern,
        lambda x: tern_forward(x, 0.05),
        lambda x: mask(x, 1.0),
    ),
    (
        "ste_tern_threshold_0.5_clip_2",
        lambda x: quantizers.ste_tern(x, threshold_value=0.5, clip_value=2.0),
        lambda x: tern_forward(x, 0.5),
        lambda x: mask(x, 2.0),
    ),
    (
        "ste_tern_twn",
        lambda x: quantizers.ste_tern(x, ternary_weight_networks=True),
        lambda x: tern_forward(x, np.float32(0.7) * np.mean(np.abs(x))),
        lambda x: mask(x, 1.0),
    ),
    (
        "dorefa_2bit",
        quantizers.dorefa_quantizer,
        lambda x: dorefa_act(x, 2),
        lambda x: ((x >= 0) & (x <= 1)).astype(np.float32),
    ),
    (
        "dorefa_3bit",
        lambda x: quantizers.dorefa_quantizer(x, k_bit=3),
        lambda x: dorefa_act(x, 3),
        lambda x: ((x >= 0) & (x <= 1)).astype(np.float32),
    ),
    ("noop", quantizers.NoOp(precision=4), lambda x: x, lambda x: np.ones_like(x)),
]


@pytest.mark.parametrize(
    ("fn", "np_forward", "np_grad"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_forward_and_pseudo_gradient_match_numpy(fn, np_forward, np_grad):
    y, grad = forward_and_grad(fn)
    np.testing.assert_allclose(y, np_forward(GRID), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad, UPSTREAM * np_grad(GRID), rtol=1e-5, atol=1e-6)


def test_sign_of_negative_zero_is_plus_one_and_heaviside_of_zero_is_zero():
    zeros = np.array([0.0, -0.0], dtype=np.float32)
    assert np.signbit(zeros[1])
    np.testing.assert_array_equal(quantizers.ste_sign(zeros), [1.0, 1.0])
    np.testing.assert_array_equal(lq.math.sign(zeros), [1.0, 1.0])
    np.testing.assert_array_equal(quantizers.ste_heaviside(zeros), [0.0, 0.0])
    np.testing.assert_array_equal(lq.math.heaviside(zeros), [0.0, 0.0])
    np.testing.assert_array_equal(quantizers.ste_tern(zeros), [0.0, 0.0])
    np.testing.assert_array_equal(
        quantizers.ste_tern(zeros, threshold_value=0.0), [0.0, 0.0]
    )


def test_rounding_is_half_to_even():
    # With k_bit=1 (n = 1), 0.5 rounds to 0; with k_bit=2 (n = 3), x*n = 1.5 -> 2.
    x = np.array([0.5, 1.5 / 3, 2.5 / 3], dtype=np.float32)
    np.testing.assert_allclose(quantizers.dorefa_quantizer(x[:1], k_bit=1), [0.0])
    np.testing.assert_allclose(
        quantizers.dorefa_quantizer(x[1:], k_bit=2),
        np.round(x[1:] * 3) / 3,
        rtol=1e-6,
    )


def test_dorefa_weights_mode_matches_numpy():
    x = GRID.reshape(8, 8)
    t = np.tanh(x)
    top = np.max(np.abs(t))
    for k in (1, 2, 4):
        n = 2**k - 1
        expected = 2 * (np.round((t / (2 * top) + 0.5) * n) / n) - 1
        y, grad = forward_and_grad(
            lambda v, k=k: quantizers.dorefa_quantizer(v, k_bit=k, mode="weights"),
            x,
            UPSTREAM.reshape(8, 8),
        )
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
        # Identity through the rounding; the max is a constant for the gradient.
        expected_grad = UPSTREAM.reshape(8, 8) * (1 - t**2) / top
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)


def test_magnitude_aware_sign_scales_per_last_axis_without_gradient_through_scale():
    x = GRID[:48].reshape(4, 3, 4)
    dy = UPSTREAM[:48].reshape(4, 3, 4)
    scale = np.mean(np.abs(x), axis=(0, 1))
    y, grad = forward_and_grad(quantizers.magnitude_aware_sign, x, dy)
    np.testing.assert_allclose(y, scale * np_sign(x), rtol=1e-6)
    np.testing.assert_allclose(grad, dy * scale * mask(x, 1.0), rtol=1e-6)


def test_magnitude_aware_sign_on_rank_one_reduces_over_no_axis():
    x = GRID[:16]
    y, _ = forward_and_grad(quantizers.magnitude_aware_sign, x, UPSTREAM[:16])
    np.testing.assert_allclose(y, np.abs(x) * np_sign(x), rtol=1e-6)


def test_gradient_in_graph_mode_matches_eager():
    @tf.function
    def graph_grad(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = quantizers.approx_sign(x)
        return tape.gradient(y, x, output_gradients=dy)

    _, eager = forward_and_grad(quantizers.approx_sign)
    np.testing.assert_allclose(graph_grad(GRID, UPSTREAM), eager)


CLASS_CASES = [
    (
        "SteSign",
        quantizers.SteSign(clip_value=0.5),
        quantizers.ste_sign,
        1,
        {"clip_value": 0.5},
    ),
    ("ApproxSign", quantizers.ApproxSign(), quantizers.approx_sign, 1, {}),
    (
        "SwishSign",
        quantizers.SwishSign(beta=3.0),
        quantizers.swish_sign,
        1,
        {"beta": 3.0},
    ),
    (
        "SteHeaviside",
        quantizers.SteHeaviside(clip_value=2.0),
        quantizers.ste_heaviside,
        1,
        {"clip_value": 2.0},
    ),
    (
        "MagnitudeAwareSign",
        quantizers.MagnitudeAwareSign(clip_value=1.0),
        quantizers.magnitude_aware_sign,
        1,
        {"clip_value": 1.0},
    ),
    (
        "SteTern",
        quantizers.SteTern(threshold_value=0.2, ternary_weight_networks=False),
        quantizers.ste_tern,
        2,
        {"threshold_value": 0.2},
    ),
    (
        "DoReFa",
        quantizers.DoReFa(k_bit=3, mode="weights"),
        quantizers.dorefa_quantizer,
        3,
        {"k_bit": 3, "mode": "weights"},
    ),
]


@pytest.mark.parametrize(
    ("instance", "function", "precision", "kwargs"),
    [c[1:] for c in CLASS_CASES],
    ids=[c[0] for c in CLASS_CASES],
)
def test_class_form_equals_function_form_and_round_trips(
    instance, function, precision, kwargs
):
    x = GRID.reshape(8, 8)
    np.testing.assert_array_equal(instance(x), function(x, **kwargs))
    assert instance.precision == precision
    assert quantizers.get_precision(instance) == precision
    config = quantizers.serialize(instance)
    restored = quantizers.deserialize(config)
    assert type(restored) is type(instance)
    assert restored.get_config() == instance.get_config()
    np.testing.assert_array_equal(restored(x), instance(x))
    # Keras's own deserializer resolves the registered class too.
    via_keras = keras.saving.deserialize_keras_object(config)
    assert via_keras.get_config() == instance.get_config()


@pytest.mark.parametrize(
    ("alias", "cls"),
    [
        ("ste_sign", quantizers.SteSign),
        ("SteSign", quantizers.SteSign),
        ("approx_sign", quantizers.ApproxSign),
        ("swish_sign", quantizers.SwishSign),
        ("ste_heaviside", quantizers.SteHeaviside),
        ("magnitude_aware_sign", quantizers.MagnitudeAwareSign),
        ("ste_tern", quantizers.SteTern),
        ("dorefa_quantizer", quantizers.DoReFa),
        ("DoReFaQuantizer", quantizers.DoReFa),
    ],
)
def test_get_resolves_aliases_and_class_names(alias, cls):
    assert type(quantizers.get(alias)) is cls


def test_get_accepts_none_instances_dicts_classes_and_callables():
    instance = quantizers.SteSign(clip_value=0.3)
    assert quantizers.get(None) is None
    assert quantizers.get(instance) is instance
    assert isinstance(quantizers.get(quantizers.SteTern), quantizers.SteTern)
    from_dict = quantizers.get({"class_name": "SteSign", "config": {"clip_value": 0.3}})
    assert from_dict.clip_value == 0.3

    def custom(x):
        return x

    assert quantizers.get(custom) is custom


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="ste_sign") as info:
        quantizers.get("no_such_quantizer")
    assert "no_such_quantizer" in str(info.value)
    assert "approx_sign" in str(info.value)


def test_noop_needs_precision():
    with pytest.raises(ValueError, match="precision"):
        quantizers.get("NoOp")
    assert quantizers.NoOp(precision=8).precision == 8


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (lambda: quantizers.SteSign(clip_value=-1.0), "clip_value"),
        (lambda: quantizers.SteSign(clip_value="1"), "clip_value"),
        (lambda: quantizers.SwishSign(beta=0), "beta"),
        (lambda: quantizers.SteTern(threshold_value=-0.1), "threshold_value"),
        (lambda: quantizers.DoReFa(k_bit=0), "k_bit"),
        (lambda: quantizers.DoReFa(k_bit=2, mode="bias"), "mode"),
        (lambda: quantizers.NoOp(precision=0), "precision"),
        (lambda: lq.constraints.WeightClip(clip_value=0), "clip_value"),
    ],
)
def test_invalid_arguments_name_the_field(factory, field):
    with pytest.raises(ValueError, match=field):
        factory()


def test_keras_activation_layer_by_name_equals_quantizer():
    x = GRID.reshape(4, 16)
    by_name = keras.layers.Activation("ste_sign")
    np.testing.assert_array_equal(by_name(x), quantizers.SteSign(clip_value=1.0)(x))
    restored = keras.layers.Activation.from_config(by_name.get_config())
    np.testing.assert_array_equal(restored(x), np_sign(x))
    for name in ("approx_sign", "ste_heaviside", "hard_tanh", "leaky_tanh"):
        assert callable(keras.layers.Activation(name).activation)


@tf.custom_gradient
def identity_grad_sign(x):
    return tf.sign(x), lambda dy: dy


def test_custom_quantizer_function_works_everywhere_and_counts_as_undeclared():
    assert quantizers.get_precision(identity_grad_sign) is None
    layer = lq.layers.QuantDense(
        3,
        input_quantizer=identity_grad_sign,
        kernel_quantizer=identity_grad_sign,
        activation=identity_grad_sign,
        use_bias=False,
    )
    x = tf.constant(_RNG.normal(size=(2, 5)).astype(np.float32))
    with tf.GradientTape() as tape:
        y = layer(x)
    grads = tape.gradient(y, layer.trainable_variables)
    kernel = layer.kernel.numpy()
    # Exact on any CPU: 5 products of ±1 sum to an odd integer in any order.
    expected = np.sign(np.sign(x.numpy()) @ np.sign(kernel))
    np.testing.assert_array_equal(y, expected)
    assert grads[0] is not None

    decorated = quantizers.set_precision(1)(lambda x: identity_grad_sign(x))
    assert quantizers.get_precision(decorated) == 1


def test_quantizer_keeps_input_dtype():
    x = tf.constant(GRID, dtype=tf.float16)
    assert quantizers.SteSign()(x).dtype == tf.float16
    assert quantizers.ste_sign(tf.constant(GRID, dtype=tf.float64)).dtype == tf.float64


def test_activations_match_numpy():
    x = GRID
    np.testing.assert_allclose(lq.activations.hard_tanh(x), np.clip(x, -1, 1))
    expected = (
        np.clip(x, -1, 1) + 0.2 * (np.maximum(x, 1) - 1) + 0.2 * (np.minimum(x, -1) + 1)
    )
    np.testing.assert_allclose(lq.activations.leaky_tanh(x), expected, rtol=1e-6)
    assert lq.activations.get("ste_sign") is quantizers.ste_sign


def test_weight_clip_clips_and_resolves_by_alias():
    constraint = lq.constraints.get("weight_clip")
    assert isinstance(constraint, lq.constraints.WeightClip)
    np.testing.assert_allclose(
        lq.constraints.WeightClip(0.5)(GRID), np.clip(GRID, -0.5, 0.5)
    )
    restored = lq.constraints.get(
        lq.constraints.serialize(lq.constraints.WeightClip(0.3))
    )
    assert restored.clip_value == 0.3

"""Inside ``quantized_scope(True)``, every weight read and save sees quantized kernels.

As in Larq: ``model.get_weights()``, ``model.save("x.h5")``, ``model.save("x.keras")``
and ``model.save_weights(...)`` give the quantized (±1, ternary) kernels inside
the scope and the latent floats outside it. Oracle: the quantizers' forward
rules written in NumPy (``sign`` with sign(0) = +1; ternary at ±threshold)
applied to the latent weights.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import bnncore as lq
from bnncore import context

THRESHOLD = 0.3


def numpy_sign(w: np.ndarray) -> np.ndarray:
    return np.where(w < 0, -1.0, 1.0).astype(w.dtype)


def numpy_tern(w: np.ndarray) -> np.ndarray:
    out = np.where(w >= THRESHOLD, 1.0, np.where(w <= -THRESHOLD, -1.0, 0.0))
    return out.astype(w.dtype)


# Path suffix of each quantized kernel → its quantizer's NumPy rule.
RULES = {
    "binary_conv/kernel": numpy_sign,
    "ternary_dense/kernel": numpy_tern,
    "inner_binary/kernel": numpy_sign,
}


def build() -> keras.Model:
    inner = keras.Sequential(
        [
            keras.Input((8,)),
            lq.layers.QuantDense(
                4,
                input_quantizer="ste_sign",
                kernel_quantizer="ste_sign",
                kernel_constraint="weight_clip",
                name="inner_binary",
            ),
        ],
        name="inner",
    )
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            lq.layers.QuantConv2D(
                3,
                3,
                kernel_quantizer="ste_sign",
                kernel_constraint="weight_clip",
                name="binary_conv",
            ),
            keras.layers.BatchNormalization(name="norm"),
            keras.layers.Flatten(name="flatten"),
            lq.layers.QuantDense(
                8,
                kernel_quantizer=lq.quantizers.SteTern(threshold_value=THRESHOLD),
                name="ternary_dense",
            ),
            inner,
            lq.layers.QuantDense(3, name="float_dense"),
            keras.layers.Dense(2, name="plain"),
        ],
        name="scoped",
    )


@pytest.fixture(scope="module")
def model() -> keras.Model:
    model = build()
    rng = np.random.default_rng(3)
    model.set_weights(
        [rng.normal(size=w.shape).astype("float32") for w in model.get_weights()]
    )
    return model


def expected(model: keras.Model, quantized: bool) -> list[np.ndarray]:
    """``model.weights`` order: latent values, quantized by the NumPy rules."""
    values = []
    for variable in model.weights:
        latent = keras.ops.convert_to_numpy(variable.value)
        rule = next(
            (f for suffix, f in RULES.items() if variable.path.endswith(suffix)), None
        )
        values.append(rule(latent) if quantized and rule else latent)
    return values


def assert_weights(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for index, (g, w) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_array_equal(g, w, err_msg=f"weight {index}")


def test_every_quantized_kernel_has_a_rule(model):
    paths = [v.path for v in model.weights]
    for suffix in RULES:
        assert sum(p.endswith(suffix) for p in paths) == 1, suffix
    latent = expected(model, quantized=False)
    quantized = expected(model, quantized=True)
    changed = [
        i
        for i, (a, b) in enumerate(zip(latent, quantized, strict=True))
        if not np.array_equal(a, b)
    ]
    assert len(changed) == 3  # the oracle really differs from the latent values
    ternary = quantized[
        [v.path for v in model.weights].index(
            next(p for p in paths if p.endswith("ternary_dense/kernel"))
        )
    ]
    assert 0 < np.mean(ternary == 0) < 1


def test_model_get_weights_is_quantized_inside_the_scope(model):
    latent = expected(model, quantized=False)
    assert_weights(model.get_weights(), latent)
    with context.quantized_scope(True):
        assert_weights(model.get_weights(), expected(model, quantized=True))
        kernel = model.get_layer("binary_conv").kernel
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(kernel.numpy()),
            numpy_sign(latent[0]),
        )
        with context.quantized_scope(False):
            assert_weights(model.get_weights(), latent)
    assert_weights(model.get_weights(), latent)  # nothing was overwritten


def test_predictions_inside_the_scope_are_unchanged(model):
    x = np.random.default_rng(4).normal(size=(3, 6, 6, 2)).astype("float32")
    outside = model.predict(x, verbose=0)
    with context.quantized_scope(True):
        inside = model.predict(x, verbose=0)
    # Sign and ternary quantizers are idempotent.
    np.testing.assert_allclose(inside, outside, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "filename", ["model.h5", "model.keras", "model.weights.h5"], ids=str
)
def test_saves_inside_the_scope_store_quantized_kernels(model, tmp_path, filename):
    path = tmp_path / filename
    with context.quantized_scope(True):
        if filename.endswith(".weights.h5"):
            model.save_weights(path)
        else:
            model.save(path)
    fresh = build()
    fresh.load_weights(path)
    assert_weights(fresh.get_weights(), expected(model, quantized=True))


@pytest.mark.parametrize(
    "filename", ["model.h5", "model.keras", "model.weights.h5"], ids=str
)
def test_saves_outside_the_scope_store_latent_kernels(model, tmp_path, filename):
    path = tmp_path / filename
    if filename.endswith(".weights.h5"):
        model.save_weights(path)
    else:
        model.save(path)
    fresh = build()
    fresh.load_weights(path)
    assert_weights(fresh.get_weights(), expected(model, quantized=False))
